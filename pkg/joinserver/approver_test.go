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

func TestDecideServingCSR(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeHostName, Address: "node-a"}, {Type: corev1.NodeInternalIP, Address: "10.0.0.5"}, {Type: corev1.NodeExternalIP, Address: "203.0.113.5"},
	}}}
	good := servingCase{
		user: "system:node:node-a", groups: []string{"system:nodes", "system:authenticated"},
		cn: "system:node:node-a", org: []string{"system:nodes"},
		dns: []string{"node-a"}, ips: []string{"203.0.113.5", "10.0.0.5"},
		usages: []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth},
	}
	if d := DecideServingCSR(servingCSR(t, good), node); !d.Approve {
		t.Fatalf("matching CSR not approved: %s", d.Why)
	}
	rsa := good
	rsa.usages = append(rsa.usages, certv1.UsageKeyEncipherment)
	if d := DecideServingCSR(servingCSR(t, rsa), node); !d.Approve {
		t.Fatalf("RSA-style usages not approved: %s", d.Why)
	}
	cases := map[string]struct {
		edit func(c *servingCase)
		node *corev1.Node
		want string
	}{
		"foreign IP":      {func(c *servingCase) { c.ips = append(c.ips, "192.0.2.99") }, node, "SANs 192.0.2.99 are not addresses of Node node-a (it has node-a, 10.0.0.5, 203.0.113.5)"},
		"foreign DNS":     {func(c *servingCase) { c.dns = append(c.dns, "evil.example.com") }, node, "SANs evil.example.com are not addresses"},
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
		"node w/o address": {func(c *servingCase) {}, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}, "(it has none yet)"},
	}
	for name, tc := range cases {
		c := good
		c.ips = append([]string{}, good.ips...)
		c.dns = append([]string{}, good.dns...)
		tc.edit(&c)
		d := DecideServingCSR(servingCSR(t, c), tc.node)
		if d.Approve || !strings.Contains(d.Why, tc.want) || strings.Contains(d.Why, "\n") {
			t.Errorf("%s: approve=%v why=%q, want refusal containing %q", name, d.Approve, d.Why, tc.want)
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

func TestServingApproverComponent(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	a := &ServingApprover{Client: func() (kubernetes.Interface, error) { return client, nil }}
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
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(); err != nil {
		t.Fatal("second Stop:", err)
	}
}
