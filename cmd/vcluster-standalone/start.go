package main

import (
	"flag"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/component"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/controlplane"
)

func newStartCommand() *cobra.Command {
	var verbosity int
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Run the control plane (etcd, kube-apiserver, controller-manager, scheduler) in the foreground",
		Long: `Run the control plane in the foreground until SIGTERM or SIGINT.

On first start it generates the cluster's CAs, certificates, service-account
keys and secrets-encryption key in the data dir; later starts reuse them and
renew leaf certificates that expire within 90 days. Under systemd it reports
READY=1 once /readyz answers ok; SIGTERM stops it within seconds.

With less than 128 MiB free on the data dir's filesystem it fails in one line;
started again within 10 minutes while still full (systemd's restart), it waits
for room, up to 4 minutes, and starts as soon as there is.`,
		Example: `  # with /etc/vcluster-standalone/config.yaml and defaults
  vcluster-standalone start

  # a throw-away control plane that runs no node on this host
  vcluster-standalone start --data-dir $(mktemp -d) --admin-kubeconfig /tmp/admin.kubeconfig --join-node=false`,
		Args: cobra.NoArgs,
	}
	configPath := configPathFlag(cmd)
	flags := config.AddFlags(cmd.Flags())
	cmd.Flags().IntVarP(&verbosity, "v", "v", 0, "log verbosity of the Kubernetes components")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := resolveConfig(cmd, *configPath, flags)
		if err != nil {
			return err
		}
		setLogVerbosity(verbosity)
		tuneGC()
		notify := component.SystemdNotifier()
		ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return controlplane.Run(ctx, controlplane.Options{
			Config:     c,
			ConfigFile: *configPath,
			Progress:   os.Stderr,
			Notify:     notify,
			// Set by systemd (RuntimeDirectory= in the unit).
			RunDir: os.Getenv("RUNTIME_DIRECTORY"),
		})
	}
	return cmd
}

func setLogVerbosity(v int) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	fs.Set("v", strconv.Itoa(v))
}

// tuneGC trades a little CPU for memory: four servers share one heap, and
// collecting at 50% growth instead of 100% keeps the idle control plane about
// 40 MiB smaller. An explicit GOGC in the environment wins.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
}
