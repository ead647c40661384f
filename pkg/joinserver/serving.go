package joinserver

import (
	"fmt"
	"net"
	"slices"
	"strings"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/kubernetes/pkg/apis/certificates"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
)

const (
	// ReasonServingApproved is the Approved condition's reason.
	ReasonServingApproved = "ServingCertSANsMatchNode"
	// ReasonServingNotApproved is the reason of the Event on a CSR left pending.
	ReasonServingNotApproved = "ServingCertNotApproved"
)

// Decision says whether a CSR may be approved; when not, Why says what is
// wrong in one line.
type Decision struct {
	Approve bool
	Why     string
}

func deny(format string, a ...any) Decision { return Decision{Why: fmt.Sprintf(format, a...)} }

// ServingPolicy is what no kubelet serving certificate may name, whatever its
// Node reports: a node writes its own status.addresses, so SANs that match
// them prove nothing about names others rely on.
type ServingPolicy struct {
	// ForbiddenDNS and ForbiddenIPs are the API server's names and addresses
	// (its serving certificate's SANs); the in-cluster names of the
	// kubernetes Service and loopback are refused whatever they hold.
	ForbiddenDNS []string
	ForbiddenIPs []net.IP
	// ServiceCIDR holds the Services' virtual IPs (nil: not checked).
	ServiceCIDR *net.IPNet
	// HostNode is the control-plane host's own Node ("" when it runs none):
	// it runs beside the API server, so it may name the host's name and
	// address that the API server's certificate also lists.
	HostNode string
}

// DecideServingCSR checks a kubernetes.io/kubelet-serving CSR against the
// Node it is for (nil if there is none) and every Node (for names others
// hold): the requester must be that node, the request a kubelet serving
// request, its DNS SAN the Node's name (the kubelet's hostname) and its IP
// SANs the Node's addresses, exactly; and no SAN may be a name of the API
// server, a service IP, loopback, or another Node's.
func DecideServingCSR(csr *certv1.CertificateSigningRequest, node *corev1.Node, nodes []*corev1.Node, p ServingPolicy) Decision {
	name, ok := strings.CutPrefix(csr.Spec.Username, join.NodeUserPrefix)
	if !ok || name == "" || !slices.Contains(csr.Spec.Groups, join.NodesGroup) {
		return deny("requester %q is not a node (system:node:<name> in group %s)", csr.Spec.Username, join.NodesGroup)
	}
	req, err := certificates.ParseCSR(csr.Spec.Request)
	if err != nil {
		return deny("the request cannot be parsed: %v", err)
	}
	if err := certificates.ValidateKubeletServingCSR(req, usageSet(csr.Spec.Usages)); err != nil {
		return deny("not a kubelet serving request: %v", err)
	}
	if req.Subject.CommonName != csr.Spec.Username {
		return deny("subject %q differs from the requesting node %q", req.Subject.CommonName, csr.Spec.Username)
	}
	if node == nil {
		return deny("Node %s does not exist", name)
	}
	if refused := p.refusedSANs(name, req.DNSNames, req.IPAddresses, p.otherNodesNames(nodes, name)); len(refused) > 0 {
		return deny("SANs refused: %s", strings.Join(refused, "; "))
	}
	wantDNS, wantIPs := sets.New[string](), sets.New[string]()
	for _, a := range node.Status.Addresses {
		switch a.Type {
		case corev1.NodeHostName, corev1.NodeInternalDNS, corev1.NodeExternalDNS:
			wantDNS.Insert(a.Address)
		case corev1.NodeInternalIP, corev1.NodeExternalIP:
			if ip := net.ParseIP(a.Address); ip != nil {
				wantIPs.Insert(ip.String())
			}
		}
	}
	gotDNS, gotIPs := sets.New(req.DNSNames...), sets.New[string]()
	for _, ip := range req.IPAddresses {
		gotIPs.Insert(ip.String())
	}
	if extra := gotDNS.Difference(wantDNS).Union(gotIPs.Difference(wantIPs)); extra.Len() > 0 {
		return deny("SANs %s are not addresses of Node %s (%s)", strings.Join(sets.List(extra), ", "), name, nodeAddresses(wantDNS, wantIPs))
	}
	if missing := wantDNS.Difference(gotDNS).Union(wantIPs.Difference(gotIPs)); missing.Len() > 0 {
		return deny("SANs lack %s of Node %s; they must be exactly its hostname and addresses", strings.Join(sets.List(missing), ", "), name)
	}
	return Decision{Approve: true, Why: fmt.Sprintf("SANs match the hostname and addresses of Node %s", name)}
}

