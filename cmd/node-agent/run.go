package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/component"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/node"
)

func newRunCommand() *cobra.Command {
	var (
		configFile, registries string
		verbosity              int
		timeout                time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the node: containerd, kubelet, kube-proxy and the pod network, in the foreground",
		Long: `Run this node's parts in the foreground until SIGTERM or SIGINT: containerd (a child
process, with runc and the built-in system images), the kubelet, kube-proxy and the pod
network. node-agent.service runs this after ` + "`node-agent join`" + `; under systemd it reports
READY=1 once the Node is Ready. Stopping leaves running containers alone.`,
		Example: `  # as node-agent.service does
  node-agent run --config /etc/node-agent/config.yaml`,
		Args: cobra.NoArgs,
	}
	fs := cmd.Flags()
	nodeFlags := config.AddNodeFlags(fs)
	fs.StringVar(&configFile, "config", envOr(envConfig, config.DefaultNodeConfigFile), "node config file written by join (env "+envConfig+")")
	fs.StringVar(&registries, "registries", node.DefaultRegistriesFile, "registry mirrors and credentials (optional)")
	fs.DurationVar(&timeout, "ready-timeout", 5*time.Minute, "how long each part may take to become ready")
	fs.IntVarP(&verbosity, "v", "v", 0, "log verbosity of the Kubernetes components")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		n, errs := config.ResolveNode(configFile, true, nodeFlags, os.Hostname)
		if len(errs) > 0 {
			return joinLines(errs)
		}
		// A data dir joined before the marker existed gets it now, so reset
		// still removes it.
		if ours, err := config.ClaimDataDir(n.DataDir, "pki"); err == nil && !ours {
			fmt.Fprintf(os.Stderr, "data dir %s holds files node-agent did not make (no %s): reset will leave it\n", n.DataDir, config.DataDirMarker)
		}
		setLogVerbosity(verbosity)
		notify := component.SystemdNotifier()
		ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return node.Run(ctx, node.Options{
			Node: n, RegistriesFile: registries,
			Progress: os.Stderr, Logs: os.Stderr, Notify: notify, ReadyTimeout: timeout,
		})
	}
	return cmd
}

func setLogVerbosity(v int) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("v", strconv.Itoa(v))
}
