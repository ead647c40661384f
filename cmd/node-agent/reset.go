package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/component"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/node"
)

func newResetCommand() *cobra.Command {
	var (
		configFile, unitDir, systemctl string
		force                          bool
	)
	cmd := &cobra.Command{
		Use:   "reset",
		Short: "Undo join and run: stop the node, remove its containers, mounts, network, data and config",
		Long: `Stop node-agent.service and remove everything join and run made on this machine:
containers and their shims, kubelet and containerd mounts, the pod network (bridge, veths,
vcs-vxlan, routes, VCS- and KUBE- iptables chains, address allocations), the data dir,
` + config.DefaultNodeConfigFile + ` and node-agent.service. The node-agent binary and a
registries.yaml you wrote stay. Safe to run again; afterwards the machine can join again,
under its old name once its Node is deleted (` + "`vcluster-standalone kubectl delete node NAME`" + `
on the control plane): the control plane refuses a name a Node holds.`,
		Example: `  # asks for confirmation
  node-agent reset

  # in scripts
  node-agent reset --force`,
		Args: cobra.NoArgs,
	}
	fs := cmd.Flags()
	fs.StringVar(&configFile, "config", envOr(envConfig, config.DefaultNodeConfigFile), "node config file written by join (env "+envConfig+")")
	fs.BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
	fs.StringVar(&unitDir, "systemd-dir", "/etc/systemd/system", "where join wrote node-agent.service")
	fs.StringVar(&systemctl, "systemctl", "systemctl", "systemctl binary")
	_ = fs.MarkHidden("systemd-dir")
	_ = fs.MarkHidden("systemctl")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if os.Geteuid() != 0 {
			return fmt.Errorf("reset must run as root")
		}
		// A half-joined or already reset node has no valid config: reset what
		// the defaults point at.
		n, err := config.LoadNode(configFile, true)
		if err != nil {
			n = &config.Node{}
		}
		config.SetNodeDefaults(n, os.Hostname)
		if !force && !confirm(cmd, fmt.Sprintf("This removes node %q's containers, network and data under %s. Continue? [y/N] ", n.NodeName, n.DataDir)) {
			return fmt.Errorf("reset cancelled")
		}
		opts := node.ResetOptions{
			Node: n, ConfigFile: configFile, UnitFile: filepath.Join(unitDir, join.NodeUnit),
			CgroupRoot: "/sys/fs/cgroup", Progress: cmd.OutOrStdout(),
		}
		if _, err := os.Stat("/run/systemd/system"); err == nil {
			opts.StopService = func() error {
				// A unit that is not installed is fine: nothing to stop.
				out, err := exec.Command(systemctl, "disable", "--now", "--quiet", join.NodeUnit).CombinedOutput()
				if err != nil && !strings.Contains(string(out), "not loaded") && !strings.Contains(string(out), "does not exist") {
					return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
				}
				_ = exec.Command(systemctl, "reset-failed", join.NodeUnit).Run()
				return nil
			}
		}
		if err := node.Reset(opts); err != nil {
			return err
		}
		if opts.StopService != nil {
			_ = exec.Command(systemctl, "daemon-reload").Run()
		}
		fmt.Fprintf(cmd.OutOrStdout(), "node reset; to join again as %s, first delete its Node on the control plane (`vcluster-standalone kubectl delete node %s`), then run the line from `vcluster-standalone token create`\n", n.NodeName, n.NodeName)
		return nil
	}
	return cmd
}

func confirm(cmd *cobra.Command, question string) bool {
	fmt.Fprint(cmd.OutOrStdout(), question)
	answer, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	answer = strings.ToLower(strings.TrimSpace(answer))
	return answer == "y" || answer == "yes"
}

func newStatusCommand() *cobra.Command {
	var configFile string
	var showArgs bool
	cmd := &cobra.Command{
		Use:   "status [--args [COMPONENT]]",
		Short: "Check this node's parts: containerd, kubelet, kube-proxy, pod network, certificates, Node",
		Long: `Check every part of the running node from the outside and print one line each.
Exits non-zero when any part is not healthy or a certificate expires within 30 days.

With --args, print instead the command line the running kubelet and kube-proxy use,
one line each as ` + "`<name> --flag=value ...`" + ` (the kubelet's --config names the
KubeletConfiguration file node-agent writes), or only COMPONENT's: kubelet or
kube-proxy. They run inside node-agent, so ps does not show them; this is what
auditors and kube-bench read.`,
		Example: `  node-agent status

  # the kubelet's flags
  node-agent status --args kubelet`,
		Args: cobra.MaximumNArgs(1),
	}
	cmd.Flags().StringVar(&configFile, "config", envOr(envConfig, config.DefaultNodeConfigFile), "node config file written by join (env "+envConfig+")")
	cmd.Flags().BoolVar(&showArgs, "args", false, "print the effective command line of the kubelet and kube-proxy (or of COMPONENT)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 && !showArgs {
			return fmt.Errorf("unexpected argument %q: a component name goes with --args", args[0])
		}
		if err := component.CheckArgsName(strings.Join(args, ""), node.ArgsComponents); err != nil {
			return err
		}
		n, errs := config.ResolveNode(configFile, true, nil, os.Hostname)
		if len(errs) > 0 {
			return joinLines(errs)
		}
		if showArgs {
			return node.PrintEffectiveArgs(cmd.OutOrStdout(), n, strings.Join(args, ""))
		}
		return node.PrintStatus(cmd.OutOrStdout(), node.Status(cmd.Context(), n))
	}
	return cmd
}
