package joinserver

import (
	"fmt"
	"slices"
	"strings"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/apis/certificates"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
)

const (
	// ReasonClientApproved is the Approved condition's reason on a join
	// token's kubelet client CSR.
	ReasonClientApproved = "NodeNameFree"
	// ReasonClientDenied is the reason of the Denied condition (and its
	// Warning Event) on one that is refused.
	ReasonClientDenied = "NodeClientCertRefused"
)

// bootstrapUserPrefix is the user a bootstrap token authenticates as
// (system:bootstrap:<token id>).
const bootstrapUserPrefix = "system:bootstrap:"

// isBootstrapClientCSR reports whether csr is a kubelet client CSR made with
// a join token: the ones this approver decides. A node renewing its own
// certificate (selfnodeclient) is left to kube-controller-manager.
func isBootstrapClientCSR(csr *certv1.CertificateSigningRequest) bool {
	return csr.Spec.SignerName == certv1.KubeAPIServerClientKubeletSignerName &&
		strings.HasPrefix(csr.Spec.Username, bootstrapUserPrefix) &&
		slices.Contains(csr.Spec.Groups, "system:bootstrappers") && slices.Contains(csr.Spec.Groups, join.NodeBootstrapGroup)
}

// DecideBootstrapClientCSR checks a join token's kubelet client CSR (see
// isBootstrapClientCSR) against the Node of the name it asks for (nil if
// there is none): it must be a kubelet client request for
// system:node:<name>, O=system:nodes, and no Node may hold that name. A token
// is no proof of a name, so a held name is refused: taking it would let the
// token holder act as that node.
func DecideBootstrapClientCSR(csr *certv1.CertificateSigningRequest, node *corev1.Node) Decision {
	req, err := certificates.ParseCSR(csr.Spec.Request)
	if err != nil {
		return deny("the request cannot be parsed: %v", err)
	}
	if err := certificates.ValidateKubeletClientCSR(req, usageSet(csr.Spec.Usages)); err != nil {
		return deny("not a kubelet client request: %v", err)
	}
	name := strings.TrimPrefix(req.Subject.CommonName, join.NodeUserPrefix)
	if err := join.NodeNameInUse(node); err != nil {
		return deny("%v", err)
	}
	return Decision{Approve: true, Why: fmt.Sprintf("join token %s asked for %s%s and no Node holds that name",
		strings.TrimPrefix(csr.Spec.Username, bootstrapUserPrefix), join.NodeUserPrefix, name)}
}

// requestedNodeName is the node name a kubelet client CSR asks for, "" when
// its subject is not system:node:<name>.
func requestedNodeName(csr *certv1.CertificateSigningRequest) string {
	req, err := certificates.ParseCSR(csr.Spec.Request)
	if err != nil {
		return ""
	}
	if name, ok := strings.CutPrefix(req.Subject.CommonName, join.NodeUserPrefix); ok {
		return name
	}
	return ""
}
