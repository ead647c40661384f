// Package join holds what both sides of a join agree on: the bootstrap token
// format, the identities a token and a joined node authenticate as, and the
// node's unit. The control plane's side is pkg/joinserver, the node's side
// pkg/joinnode; the node's credential files are pkg/nodecreds.
package join

import (
	"fmt"
	"strings"

	bootstraputil "k8s.io/cluster-bootstrap/token/util"
)

// NodeBootstrapGroup is the group every join token authenticates as, besides
// system:bootstrappers. RBAC lets it create CSRs and read Nodes; the join
// approver decides on its kubelet client CSRs.
const NodeBootstrapGroup = "system:bootstrappers:vcluster-standalone:default-node-token"

// The identity of a joined node: the one the Node authorizer and
// NodeRestriction know.
const (
	NodeUserPrefix = "system:node:"
	NodesGroup     = "system:nodes"
)

// NodeUnit is the systemd unit join installs and enables.
const NodeUnit = "node-agent.service"

// BootstrapToken is a parsed bootstrap token. String never reveals the secret.
type BootstrapToken struct {
	ID, Secret string
}

func (t BootstrapToken) String() string { return t.ID + ".<secret>" }

// Full returns ID.SECRET, for the Authorization header only.
func (t BootstrapToken) Full() string { return bootstraputil.TokenFromIDAndSecret(t.ID, t.Secret) }

// ParseBootstrapToken checks the kubeadm token format without echoing the secret.
func ParseBootstrapToken(s string) (BootstrapToken, error) {
	if !bootstraputil.IsValidBootstrapToken(s) {
		return BootstrapToken{}, fmt.Errorf("malformed token: a bootstrap token looks like abcdef.0123456789abcdef ([a-z0-9]{6}.[a-z0-9]{16}); copy it from `vcluster-standalone token create`")
	}
	id, secret, _ := strings.Cut(s, ".")
	return BootstrapToken{ID: id, Secret: secret}, nil
}
