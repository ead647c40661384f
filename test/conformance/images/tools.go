//go:build tools

// Package images pins the main packages images.mk builds into the
// conformance images, so `go mod tidy` keeps them in go.mod.
package images

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/test/images/agnhost"
	_ "k8s.io/kubernetes/test/images/nonewprivs"
	_ "k8s.io/sample-apiserver"
)
