package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/certificate/csr"
	"k8s.io/client-go/util/keyutil"
	"k8s.io/client-go/util/retry"

	"github.com/vcluster-standalone/vcluster-standalone/packaging"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/joinserver"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// TestJoinEndpoint: the join endpoint serves install.sh and node-agent to a
// client holding the printed pin, 404s everything else, and curl with a
// wrong pin gets nothing.
func TestJoinEndpoint(t *testing.T) {
	cp := newJoinControlPlane(t)
	cp.start()
	tok := createToken(t, cp)
	u, err := url.Parse(tok.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	pinned := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: pinnedTLS(tok.pin)}}

	status, body := get(pinned, tok.endpoint+"/install.sh")
	if status != http.StatusOK || body != string(packaging.InstallScript) {
		t.Fatalf("GET /install.sh: %d, %d bytes; want 200 and the embedded install.sh", status, len(body))
	}
	// node-agent absent beside the binary: a bare 404 (the path on disk is
	// for the control plane's log only); present: served.
	status, body = get(pinned, tok.endpoint+"/bin/node-agent")
	if status != http.StatusNotFound || body != "404 page not found\n" {
		t.Errorf("GET /bin/node-agent without the file: %d %q, want a bare 404", status, body)
	}
	agent := []byte("#!/bin/sh\necho fake node-agent\n")
	if err := os.WriteFile(cp.nodeAgent, agent, 0o755); err != nil {
		t.Fatal(err)
	}
	if status, body = get(pinned, tok.endpoint+"/bin/node-agent"); status != http.StatusOK || body != string(agent) {
		t.Errorf("GET /bin/node-agent: %d %q", status, body)
	}

	// Only those two paths: raw request lines, so nothing cleans them first.
	secretFile := cp.dataDir + "/pki/ca.key"
	for _, path := range []string{
		"/", "/bin/", "/bin", "/install.sh/", "//install.sh", "/bin/vcluster-standalone", "/bin/../install.sh",
		"/bin/node-agent/..", "/bin/%2e%2e/vcluster-standalone", "/bin/..%2fvcluster-standalone", "/%2e%2e/%2e%2e" + secretFile,
		"/bin/../../../../.." + secretFile, "/bin/..%2F..%2F..%2F.." + secretFile, "/%69nstall.sh", "/install.sh?x=1",
		"/bin/node-agent%00", "/bin/node-agent/../../../etc/passwd", "/../install.sh", "/.%2e/bin/node-agent",
	} {
		status, body := rawGet(t, u.Host, tok.pin, path)
		if status != http.StatusNotFound || body != "404 page not found\n" {
			t.Errorf("GET %s: %d %q, want a bare 404", path, status, body[:min(len(body), 80)])
		}
	}
	if resp, err := pinned.Post(tok.endpoint+"/install.sh", "text/plain", strings.NewReader("x")); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /install.sh: %v %v", resp, err)
	}

	// curl as the printed line runs it: the pin authenticates; a wrong pin fails.
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	if !strings.HasPrefix(tok.curlLine, "curl -fsSk --pinnedpubkey '"+tok.pin+"' "+tok.printedEndpoint+"/install.sh | VCS_TOKEN="+tok.token+" sh -s - --url "+tok.printedEndpoint+"/bin --pinned-pubkey '"+tok.pin+"' --join ") || strings.Contains(tok.curlLine, "--token") {
		t.Errorf("curl line: %s", tok.curlLine)
	}
	out, err := exec.Command("curl", "-fsSk", "--pinnedpubkey", tok.pin, tok.endpoint+"/install.sh").Output()
	if err != nil || !bytes.Equal(out, packaging.InstallScript) {
		t.Errorf("curl with the printed pin: %v, %d bytes", err, len(out))
	}
	cas, _ := certutil.CertsFromFile(cp.dataDir + "/pki/ca.crt")
	wrong := pki.PublicKeyPin(cas[0])
	out, err = exec.Command("curl", "-fsSk", "--pinnedpubkey", wrong, tok.endpoint+"/install.sh").Output()
	if err == nil || len(out) > 0 {
		t.Errorf("curl with a wrong pin must fail and print nothing: %v, %d bytes", err, len(out))
	}
	// install.sh fetches node-agent the same way (-k with the pin).
	out, err = exec.Command("curl", "-fsSLk", "--pinnedpubkey", tok.pin, tok.endpoint+"/bin/node-agent").Output()
	if err != nil || !bytes.Equal(out, agent) {
		t.Errorf("curl node-agent with the pin: %v %q", err, out)
	}
}

