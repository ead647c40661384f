package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/controlplane"
)

func newCertsRotateCACommand() *cobra.Command {
	var finish, force bool
	cmd := &cobra.Command{
		Use:   "rotate-ca [start|finish|status]",
		Short: "Replace the cluster CA with a new one while the cluster keeps serving",
		Long: `Rotate the cluster CA in two phases, without downtime and without restarting anything.

Phase 1 (rotate-ca, or rotate-ca start) makes a new cluster CA the signing CA and trusts
it together with the old one: the API server and controller-manager (client CA bundle),
the control plane's own clients, kube-public/cluster-info, every namespace's
kube-root-ca.crt (ServiceAccount ca.crt) and every node (node-agent refreshes its CA file
from cluster-info, no re-join). The running control plane re-issues its leaf certificates
with the new CA; they carry the new CA cross-signed by the old one, so whatever still
trusts only the old CA keeps working. The upstream kubelet reads its CA and client
certificate once: once a node has the bundle (within 30 s), restart its node-agent
(systemctl restart node-agent; pods keep running), which renews the kubelet's client
certificate with the new CA. Join lines printed meanwhile pin both CAs.

Phase 2 (rotate-ca --finish, or rotate-ca finish) retires the old CA: it refuses, naming
what still uses it, until nothing does (every node trusts the new CA and its clients had
time to re-read it, no kubelet client certificate of the old CA is in use), unless
--force. rotate-ca status shows where a rotation stands.

Covered: the cluster CA only. The front-proxy, etcd and kubelet-serving CAs are not
rotated by this command.`,
		Example: `  vcluster-standalone certs rotate-ca            # phase 1
  vcluster-standalone certs rotate-ca status     # what still uses the old CA
  vcluster-standalone certs rotate-ca --finish   # phase 2: retire the old CA`,
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{"start", "finish", "status"},
	}
	configPath := configPathFlag(cmd)
	cmd.Flags().BoolVar(&finish, "finish", false, "phase 2: retire the old CA (same as the finish sub-command)")
	cmd.Flags().BoolVar(&force, "force", false, "with --finish: retire the old CA even though something still uses it (that breaks)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		action := "start"
		if len(args) == 1 {
			action = args[0]
		}
		switch {
		case action != "start" && action != "finish" && action != "status":
			return fmt.Errorf("unknown action %q: use start, finish or status", action)
		case finish && action != "start" && action != "finish":
			return errors.New("--finish goes with no action (or finish), not with " + action)
		case finish:
			action = "finish"
		}
		if force && action != "finish" {
			return errors.New("--force only goes with --finish")
		}
		c, err := config.Load(*configPath, !cmd.Flags().Changed("config"))
		if err != nil {
			return err
		}
		config.SetDefaults(c, nil)
		r := &controlplane.CARotation{Config: c, Out: cmd.OutOrStdout()}
		switch action {
		case "finish":
			return r.Finish(cmd.Context(), force)
		case "status":
			s, err := r.Status(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), s)
			return nil
		}
		return r.Start(cmd.Context())
	}
	return cmd
}
