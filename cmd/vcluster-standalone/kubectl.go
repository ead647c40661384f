package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/controlplane"
)

func newKubectlCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "kubectl [kubectl arguments]",
		Short: "Run the embedded kubectl against the local cluster",
		Long: `Run the embedded kubectl (the same version as the cluster) with the admin
kubeconfig of this host. Every argument goes to kubectl; --kubeconfig still
overrides. The config file is found at $VCLUSTER_STANDALONE_CONFIG or
` + config.DefaultConfigFile + `.`,
		Example: `  vcluster-standalone kubectl get --raw /readyz
  vcluster-standalone kubectl get pods -A`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
			flags := genericclioptions.NewConfigFlags(true).WithDiscoveryBurst(300).WithDiscoveryQPS(50).WithWarningPrinter(streams)
			if !hasKubeconfigFlag(args) {
				kubeconfig, err := localAdminKubeconfig()
				if err != nil {
					return err
				}
				*flags.KubeConfig = kubeconfig
			}
			kubectl := kubectlcmd.NewDefaultKubectlCommandWithArgs(kubectlcmd.KubectlOptions{
				Arguments:   append([]string{"kubectl"}, args...),
				ConfigFlags: flags,
				IOStreams:   streams,
			})
			kubectl.SetArgs(args)
			if err := cli.RunNoErrOutput(kubectl); err != nil {
				kubectlutil.CheckErr(err) // prints like kubectl and exits non-zero
			}
			return nil
		},
	}
}

func hasKubeconfigFlag(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--kubeconfig" || strings.HasPrefix(a, "--kubeconfig=") {
			return true
		}
	}
	return false
}

// localAdminKubeconfig returns the admin kubeconfig path from the config file.
func localAdminKubeconfig() (string, error) {
	c, err := config.Load(defaultConfigPath(), true)
	if err != nil {
		return "", err
	}
	config.SetDefaults(c, nil)
	if _, err := os.Stat(c.AdminKubeconfig); err != nil {
		return "", fmt.Errorf("admin kubeconfig %s not found: is the control plane started on this host? (run `vcluster-standalone start`)", c.AdminKubeconfig)
	}
	return c.AdminKubeconfig, nil
}

func newKubeconfigCommand() *cobra.Command {
	var server string
	cmd := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Print an admin kubeconfig for this cluster",
		Example: `  # for use on this host
  vcluster-standalone kubeconfig > ~/.kube/config

  # for another machine, through an address it can reach
  vcluster-standalone kubeconfig --server https://192.168.1.10:6443`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().StringVar(&server, "server", "", "API server URL to put in the kubeconfig (default: the local address)")
	configPath := configPathFlag(cmd)
	adminPath := cmd.Flags().String("admin-kubeconfig", "", "admin kubeconfig written by start (default from the config file)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		path := *adminPath
		if path == "" {
			c, err := config.Load(*configPath, !cmd.Flags().Changed("config"))
			if err != nil {
				return err
			}
			config.SetDefaults(c, nil)
			path = c.AdminKubeconfig
		}
		out, err := controlplane.AdminKubeconfig(path, server)
		if err != nil {
			return err
		}
		_, err = cmd.OutOrStdout().Write(out)
		return err
	}
	return cmd
}
