// Package runner runs the network-policy-api v0.3.0 conformance tests for
// ClusterNetworkPolicy against a cluster (make netpol-conformance).
//
// The tests read their manifests from an embed.FS. base/ is not kept in this
// repository: `make netpol-conformance` derives it from the module's
// conformance/base, dropping the agnhost containers that serve SCTP (the lab's
// kernel has no SCTP, so they exit at once and their pods never become ready).
package runner

import "embed"

// Manifests holds base/ as derived from the module at build time.
//
//go:embed base
var Manifests embed.FS
