// Package version reports the distribution's own version and the Kubernetes
// version of the components embedded in it.
package version

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	componentversion "k8s.io/component-base/version"
)

// Version is the distribution's release, set by the Makefile through ldflags.
var Version = "dev"

// Kubernetes returns the version every embedded Kubernetes component reports,
// or an error for a binary built without the Makefile's version ldflags.
func Kubernetes() (string, error) {
	v := componentversion.Get().GitVersion
	if v == "v0.0.0-master" {
		return "", errors.New("this binary was built without version ldflags; build it with `make build`")
	}
	return v, nil
}

// Print writes the version table a binary's `version` command shows: the
// binary itself, then each embedded Kubernetes component, then extra rows
// (name, version) such as etcd.
func Print(w io.Writer, binary string, kubeComponents []string, extra ...[2]string) error {
	k8s, err := Kubernetes()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\t%s\n", binary, Version)
	for _, name := range kubeComponents {
		fmt.Fprintf(tw, "%s\t%s\n", name, k8s)
	}
	for _, row := range extra {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}

// Runc is the version of the runc embedded in node-agent, set by the Makefile.
var Runc = "unknown"
