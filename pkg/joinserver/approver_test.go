package joinserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"net"
	"strings"
	"testing"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	certutil "k8s.io/client-go/util/cert"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
)

type servingCase struct {
	user   string
	groups []string
	cn     string
	org    []string
	dns    []string
	ips    []string
	usages []certv1.KeyUsage
}

func servingCSR(t *testing.T, c servingCase) *certv1.CertificateSigningRequest {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var ips []net.IP
	for _, ip := range c.ips {
		ips = append(ips, net.ParseIP(ip))
	}
	req, err := certutil.MakeCSR(key, &pkix.Name{CommonName: c.cn, Organization: c.org}, c.dns, ips)
	if err != nil {
		t.Fatal(err)
	}
	return &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "csr-1"},
		Spec: certv1.CertificateSigningRequestSpec{
			Request: req, SignerName: certv1.KubeletServingSignerName, Usages: c.usages,
			Username: c.user, Groups: c.groups,
		},
	}
}

var testPolicy = ServingPolicy{
	ForbiddenDNS: []string{"cp", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "api.example.com"},
	ForbiddenIPs: []net.IP{net.ParseIP("192.0.2.10"), net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
	ServiceCIDR:  mustCIDR("10.96.0.0/12"),
	HostNode:     "cp",
}

func mustCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

func testNode(name string, addrs ...corev1.NodeAddress) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Addresses: addrs}}
}

func hostname(a string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeHostName, Address: a}
}
func internalIP(a string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a}
}

func TestDecideServingCSR(t *testing.T) {
	node := testNode("node-a", hostname("node-a"), internalIP("10.0.0.5"), corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.5"})
	nodeB := testNode("node-b", hostname("node-b"), internalIP("10.0.0.6"))
	all := []*corev1.Node{node, nodeB}
	good := servingCase{
		user: "system:node:node-a", groups: []string{"system:nodes", "system:authenticated"},
		cn: "system:node:node-a", org: []string{"system:nodes"},
		dns: []string{"node-a"}, ips: []string{"203.0.113.5", "10.0.0.5"},
		usages: []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth},
	}
	if d := DecideServingCSR(servingCSR(t, good), node, all, testPolicy); !d.Approve {
		t.Fatalf("matching CSR not approved: %s", d.Why)
	}
	rsa := good
	rsa.usages = append(rsa.usages, certv1.UsageKeyEncipherment)
	if d := DecideServingCSR(servingCSR(t, rsa), node, all, testPolicy); !d.Approve {
		t.Fatalf("RSA-style usages not approved: %s", d.Why)
	}
	cases := map[string]struct {
		edit func(c *servingCase)
		node *corev1.Node
		want string
	}{
		"foreign IP":      {func(c *servingCase) { c.ips = append(c.ips, "192.0.2.99") }, node, "SANs 192.0.2.99 are not addresses of Node node-a (it has node-a, 10.0.0.5, 203.0.113.5)"},
		"foreign DNS":     {func(c *servingCase) { c.dns = append(c.dns, "evil.example.com") }, node, "SANs refused: evil.example.com is not the hostname of Node node-a"},
		"missing address": {func(c *servingCase) { c.ips = c.ips[:1] }, node, "SANs lack 10.0.0.5 of Node node-a"},
		"no node":         {func(c *servingCase) {}, nil, "Node node-a does not exist"},
		"not a node":      {func(c *servingCase) { c.user = "system:bootstrap:abcdef" }, node, `requester "system:bootstrap:abcdef" is not a node`},
		"not in nodes":    {func(c *servingCase) { c.groups = []string{"system:authenticated"} }, node, "is not a node"},
		"other node's CN": {func(c *servingCase) { c.cn = "system:node:node-b" }, node, `subject "system:node:node-b" differs from the requesting node "system:node:node-a"`},
		"client usages": {func(c *servingCase) {
			c.usages = []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageClientAuth}
		}, node, "not a kubelet serving request: usages did not match"},
		"extra usage":      {func(c *servingCase) { c.usages = append(c.usages, certv1.UsageClientAuth) }, node, "not a kubelet serving request"},
		"wrong org":        {func(c *servingCase) { c.org = []string{"system:masters"} }, node, "subject organization is not system:nodes"},
		"no SANs":          {func(c *servingCase) { c.dns, c.ips = nil, nil }, node, "DNS or IP subjectAltName is required"},
		"node w/o address": {func(c *servingCase) {}, testNode("node-a"), "(it has none yet)"},
	}
	for name, tc := range cases {
		c := good
		c.ips = append([]string{}, good.ips...)
		c.dns = append([]string{}, good.dns...)
		tc.edit(&c)
		d := DecideServingCSR(servingCSR(t, c), tc.node, all, testPolicy)
		if d.Approve || !strings.Contains(d.Why, tc.want) || strings.Contains(d.Why, "\n") {
			t.Errorf("%s: approve=%v why=%q, want refusal containing %q", name, d.Approve, d.Why, tc.want)
		}
	}
}

