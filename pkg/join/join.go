// Package join holds what both sides of a join agree on: the bootstrap token
// format, the identities a token and a joined node authenticate as, and the
// node's unit. The control plane's side is pkg/joinserver, the node's side
// pkg/joinnode; the node's credential files are pkg/nodecreds.
package join

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
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

// NodeNameInUse says why a joining machine may not take the name of node
// (nil when there is no such Node): a Node of that name exists and is not
// being deleted, whatever its state, so the name belongs to another machine
// or to this one before a reset. node-agent join asks it before creating a
// CSR, and the control plane's approver denies the CSR on the same answer.
func NodeNameInUse(node *corev1.Node) error {
	if node == nil || node.DeletionTimestamp != nil {
		return nil
	}
	return fmt.Errorf("a Node named %q already exists: another machine uses this name, or this machine was reset without deleting its Node; "+
		"join with another --node-name, or delete the old one first with `vcluster-standalone kubectl delete node %s`", node.Name, node.Name)
}

// The kubelet-serving CA certificate (not its key) is published here, for
// nodes that verify other nodes' kubelet serving certificates (the registry
// mirror's peers); readable by nodes and by join tokens.
const (
	KubeletServingCANamespace = "kube-public"
	KubeletServingCAConfigMap = "kubelet-serving-ca"
	KubeletServingCAKey       = "ca.crt"
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
