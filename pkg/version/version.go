// Package version reports the distribution's own version and the Kubernetes
// version of the components embedded in it.
package version

import (
	componentversion "k8s.io/component-base/version"
)

// Version is the distribution's release, set by the Makefile through ldflags.
var Version = "dev"

// Kubernetes returns the version every embedded Kubernetes component reports.
func Kubernetes() string {
	return componentversion.Get().GitVersion
}
