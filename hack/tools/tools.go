//go:build tools

// Package tools pins the Go programs the Makefile builds from modules
// (csi-sanity, for `make e2e`), so go.mod keeps their requirements.
package tools

import (
	_ "github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity"
)