// A node writes its own status.addresses: SANs that match them are refused
// when they name the API server, a service IP, loopback or another Node.
func TestDecideServingCSRRefusesNamesOthersRelyOn(t *testing.T) {
	nodeB := testNode("node-b", hostname("node-b"), internalIP("10.0.0.6"))
	cp := testNode("cp", hostname("cp"), internalIP("192.0.2.10"))
	cases := map[string]struct {
		name string
		dns  []string
		ips  []string
		want string
	}{
		"the API server's IP":        {"node-a", nil, []string{"192.0.2.10"}, "192.0.2.10 is an address of the API server"},
		"an extra SAN of the API":    {"api.example.com", []string{"api.example.com"}, nil, "api.example.com is a name of the API server"},
		"the kubernetes Service":     {"kubernetes.default.svc.cluster.local", []string{"kubernetes.default.svc.cluster.local"}, nil, "is a name of the API server"},
		"another cluster domain":     {"kubernetes.default.svc.corp", []string{"kubernetes.default.svc.corp"}, nil, "is a name of the API server"},
		"localhost":                  {"localhost", []string{"localhost"}, []string{"10.0.0.5"}, "localhost is a name of the API server"},
		"the first service IP":       {"node-a", nil, []string{"10.96.0.1"}, "10.96.0.1 is in the service CIDR 10.96.0.0/12"},
		"any service IP":             {"node-a", nil, []string{"10.100.3.4"}, "10.100.3.4 is in the service CIDR"},
		"loopback":                   {"node-a", nil, []string{"127.0.0.1"}, "127.0.0.1 is a loopback address"},
		"IPv6 loopback":              {"node-a", nil, []string{"::1"}, "::1 is a loopback address"},
		"another Node's IP":          {"node-a", []string{"node-a"}, []string{"10.0.0.6"}, "10.0.0.6 is an address of Node node-b"},
		"the host node's IP":         {"node-a", nil, []string{"192.0.2.10"}, "192.0.2.10 is an address of the API server"},
		"a DNS name not its own":     {"node-a", []string{"node-a", "www.example.com"}, nil, "www.example.com is not the hostname of Node node-a"},
		"another Node's hostname":    {"node-a", []string{"node-b"}, nil, "node-b is a name of Node node-b"},
		"the host node: no loopback": {"cp", []string{"cp"}, []string{"127.0.0.1"}, "127.0.0.1 is a loopback address"},
		"the host node: no service":  {"cp", []string{"cp"}, []string{"10.96.0.1"}, "is in the service CIDR"},
	}
	for what, tc := range cases {
		// The attacker's Node reports exactly what it asks for.
		var addrs []corev1.NodeAddress
		for _, d := range tc.dns {
			addrs = append(addrs, hostname(d))
		}
		for _, ip := range tc.ips {
			addrs = append(addrs, internalIP(ip))
		}
		self := testNode(tc.name, addrs...)
		csr := servingCSR(t, servingCase{user: "system:node:" + tc.name, groups: []string{"system:nodes"}, cn: "system:node:" + tc.name, org: []string{"system:nodes"},
			dns: tc.dns, ips: tc.ips, usages: []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth}})
		d := DecideServingCSR(csr, self, []*corev1.Node{self, nodeB, cp}, testPolicy)
		if d.Approve || !strings.Contains(d.Why, tc.want) || !strings.HasPrefix(d.Why, "SANs refused: ") {
			t.Errorf("%s: approve=%v why=%q, want refusal containing %q", what, d.Approve, d.Why, tc.want)
		}
	}
	// The control-plane host's own node may name the host (its hostname and
	// the advertise address are in the API server's certificate too).
	csr := servingCSR(t, servingCase{user: "system:node:cp", groups: []string{"system:nodes"}, cn: "system:node:cp", org: []string{"system:nodes"},
		dns: []string{"cp"}, ips: []string{"192.0.2.10"}, usages: []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth}})
	if d := DecideServingCSR(csr, cp, []*corev1.Node{cp, nodeB}, testPolicy); !d.Approve {
		t.Errorf("the host node's own name and address refused: %s", d.Why)
	}
	// Another Node reporting the host's name and address (which it may never
	// be certified for) does not keep the host's node from them.
	squatter := testNode("squatter", hostname("cp"), internalIP("192.0.2.10"))
	if d := DecideServingCSR(csr, cp, []*corev1.Node{cp, nodeB, squatter}, testPolicy); !d.Approve {
		t.Errorf("a squatter on the host's address blocks the host node: %s", d.Why)
	}
	noHost := testPolicy
	noHost.HostNode = ""
	if d := DecideServingCSR(csr, cp, []*corev1.Node{cp, nodeB}, noHost); d.Approve || !strings.Contains(d.Why, "cp is a name of the API server; 192.0.2.10 is an address of the API server") {
		t.Errorf("without a host node, its names: approve=%v %q", d.Approve, d.Why)
	}
}

