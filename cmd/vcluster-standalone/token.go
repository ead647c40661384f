package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/controlplane"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/joinserver"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

func newTokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and delete the bootstrap tokens nodes join with",
		Long: `Bootstrap tokens (kubeadm format, ID.SECRET) let a node join: the node
verifies the cluster with the token and the CA hash, then requests its kubelet
certificate with it. The config file is found at $VCLUSTER_STANDALONE_CONFIG or
` + config.DefaultConfigFile + `.`,
		Args: cobra.NoArgs,
	}
	configPath := cmd.PersistentFlags().String("config", defaultConfigPath(), "control-plane config file")
	env := func() (*config.ControlPlane, kubernetes.Interface, error) {
		c, err := config.Load(*configPath, !cmd.PersistentFlags().Changed("config"))
		if err != nil {
			return nil, nil, err
		}
		config.SetDefaults(c, nil)
		restConfig, err := clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig)
		if err != nil {
			return nil, nil, fmt.Errorf("admin kubeconfig %s not usable: is the control plane started on this host? (%v)", c.AdminKubeconfig, err)
		}
		restConfig.Timeout = 30 * time.Second
		client, err := kubernetes.NewForConfig(restConfig)
		return c, client, err
	}
	cmd.AddCommand(newTokenCreateCommand(env), newTokenListCommand(env), newTokenDeleteCommand(env))
	return cmd
}

type tokenEnv func() (*config.ControlPlane, kubernetes.Interface, error)

func newTokenCreateCommand(env tokenEnv) *cobra.Command {
	var ttl, description string
	var printJoinArgs bool
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a token and print the lines that join a node with it",
		Long: `Create a bootstrap token and print the lines that join a machine with it: the
node-agent join line and, unless the join endpoint is off (joinEndpoint: false), the
one-line curl ... | sh install from this control plane. Both pass the token in the
environment (NODE_AGENT_TOKEN, VCS_TOKEN), never as an argument, so other users of
the machine cannot read it in ps while the join runs. --print-join-args prints
install.sh's flags with --token, for scripts on machines without other users.`,
		Example: `  vcluster-standalone token create
  vcluster-standalone token create --ttl 1h --description "rack 4"
  vcluster-standalone token create --print-join-args   # install.sh --join flags only`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := joinserver.ParseTTL(ttl)
			if err != nil {
				return err
			}
			c, client, err := env()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			token, err := joinserver.CreateToken(ctx, client, joinserver.TokenSpec{TTL: d, Description: description})
			if err != nil {
				return err
			}
			endpointCert := ""
			if c.ServesJoinEndpoint() {
				endpointCert = controlplane.Paths{DataDir: c.DataDir}.Cert(pki.JoinEndpoint)
			}
			line, err := joinserver.LoadJoinLine(ctx, client, token, c.JoinPort, endpointCert)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if printJoinArgs {
				fmt.Fprintln(out, line.JoinArgs())
				return nil
			}
			expiry := "never expires"
			if d > 0 {
				expiry = "expires in " + d.String()
			}
			fmt.Fprintf(out, "Token %s created (%s).\n\n%s", strings.SplitN(token, ".", 2)[0], expiry, line.Instructions())
			return nil
		},
	}
	cmd.Flags().StringVar(&ttl, "ttl", joinserver.DefaultTokenTTL.String(), "how long the token is valid, e.g. 24h or 30m; 0 never expires")
	cmd.Flags().StringVar(&description, "description", "", "what the token is for, shown by token list")
	cmd.Flags().BoolVar(&printJoinArgs, "print-join-args", false, "print only install.sh's join flags (--join, --token, --ca-cert-hash) on one line")
	return cmd
}

func newTokenListCommand(env tokenEnv) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, client, err := env()
			if err != nil {
				return err
			}
			tokens, err := joinserver.ListTokens(cmd.Context(), client)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 3, ' ', 0)
			fmt.Fprintln(w, "ID\tTTL\tEXPIRES\tUSAGES\tDESCRIPTION")
			now := time.Now()
			for _, t := range tokens {
				expires := "<never>"
				if t.Expires != nil {
					expires = t.Expires.UTC().Format(time.RFC3339)
				}
				description := t.Description
				if description == "" {
					description = "<none>"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.TimeLeft(now), expires, strings.Join(t.Usages, ","), description)
			}
			return w.Flush()
		},
	}
}

func newTokenDeleteCommand(env tokenEnv) *cobra.Command {
	return &cobra.Command{
		Use:     "delete ID [ID...]",
		Short:   "Delete tokens; nodes that already joined keep working",
		Example: "  vcluster-standalone token delete abcdef",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, ids []string) error {
			for _, id := range ids {
				if err := joinserver.ValidateTokenID(strings.SplitN(id, ".", 2)[0]); err != nil {
					return err
				}
			}
			_, client, err := env()
			if err != nil {
				return err
			}
			for _, id := range ids {
				if err := joinserver.DeleteToken(cmd.Context(), client, id); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "token %s deleted\n", strings.SplitN(id, ".", 2)[0])
			}
			return nil
		},
	}
}
