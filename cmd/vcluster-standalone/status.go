package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	etcdversion "go.etcd.io/etcd/api/v3/version"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/component"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/controlplane"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/snapshot"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/version"
)

func newStatusCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status [--args [COMPONENT]]",
		Short: "Show the health of each control-plane component and certificate expiry",
		Long: `Show the health of each control-plane component and certificate expiry.

With --args, print instead the command line each component of the running control
plane uses, one line each as ` + "`<name> --flag=value ...`" + ` (etcd's configuration as the
equivalent etcd flags), or only COMPONENT's: etcd, kube-apiserver,
kube-controller-manager or kube-scheduler. The components run inside one process,
so ps does not show them; this is what auditors and kube-bench read.`,
		Example: `  vcluster-standalone status
  vcluster-standalone status --data-dir /srv/cluster --api-port 7443

  # the flags kube-apiserver runs with
  vcluster-standalone status --args kube-apiserver`,
		Args: cobra.MaximumNArgs(1),
	}
	configPath := configPathFlag(cmd)
	flags := config.AddFlags(cmd.Flags())
	showArgs := cmd.Flags().Bool("args", false, "print the effective command line of every component (or of COMPONENT)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 && !*showArgs {
			return fmt.Errorf("unexpected argument %q: a component name goes with --args", args[0])
		}
		if err := component.CheckArgsName(strings.Join(args, ""), controlplane.ArgsComponents); err != nil {
			return err
		}
		c, err := resolveConfig(cmd, *configPath, flags)
		if err != nil {
			return err
		}
		if *showArgs {
			return controlplane.PrintEffectiveArgs(cmd.OutOrStdout(), c, strings.Join(args, ""))
		}
		out := cmd.OutOrStdout()
		unhealthy := 0
		w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "COMPONENT\tHEALTH")
		for _, h := range controlplane.Health(cmd.Context(), c) {
			state := "ok"
			if h.Err != nil {
				state = "unhealthy: " + h.Err.Error()
				unhealthy++
			}
			fmt.Fprintf(w, "%s\t%s\n", h.Name, state)
		}
		w.Flush()
		fmt.Fprintln(out)
		if !printEtcd(cmd, out, c) {
			unhealthy++
		}
		problems, _ := printCerts(out, pki.Check(controlplane.Paths{DataDir: c.DataDir}.PKI()), time.Now(), c.Certificates)
		if unhealthy > 0 || problems > 0 {
			return fmt.Errorf("%d component(s) unhealthy, %d certificate problem(s)", unhealthy, problems)
		}
		return nil
	}
	return cmd
}

// printEtcd shows etcd's database against its quota and its alarms; false
// when etcd cannot be read or has an alarm (NOSPACE: writes are refused).
func printEtcd(cmd *cobra.Command, out io.Writer, c *config.ControlPlane) bool {
	st, err := controlplane.EtcdStatus(cmd.Context(), c)
	if err != nil {
		fmt.Fprintf(out, "etcd database: unknown: %s\n\n", err)
		return false
	}
	free := 0.0
	if st.DBSize > 0 {
		free = 100 * float64(st.DBSize-st.DBSizeInUse) / float64(st.DBSize)
	}
	fmt.Fprintf(out, "etcd database: %s (%s in use, %.0f%% free) of a %s quota (%.1f%%), revision %d\n",
		snapshot.HumanBytes(st.DBSize), snapshot.HumanBytes(st.DBSizeInUse), free, snapshot.HumanBytes(st.Quota), 100*float64(st.DBSize)/float64(st.Quota), st.Revision)
	if len(st.Alarms) == 0 {
		fmt.Fprintf(out, "etcd alarms: none\n\n")
		return true
	}
	fmt.Fprintf(out, "etcd alarms: %s (NOSPACE: etcd refuses writes until the database is back under its quota; delete objects or raise etcd.quotaBackendBytes)\n\n", strings.Join(st.Alarms, ", "))
	return false
}

func newCertsCommand() *cobra.Command {
	certs := &cobra.Command{
		Use:     "certs",
		Short:   "Inspect the cluster's certificates",
		Example: `  vcluster-standalone certs check`,
	}
	check := &cobra.Command{
		Use:   "check",
		Short: "List every CA and leaf certificate with its expiry; non-zero exit if any is missing, expired, due for renewal, or a CA has less than a year left",
		Example: `  vcluster-standalone certs check
  vcluster-standalone certs check --data-dir /var/lib/vcluster-standalone`,
		Args: cobra.NoArgs,
	}
	configPath := configPathFlag(check)
	dataDir := check.Flags().String("data-dir", "", "data dir of the control plane (default from the config file)")
	check.RunE = func(cmd *cobra.Command, _ []string) error {
		// The config supplies the data dir and the renewal threshold; with
		// --data-dir and no config file, the defaults apply.
		c, err := config.Load(*configPath, !cmd.Flags().Changed("config") || *dataDir != "")
		if err != nil {
			return err
		}
		config.SetDefaults(c, nil)
		dir := c.DataDir
		if *dataDir != "" {
			dir = *dataDir
		}
		problems, warnings := printCerts(cmd.OutOrStdout(), pki.Check(controlplane.Paths{DataDir: dir}.PKI()), time.Now(), c.Certificates)
		switch {
		case problems > 0:
			return fmt.Errorf("%d certificate problem(s); the running control plane renews leaf certificates every %s (is it running?)", problems, c.Certificates.CheckInterval.Duration)
		case warnings > 0:
			return fmt.Errorf("%d CA(s) expire within a year; no renewal extends a CA: rotate it", warnings)
		}
		return nil
	}
	certs.AddCommand(check, newCertsRotateCACommand())
	return certs
}

// printCerts writes a certificate table (CAs first) and returns how many
// need attention: problems (missing, expired, a leaf due for renewal) and
// warnings (a CA with less than a year left).
func printCerts(out io.Writer, certs []pki.CertStatus, now time.Time, cfg config.CertificatesConfig) (problems, warnings int) {
	lifetimes := pki.Lifetimes{Leaf: cfg.LeafLifetime.Duration, RenewBefore: cfg.RenewBefore.Duration}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CERTIFICATE\tKIND\tEXPIRES\tRESIDUAL\tSTATUS")
	for _, c := range certs {
		kind := "leaf"
		if c.IsCA {
			kind = "CA"
		}
		status := c.Attention(now, lifetimes)
		switch {
		case status == "":
			status = "ok"
		case strings.HasPrefix(status, "warning"):
			warnings++
		default:
			problems++
		}
		if c.Err != nil {
			fmt.Fprintf(w, "%s\t%s\t-\t-\t%s\n", c.Name, kind, status)
			continue
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", c.Name, kind, c.NotAfter.UTC().Format(time.RFC3339), residual(c.NotAfter.Sub(now)), status)
	}
	w.Flush()
	return problems, warnings
}

func residual(d time.Duration) string {
	if d <= 0 {
		return "0d"
	}
	if d < 24*time.Hour {
		return d.Round(time.Second).String()
	}
	days := int(d.Hours() / 24)
	if days >= 365 {
		return fmt.Sprintf("%dy%dd", days/365, days%365)
	}
	return fmt.Sprintf("%dd", days)
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version of the distribution and of every embedded component",
		Example: `  vcluster-standalone version`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return version.Print(cmd.OutOrStdout(), "vcluster-standalone",
				[]string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"},
				[2]string{"etcd", "v" + etcdversion.Version})
		},
	}
}