// rawGet sends path as-is on a pinned TLS connection.
func rawGet(t *testing.T, host, pin, path string) (int, string) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", host, pinnedTLS(pin))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestJoinCertificateApproval: a bootstrap token gets a node client
// certificate for a free name approved (by the control plane's CSR
// approver); a node renews its own (kube-controller-manager) but not another
// node's; the
// serving approver signs SANs matching the Node and leaves others pending
// with an Event.
func TestJoinCertificateApproval(t *testing.T) {
	cp := newJoinControlPlane(t)
	cp.start()
	ctx := context.Background()
	admin := cp.client()
	tok := createToken(t, cp)

	if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	setAddresses(t, admin, "node-a", corev1.NodeAddress{Type: corev1.NodeHostName, Address: "node-a"}, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.5"})
	nodeA := nodeClient(t, cp, "node-a")
	clientUsages := []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageClientAuth}
	servingUsages := []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth}

	// TLS bootstrap with the token, then the node's own renewal: approved and signed.
	bootstrap := requestCSR(t, bearerClient(t, cp, tok.token), "bootstrap", "system:node:node-c", certv1.KubeAPIServerClientKubeletSignerName, clientUsages, nil, nil)
	renewal := requestCSR(t, nodeA, "renewal", "system:node:node-a", certv1.KubeAPIServerClientKubeletSignerName, clientUsages, nil, nil)
	serving := requestCSR(t, nodeA, "serving", "system:node:node-a", certv1.KubeletServingSignerName, servingUsages, []string{"node-a"}, []net.IP{net.ParseIP("10.0.0.5")})
	for name, reason := range map[string]string{bootstrap: joinserver.ReasonClientApproved, renewal: "AutoApproved", serving: joinserver.ReasonServingApproved} {
		mustPoll(t, 30*time.Second, "CSR "+name+" approved and signed", func(ctx context.Context) error {
			c, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if approvalReason(c) != reason || len(c.Status.Certificate) == 0 {
				return fmt.Errorf("approval %q, %d certificate bytes", approvalReason(c), len(c.Status.Certificate))
			}
			return nil
		})
	}

	// Refused: a foreign IP, a missing SAN, another node's name.
	pending := map[string]string{
		requestCSR(t, nodeA, "foreign-ip", "system:node:node-a", certv1.KubeletServingSignerName, servingUsages, []string{"node-a"}, []net.IP{net.ParseIP("10.0.0.5"), net.ParseIP("192.0.2.99")}): "SANs 192.0.2.99 are not addresses of Node node-a",
		requestCSR(t, nodeA, "missing-san", "system:node:node-a", certv1.KubeletServingSignerName, servingUsages, []string{"node-a"}, nil):                                                         "SANs lack 10.0.0.5 of Node node-a",
	}
	// A node asking for another node's certificate is refused outright
	// (NodeRestriction); the approvers would leave it pending anyway.
	for signer, usages := range map[string][]certv1.KeyUsage{certv1.KubeletServingSignerName: servingUsages, certv1.KubeAPIServerClientKubeletSignerName: clientUsages} {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pemCSR, _ := certutil.MakeCSR(key, &pkix.Name{CommonName: "system:node:node-b", Organization: []string{"system:nodes"}}, []string{"node-b"}, nil)
		_, _, err := csr.RequestCertificate(nodeA, pemCSR, "", signer, nil, usages, key)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "can only create a node CSR with CN=system:node:node-a") {
			t.Errorf("node-a requesting a %s certificate for node-b: %v, want forbidden", signer, err)
		}
	}
	for name, why := range pending {
		mustPoll(t, 30*time.Second, "Event on CSR "+name, func(ctx context.Context) error {
			events, err := admin.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
			if err != nil {
				return err
			}
			for _, e := range events.Items {
				if e.Reason == joinserver.ReasonServingNotApproved && strings.Contains(e.Message, why) {
					return nil
				}
			}
			return fmt.Errorf("no %s Event containing %q among %d", joinserver.ReasonServingNotApproved, why, len(events.Items))
		})
	}
	time.Sleep(3 * time.Second) // approvers had time; none of these may be approved
	for name := range pending {
		c, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil || approvalReason(c) != "" || len(c.Status.Certificate) > 0 {
			t.Errorf("CSR %s must stay pending: %v %q", name, err, approvalReason(c))
		}
	}

	// A Node gaining the address later: the pending missing-SAN case is
	// re-checked. Here the foreign IP becomes the node's, so it is approved.
	setAddresses(t, admin, "node-a", corev1.NodeAddress{Type: corev1.NodeHostName, Address: "node-a"}, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.5"},
		corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "192.0.2.99"})
	for name, why := range pending {
		if strings.HasPrefix(why, "SANs 192.0.2.99") {
			mustPoll(t, 30*time.Second, "CSR "+name+" approved after the Node changed", func(ctx context.Context) error {
				c, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
				if err == nil && approvalReason(c) != joinserver.ReasonServingApproved {
					err = fmt.Errorf("approval %q", approvalReason(c))
				}
				return err
			})
		}
	}
}

// setAddresses sets a Node's addresses, retrying on conflicts with the
// controllers that update Nodes too.
func setAddresses(t *testing.T, client kubernetes.Interface, name string, addresses ...corev1.NodeAddress) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		node.Status.Addresses = addresses
		_, err = client.CoreV1().Nodes().UpdateStatus(context.Background(), node, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func requestCSR(t *testing.T, client kubernetes.Interface, prefix, cn, signer string, usages []certv1.KeyUsage, dns []string, ips []net.IP) string {
	t.Helper()
	name, _ := requestCSRWithKey(t, client, prefix, cn, signer, usages, dns, ips)
	return name
}

// requestCSRWithKey is requestCSR that also returns the private key (PEM).
func requestCSRWithKey(t *testing.T, client kubernetes.Interface, prefix, cn, signer string, usages []certv1.KeyUsage, dns []string, ips []net.IP) (string, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemCSR, err := certutil.MakeCSR(key, &pkix.Name{CommonName: cn, Organization: []string{"system:nodes"}}, dns, ips)
	if err != nil {
		t.Fatal(err)
	}
	name, _, err := csr.RequestCertificate(client, pemCSR, prefix+"-"+fmt.Sprint(time.Now().UnixNano()), signer, nil, usages, key)
	if err != nil {
		t.Fatalf("create CSR %s for %s: %v", prefix, cn, err)
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	return name, keyPEM
}

// approvalReason returns the reason of the Approved condition, or "".
func approvalReason(c *certv1.CertificateSigningRequest) string {
	if c == nil {
		return ""
	}
	for _, cond := range c.Status.Conditions {
		if cond.Type == certv1.CertificateApproved {
			return cond.Reason
		}
	}
	return ""
}
