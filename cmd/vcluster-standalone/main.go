// Command vcluster-standalone runs and operates the control plane.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

func main() {
	root := newRootCommand()
	if err := root.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "error: %s\n", strings.TrimSpace(err.Error()))
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "vcluster-standalone",
		Short:         "A standalone Kubernetes distribution: control plane with its own CA and embedded etcd",
		SilenceUsage:  true,
		SilenceErrors: true,
		Example: `  # run the control plane in the foreground (as systemd does)
  vcluster-standalone start

  # talk to it
  vcluster-standalone kubectl get nodes`,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(
		newStartCommand(),
		newVersionCommand(),
		newKubeconfigCommand(),
		newKubectlCommand(),
		newStatusCommand(),
		newCertsCommand(),
		newUnitCommand(),
		newTokenCommand(),
		newSnapshotCommand(),
	)
	return root
}

// configPathFlag adds --config; its default may be moved with the
// VCLUSTER_STANDALONE_CONFIG environment variable.
func configPathFlag(cmd *cobra.Command) *string {
	return cmd.Flags().String("config", defaultConfigPath(), "control-plane config file")
}

func defaultConfigPath() string {
	if p := os.Getenv("VCLUSTER_STANDALONE_CONFIG"); p != "" {
		return p
	}
	return config.DefaultConfigFile
}

// resolveConfig loads the config for cmd; a file named with --config must exist.
func resolveConfig(cmd *cobra.Command, path string, flags *config.Flags) (*config.ControlPlane, error) {
	required := cmd.Flags().Changed("config")
	c, errs := config.Resolve(path, required, flags, config.DetectAdvertiseAddress)
	if len(errs) > 0 {
		return nil, joinLines(errs)
	}
	return c, nil
}

// joinLines renders several errors as one error of one line each.
func joinLines(errs []error) error {
	lines := make([]string, len(errs))
	for i, err := range errs {
		lines[i] = err.Error()
	}
	return fmt.Errorf("%s", strings.Join(lines, "\nerror: "))
}
