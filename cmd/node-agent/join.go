package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/joinnode"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/node"
	"github.com/vcluster-standalone/vcluster-standalone/systemd"
)

// Environment variables that may carry the join arguments, so installers need
// not put the token on a command line (visible in ps).
const (
	envServer = "NODE_AGENT_SERVER"
	envToken  = join.NodeAgentTokenEnv
	envHashes = "NODE_AGENT_CA_CERT_HASH"
	envConfig = "NODE_AGENT_CONFIG"
)

func newJoinCommand() *cobra.Command {
	var (
		token, configFile, unitDir, systemctl string
		hashes                                []string
		noStart                               bool
		timeout, readyWait                    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "join --server URL --token TOKEN --ca-cert-hash sha256:HEX",
		Short: "Join this machine to a cluster: discovery, kubelet TLS bootstrap, config and service",
		Long: `Join this machine to a vcluster-standalone cluster, once:

 1. discovery: fetch kube-public/cluster-info without credentials and trust it only if
    its signature verifies with the token and its CA matches a --ca-cert-hash;
 2. TLS bootstrap: request a kubelet client certificate for system:node:<node-name>
    with the token; the control plane approves it automatically;
 3. write ` + config.DefaultNodeConfigFile + `, the credentials (0600) under --data-dir and
    node-agent.service, and enable the service.

The token is used only for step 2 and is never written to disk. On a node that already
joined, join says so and changes nothing. --server, --token and --ca-cert-hash may also
come from ` + envServer + `, ` + envToken + ` and ` + envHashes + ` (comma-separated).
Prefer ` + envToken + ` to --token: a command line is readable by every local user (ps,
/proc) for as long as join runs, including the wait for Ready; join removes ` + envToken + `
from its environment before it starts anything, so no child process sees it either.`,
		Example: `  # the line printed by ` + "`vcluster-standalone token create`" + `
  ` + envToken + `=abcdef.0123456789abcdef node-agent join --server https://192.0.2.10:6443 \
      --ca-cert-hash sha256:<64 hex>

  # during a CA rotation, accept either CA
  ` + envToken + `=abcdef.0123456789abcdef node-agent join --server https://192.0.2.10:6443 \
      --ca-cert-hash sha256:<old> --ca-cert-hash sha256:<new> --node-name worker-1

  # a node whose storage pool is a 50Gi image file (no btrfs mounted at /var/lib/node-agent/csi)
  ` + envToken + `=abcdef.0123456789abcdef node-agent join --server https://192.0.2.10:6443 \
      --ca-cert-hash sha256:<64 hex> --storage-pool-size 50Gi

  # a node without storage
  ` + envToken + `=abcdef.0123456789abcdef node-agent join --server https://192.0.2.10:6443 \
      --ca-cert-hash sha256:<64 hex> --storage disabled`,
		Args: cobra.NoArgs,
	}
	fs := cmd.Flags()
	nodeFlags := config.AddNodeFlags(fs)
	fs.StringVar(&token, "token", "", "bootstrap token ID.SECRET; visible to local users in ps while join runs, prefer env "+envToken)
	fs.StringArrayVar(&hashes, "ca-cert-hash", nil, "sha256:HEX pin of the cluster CA; repeatable (env "+envHashes+")")
	fs.StringVar(&configFile, "config", envOr(envConfig, config.DefaultNodeConfigFile), "node config file to write (env "+envConfig+")")
	fs.DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the certificate to be approved")
	fs.BoolVar(&noStart, "no-start", false, "enable node-agent.service but do not start it")
	fs.DurationVar(&readyWait, "wait", 3*time.Minute, "after starting node-agent.service, how long to wait for the Node to be Ready (0: do not wait)")
	fs.StringVar(&unitDir, "systemd-dir", "/etc/systemd/system", "where to write node-agent.service")
	fs.StringVar(&systemctl, "systemctl", "systemctl", "systemctl binary to enable the service with")
	_ = fs.MarkHidden("systemd-dir")
	_ = fs.MarkHidden("systemctl")

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		// First, before anything runs a child process.
		if envTokenValue := joinnode.TakeEnv(envToken); token == "" {
			token = envTokenValue
		}
		if !fs.Changed("server") && os.Getenv(envServer) != "" {
			if err := fs.Set("server", os.Getenv(envServer)); err != nil {
				return err
			}
		}
		if len(hashes) == 0 && os.Getenv(envHashes) != "" {
			hashes = strings.FieldsFunc(os.Getenv(envHashes), func(r rune) bool { return r == ',' || r == ' ' })
		}
		if token == "" {
			return fmt.Errorf("--token is required (the bootstrap token from `vcluster-standalone token create`)")
		}
		node, errs := config.ResolveNode(configFile, false, nodeFlags, os.Hostname)
		if len(errs) > 0 {
			return joinLines(errs)
		}
		unit, err := systemd.Unit(join.NodeUnit)
		if err != nil {
			return err
		}
		// Start the service only once this binary can run it (node runtime).
		j := &joinnode.NodeJoin{
			Node: node, ConfigFile: configFile, UnitDir: unitDir, Unit: unit,
			Token: token, CACertHashes: hashes,
			Services:      joinnode.Systemctl{Path: systemctl},
			Start:         !noStart && hasRun(cmd.Root()),
			SignatureWait: 5 * time.Second, ConnectTimeout: 30 * time.Second, ApprovalTimeout: timeout,
			Out: cmd.OutOrStdout(),
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		begin := time.Now()
		res, err := j.Run(ctx)
		if err != nil || res.AlreadyJoined || !j.Start || readyWait <= 0 {
			return err
		}
		return waitNodeReady(ctx, node, readyWait, begin, cmd.OutOrStdout())
	}
	return cmd
}

// waitNodeReady follows the freshly started node until the control plane
// reports it Ready, so the join line ends with a working node.
func waitNodeReady(ctx context.Context, n *config.Node, wait time.Duration, begin time.Time, out io.Writer) error {
	cs, err := node.NodeClient(n)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := node.NewNodeReady(cs, n.NodeName).Ready(ctx); err != nil {
		return fmt.Errorf("node-agent.service started, but %v after %s; see `journalctl -u node-agent`", err, wait)
	}
	fmt.Fprintf(out, "[join] node %s Ready %.1fs after join began\n", n.NodeName, time.Since(begin).Seconds())
	return nil
}

func hasRun(root *cobra.Command) bool {
	for _, c := range root.Commands() {
		if c.Name() == "run" {
			return true
		}
	}
	return false
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// joinLines renders several errors as one line each.
func joinLines(errs []error) error {
	lines := make([]string, len(errs))
	for i, err := range errs {
		lines[i] = err.Error()
	}
	return fmt.Errorf("%s", strings.Join(lines, "; "))
}
