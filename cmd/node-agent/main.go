// Command node-agent joins a machine to a vcluster-standalone cluster and (with
// the node-runtime issue) runs its node components.
package main

import (
	"fmt"
	"os"
	"strings"

	containerdversion "github.com/containerd/containerd/v2/version"
	"github.com/spf13/cobra"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/version"
	"github.com/vcluster-standalone/vcluster-standalone/systemd"
)

func main() {
	root := newRootCommand()
	if err := root.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "error: %s\n", strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " "))
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "node-agent",
		Short:         "The vcluster-standalone node agent: joins this machine to a cluster and runs it as a node",
		SilenceUsage:  true,
		SilenceErrors: true,
		Example: `  # join with the line printed by ` + "`vcluster-standalone token create`" + `
  NODE_AGENT_TOKEN=abcdef.0123456789abcdef node-agent join --server https://192.0.2.10:6443 --ca-cert-hash sha256:<64 hex>`,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(newJoinCommand(), newRunCommand(), newImagesCommand(), newStatusCommand(), newResetCommand(), newVersionCommand(), newUnitCommand())
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version of node-agent and of the Kubernetes components it embeds",
		Example: "  node-agent version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return version.Print(cmd.OutOrStdout(), "node-agent", []string{"kubelet", "kube-proxy"},
				[2]string{"containerd", "v" + strings.TrimSuffix(containerdversion.Version, "+unknown")},
				[2]string{"runc", version.Runc},
				[2]string{"cni spec", cni.ConfCNIVersion},
				[2]string{"pause image", config.PauseImage},
				[2]string{"coredns image", config.CoreDNSImage})
		},
	}
}

// newUnitCommand prints the systemd units embedded in the binary, so installers
// write exactly the unit that was built and tested with it.
func newUnitCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "unit [NAME]",
		Short: "Print an embedded systemd unit file (or list them)",
		Long: "Print the systemd unit file NAME embedded in this binary, as `join` writes it.\n" +
			"Without NAME, list the embedded units. The .service suffix may be omitted.",
		Example: "  # list embedded units\n  node-agent unit\n\n" +
			"  # print the node unit\n  node-agent unit node-agent.service",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return systemd.Print(cmd.OutOrStdout(), strings.Join(args, ""))
		},
	}
}
