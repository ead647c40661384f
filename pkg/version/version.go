// Package version reports the distribution's own version and the Kubernetes
// version of the components embedded in it.
package version

import (
	"errors"

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
