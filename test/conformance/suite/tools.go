//go:build tools

// Package suite pins what `make conformance` builds from source: the upstream
// end-to-end suite (e2e.test), the ginkgo CLI that runs it in parallel, and
// kubectl, all at Kubernetes v1.36.3. The imports keep `go mod tidy` from
// dropping their dependencies; nothing here is compiled into the product.
package suite

import (
	_ "github.com/onsi/ginkgo/v2/ginkgo"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/test/e2e"
)
