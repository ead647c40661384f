package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/vcluster-standalone/vcluster-standalone/systemd"
)

// newUnitCommand prints the systemd units embedded in the binary, so installers
// write exactly the unit that was built and tested with it.
func newUnitCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "unit [NAME]",
		Short: "Print an embedded systemd unit file (or list them)",
		Long: "Print the systemd unit file NAME embedded in this binary, as installers write it.\n" +
			"Without NAME, list the embedded units. The .service suffix may be omitted.",
		Example: "  # list embedded units\n" +
			"  vcluster-standalone unit\n\n" +
			"  # install the control-plane unit by hand\n" +
			"  vcluster-standalone unit vcluster-standalone > /etc/systemd/system/vcluster-standalone.service",
		Args:         cobra.MaximumNArgs(1),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return systemd.Print(cmd.OutOrStdout(), strings.Join(args, ""))
		},
	}
}