// refusedSANs says, one phrase each, which SANs of node's request no policy
// allows. others maps the names and addresses other Nodes may hold to them.
func (p ServingPolicy) refusedSANs(node string, dns []string, ips []net.IP, others map[string]string) []string {
	var refused []string
	for _, d := range dns {
		why := p.refusedDNS(node, d)
		switch {
		case why != "":
			refused = append(refused, why)
		case others[d] != "":
			refused = append(refused, fmt.Sprintf("%s is a name of Node %s", d, others[d]))
		case d != node:
			// Our kubelets report their node name as hostname (hostname-override).
			refused = append(refused, fmt.Sprintf("%s is not the hostname of Node %s", d, node))
		}
	}
	for _, ip := range ips {
		why := p.refusedIP(node, ip)
		switch {
		case why != "":
			refused = append(refused, why)
		case others[ip.String()] != "":
			refused = append(refused, fmt.Sprintf("%s is an address of Node %s", ip, others[ip.String()]))
		}
	}
	return refused
}

// refusedDNS says why no certificate of node may name d, "" if it may as
// far as the API server goes.
func (p ServingPolicy) refusedDNS(node, d string) string {
	if isServiceName(d) || (node != p.HostNode && slices.ContainsFunc(p.ForbiddenDNS, func(f string) bool { return strings.EqualFold(f, d) })) {
		return d + " is a name of the API server"
	}
	return ""
}

// refusedIP says why no certificate of node may name ip, "" if it may as far
// as the API server and Services go.
func (p ServingPolicy) refusedIP(node string, ip net.IP) string {
	switch {
	case ip.IsLoopback() || ip.IsUnspecified():
		return ip.String() + " is a loopback address"
	case p.ServiceCIDR != nil && p.ServiceCIDR.Contains(ip):
		return fmt.Sprintf("%s is in the service CIDR %s", ip, p.ServiceCIDR)
	case node != p.HostNode && slices.ContainsFunc(p.ForbiddenIPs, ip.Equal):
		return ip.String() + " is an address of the API server"
	}
	return ""
}

// isServiceName reports whether d names the kubernetes Service (the API
// server inside the cluster), in any cluster domain, or localhost.
func isServiceName(d string) bool {
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	switch d {
	case "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc":
		return true
	}
	return strings.HasPrefix(d, "kubernetes.default.svc.") || strings.HasSuffix(d, ".localhost")
}

// otherNodesNames maps what every Node but self holds to it: its name (the
// only DNS name it can be certified for) and those of its addresses it could
// be certified for. A Node reporting what it may never have (the API
// server's address, say) must not keep the rightful owner from it.
func (p ServingPolicy) otherNodesNames(nodes []*corev1.Node, self string) map[string]string {
	held := map[string]string{}
	for _, n := range nodes {
		if n.Name == self {
			continue
		}
		held[n.Name] = n.Name
		for _, a := range n.Status.Addresses {
			if ip := net.ParseIP(a.Address); ip != nil && p.refusedIP(n.Name, ip) == "" {
				held[ip.String()] = n.Name
			}
		}
	}
	return held
}

func usageSet(usages []certv1.KeyUsage) sets.String {
	s := sets.NewString()
	for _, u := range usages {
		s.Insert(string(u))
	}
	return s
}

func nodeAddresses(dns, ips sets.Set[string]) string {
	all := append(sets.List(dns), sets.List(ips)...)
	if len(all) == 0 {
		return "it has none yet"
	}
	return "it has " + strings.Join(all, ", ")
}

// isPendingServing reports whether csr is a kubelet serving CSR still waiting.
func isPendingServing(csr *certv1.CertificateSigningRequest) bool {
	return csr.Spec.SignerName == certv1.KubeletServingSignerName && isPending(csr)
}

// isPending reports whether csr has neither a decision nor a certificate.
func isPending(csr *certv1.CertificateSigningRequest) bool {
	if len(csr.Status.Certificate) > 0 {
		return false
	}
	for _, c := range csr.Status.Conditions {
		if c.Type == certv1.CertificateApproved || c.Type == certv1.CertificateDenied || c.Type == certv1.CertificateFailed {
			return false
		}
	}
	return true
}