func clientCSR(t *testing.T, user string, groups []string, cn string, org []string, dns []string, usages []certv1.KeyUsage) *certv1.CertificateSigningRequest {
	t.Helper()
	csr := servingCSR(t, servingCase{user: user, groups: groups, cn: cn, org: org, dns: dns, usages: usages})
	csr.Spec.SignerName = certv1.KubeAPIServerClientKubeletSignerName
	return csr
}

var (
	tokenGroups  = []string{"system:bootstrappers", "system:bootstrappers:vcluster-standalone:default-node-token", "system:authenticated"}
	clientUsages = []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageClientAuth}
)

func TestIsBootstrapClientCSR(t *testing.T) {
	if !isBootstrapClientCSR(clientCSR(t, "system:bootstrap:abcdef", tokenGroups, "system:node:n1", []string{"system:nodes"}, nil, clientUsages)) {
		t.Error("a join token's kubelet client CSR not recognized")
	}
	for what, csr := range map[string]*certv1.CertificateSigningRequest{
		"a node renewing (selfnodeclient, upstream's)": clientCSR(t, "system:node:n1", []string{"system:nodes"}, "system:node:n1", []string{"system:nodes"}, nil, clientUsages),
		"a token without the join group":               clientCSR(t, "system:bootstrap:abcdef", []string{"system:bootstrappers"}, "system:node:n1", []string{"system:nodes"}, nil, clientUsages),
		"an admin":                                     clientCSR(t, "kubernetes-admin", []string{"vcluster-standalone:cluster-admins"}, "system:node:n1", []string{"system:nodes"}, nil, clientUsages),
		"a serving CSR": servingCSR(t, servingCase{user: "system:bootstrap:abcdef", groups: tokenGroups, cn: "system:node:n1", org: []string{"system:nodes"},
			dns: []string{"n1"}, usages: []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth}}),
	} {
		if isBootstrapClientCSR(csr) {
			t.Errorf("%s: decided by the join approver", what)
		}
	}
}

func TestDecideBootstrapClientCSR(t *testing.T) {
	csr := clientCSR(t, "system:bootstrap:abcdef", tokenGroups, "system:node:n1", []string{"system:nodes"}, nil, clientUsages)
	if d := DecideBootstrapClientCSR(csr, nil); !d.Approve || !strings.Contains(d.Why, "join token abcdef asked for system:node:n1") {
		t.Errorf("a fresh name: %+v", d)
	}
	held := testNode("n1")
	if d := DecideBootstrapClientCSR(csr, held); d.Approve || d.Why != join.NodeNameInUse(held).Error() {
		t.Errorf("a name a Node holds: %+v", d)
	}
	deleting := testNode("n1")
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	if d := DecideBootstrapClientCSR(csr, deleting); !d.Approve {
		t.Errorf("a name whose Node is being deleted: %+v", d)
	}
	for what, c := range map[string]*certv1.CertificateSigningRequest{
		"a DNS SAN":       clientCSR(t, "system:bootstrap:abcdef", tokenGroups, "system:node:n1", []string{"system:nodes"}, []string{"n1"}, clientUsages),
		"another org":     clientCSR(t, "system:bootstrap:abcdef", tokenGroups, "system:node:n1", []string{"system:masters"}, nil, clientUsages),
		"not a node name": clientCSR(t, "system:bootstrap:abcdef", tokenGroups, "admin", []string{"system:nodes"}, nil, clientUsages),
		"server usage":    clientCSR(t, "system:bootstrap:abcdef", tokenGroups, "system:node:n1", []string{"system:nodes"}, nil, append(clientUsages, certv1.UsageServerAuth)),
	} {
		if d := DecideBootstrapClientCSR(c, nil); d.Approve || !strings.HasPrefix(d.Why, "not a kubelet client request: ") {
			t.Errorf("%s: %+v", what, d)
		}
	}
}

