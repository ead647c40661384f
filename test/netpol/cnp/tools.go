//go:build tools

// Package cnp pins what `make netpol-conformance` builds from source: the
// network-policy-api v0.3.0 conformance tests for ClusterNetworkPolicy
// (`go test -c sigs.k8s.io/network-policy-api/conformance`). The imports are
// the packages that test binary needs, so `go mod tidy` keeps them; nothing
// here is compiled into the product.
package cnp

import (
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	_ "sigs.k8s.io/controller-runtime/pkg/client/config"
	_ "sigs.k8s.io/network-policy-api/apis/v1beta1"
	_ "sigs.k8s.io/network-policy-api/conformance/tests"
	_ "sigs.k8s.io/network-policy-api/conformance/utils/flags"
	_ "sigs.k8s.io/network-policy-api/conformance/utils/suite"
)