func TestIsPendingServing(t *testing.T) {
	csr := &certv1.CertificateSigningRequest{Spec: certv1.CertificateSigningRequestSpec{SignerName: certv1.KubeletServingSignerName}}
	if !isPendingServing(csr) {
		t.Fatal("fresh serving CSR not pending")
	}
	client := csr.DeepCopy()
	client.Spec.SignerName = certv1.KubeAPIServerClientKubeletSignerName
	denied := csr.DeepCopy()
	denied.Status.Conditions = []certv1.CertificateSigningRequestCondition{{Type: certv1.CertificateDenied}}
	approved := csr.DeepCopy()
	approved.Status.Conditions = []certv1.CertificateSigningRequestCondition{{Type: certv1.CertificateApproved}}
	for name, c := range map[string]*certv1.CertificateSigningRequest{"client signer": client, "denied": denied, "approved": approved} {
		if isPendingServing(c) {
			t.Errorf("%s CSR handled as pending", name)
		}
	}
}

func TestCSRApproverComponent(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	a := &CSRApprover{Client: func() (kubernetes.Interface, error) { return client, nil }, ServiceCIDR: "10.96.0.0/12"}
	if err := a.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(); err != nil {
		t.Fatal("Stop before Start:", err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	good := servingCase{
		user: "system:node:node-a", groups: []string{"system:nodes"}, cn: "system:node:node-a", org: []string{"system:nodes"},
		dns: []string{"node-a"}, ips: []string{"10.0.0.5"}, usages: []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth},
	}
	csr := servingCSR(t, good)
	if _, err := client.CertificatesV1().CertificateSigningRequests().Create(ctx, csr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// No Node yet: left pending. The Node appearing triggers a re-check.
	time.Sleep(300 * time.Millisecond)
	if got, _ := client.CertificatesV1().CertificateSigningRequests().Get(ctx, csr.Name, metav1.GetOptions{}); len(got.Status.Conditions) != 0 {
		t.Fatalf("approved without a Node: %+v", got.Status.Conditions)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeHostName, Address: "node-a"}, {Type: corev1.NodeInternalIP, Address: "10.0.0.5"},
	}}}
	if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := client.CertificatesV1().CertificateSigningRequests().Get(ctx, csr.Name, metav1.GetOptions{})
		return err == nil && len(got.Status.Conditions) == 1 && got.Status.Conditions[0].Type == certv1.CertificateApproved &&
			got.Status.Conditions[0].Reason == ReasonServingApproved, nil
	})
	if err != nil {
		t.Fatal("CSR not approved after its Node appeared")
	}

	// Join tokens' client CSRs: a held name is denied, a fresh one approved;
	// a node's own renewal and a serving CSR for a service IP stay pending.
	taken := clientCSR(t, "system:bootstrap:abcdef", tokenGroups, "system:node:node-a", []string{"system:nodes"}, nil, clientUsages)
	taken.Name = "taken"
	fresh := clientCSR(t, "system:bootstrap:abcdef", tokenGroups, "system:node:node-new", []string{"system:nodes"}, nil, clientUsages)
	fresh.Name = "fresh"
	renewal := clientCSR(t, "system:node:node-a", []string{"system:nodes"}, "system:node:node-a", []string{"system:nodes"}, nil, clientUsages)
	renewal.Name = "renewal"
	serviceIP := good
	serviceIP.ips = []string{"10.96.0.1"}
	badServing := servingCSR(t, serviceIP)
	badServing.Name = "service-ip"
	for _, c := range []*certv1.CertificateSigningRequest{taken, fresh, renewal, badServing} {
		if _, err := client.CertificatesV1().CertificateSigningRequests().Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	condition := func(name string) (certv1.RequestConditionType, string) {
		got, err := client.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil || len(got.Status.Conditions) == 0 {
			return "", ""
		}
		return got.Status.Conditions[0].Type, got.Status.Conditions[0].Reason
	}
	warned := func(reason, name string) bool {
		events, _ := client.CoreV1().Events("").List(ctx, metav1.ListOptions{})
		for _, e := range events.Items {
			if e.Type == corev1.EventTypeWarning && e.Reason == reason && e.InvolvedObject.Name == name {
				return true
			}
		}
		return false
	}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		tk, tr := condition("taken")
		fk, fr := condition("fresh")
		return tk == certv1.CertificateDenied && tr == ReasonClientDenied && fk == certv1.CertificateApproved && fr == ReasonClientApproved &&
			warned(ReasonClientDenied, "taken") && warned(ReasonServingNotApproved, "service-ip"), nil
	})
	if err != nil {
		tk, _ := condition("taken")
		fk, _ := condition("fresh")
		t.Fatalf("taken: %s (Event %v), fresh: %s; serving CSR for a service IP warned: %v", tk, warned(ReasonClientDenied, "taken"), fk, warned(ReasonServingNotApproved, "service-ip"))
	}
	for _, name := range []string{"renewal", "service-ip"} {
		if kind, _ := condition(name); kind != "" {
			t.Errorf("CSR %s decided (%s): it is not this approver's to approve", name, kind)
		}
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(); err != nil {
		t.Fatal("second Stop:", err)
	}
}
