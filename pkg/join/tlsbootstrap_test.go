package join

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

func testCA(t *testing.T) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: "test-ca"}, key)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

// issue signs a client certificate the way the kubelet client signer does.
func issue(t *testing.T, ca *x509.Certificate, caKey crypto.Signer, cn string, notAfter time.Time) *KubeletClientCert {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: []string{NodesGroup}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyPEM, _ := keyutil.MarshalPrivateKeyToPEM(key)
	return &KubeletClientCert{CSRName: "csr-test", CertPEM: pki.EncodeCert(cert), KeyPEM: keyPEM, Cert: cert}
}

func TestStoreAndLoadKubeletClientCert(t *testing.T) {
	ca, caKey := testCA(t)
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	caFile := filepath.Join(pkiDir, "ca.crt")
	c := issue(t, ca, caKey, "system:node:n1", time.Now().Add(time.Hour))
	if _, err := checkKubeletClientCert(c.CertPEM, "n1", []*x509.Certificate{ca}); err != nil {
		t.Fatal(err)
	}
	path, err := StoreKubeletClientCert(pkiDir, c)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(pkiDir, "kubelet-client-current.pem") {
		t.Fatalf("path %s", path)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("want the kubelet's current symlink: %v %v", fi, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(pkiDir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("pki dir mode %v, want 0700", fi.Mode().Perm())
	}
	pki.WriteFileAtomic(caFile, pki.EncodeCert(ca), 0o644)
	if _, err := LoadKubeletClientCert(pkiDir, caFile, "n1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKubeletClientCert(pkiDir, caFile, "n2", time.Now()); err == nil {
		t.Fatal("a certificate for n1 passed for n2")
	}
	if _, err := LoadKubeletClientCert(pkiDir, caFile, "n1", time.Now().Add(2*time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired certificate: %v", err)
	}
	other, _ := testCA(t)
	if _, err := checkKubeletClientCert(c.CertPEM, "n1", []*x509.Certificate{other}); err == nil {
		t.Fatal("a certificate from another CA passed")
	}
	if _, err := checkKubeletClientCert(pki.EncodeCert(issueOrg(t, ca, caKey)), "n1", []*x509.Certificate{ca}); err == nil {
		t.Fatal("a certificate without O=system:nodes passed")
	}
}

func issueOrg(t *testing.T, ca *x509.Certificate, caKey crypto.Signer) *x509.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "system:node:n1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

func TestKubeletKubeconfigUsesRotatingFiles(t *testing.T) {
	data, err := KubeletKubeconfig("https://192.0.2.10:6443", "/var/lib/node-agent/pki/ca.crt", "/var/lib/node-agent/pki/kubelet-client-current.pem")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	auth, cluster := cfg.AuthInfos[ctx.AuthInfo], cfg.Clusters[ctx.Cluster]
	if cluster.Server != "https://192.0.2.10:6443" || cluster.CertificateAuthority != "/var/lib/node-agent/pki/ca.crt" ||
		auth.ClientCertificate != "/var/lib/node-agent/pki/kubelet-client-current.pem" || auth.ClientKey != auth.ClientCertificate {
		t.Fatalf("kubeconfig: %s", data)
	}
}

func TestCSRCreateErrors(t *testing.T) {
	gr := schema.GroupResource{Group: "certificates.k8s.io", Resource: "certificatesigningrequests"}
	cases := map[error]string{
		apierrors.NewUnauthorized("Unauthorized"):                         "rejected the credentials",
		apierrors.NewForbidden(gr, "csr-", errors.New("can only create")): "refused a certificate request for system:node:n1",
		errors.New("dial tcp: refused"):                                   "failed to create the certificate signing request",
	}
	for in, want := range cases {
		if got := csrCreateError(in, "n1").Error(); !strings.Contains(got, want) || strings.Contains(got, "\n") {
			t.Errorf("%v -> %q, want %q", in, got, want)
		}
	}
}

// A malformed token fails before anything is read or written.
func TestNodeJoinChecksTokenFirst(t *testing.T) {
	dir := t.TempDir()
	n := &config.Node{Server: "https://127.0.0.1:1", NodeName: "n1", DataDir: filepath.Join(dir, "data")}
	config.SetNodeDefaults(n, nil)
	j := &NodeJoin{Node: n, ConfigFile: filepath.Join(dir, "etc", "config.yaml"), UnitDir: filepath.Join(dir, "units"), Token: "not-a-token"}
	if _, err := j.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "malformed token") {
		t.Fatalf("got %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("files created: %v", entries)
	}
}

// Joined to one server, join refuses another server or name until reset.
func TestNodeJoinAlreadyJoinedElsewhere(t *testing.T) {
	ca, caKey := testCA(t)
	dir := t.TempDir()
	n := &config.Node{Server: "https://192.0.2.10:6443", NodeName: "n1", DataDir: filepath.Join(dir, "data")}
	config.SetNodeDefaults(n, nil)
	cfgFile := filepath.Join(dir, "etc", "config.yaml")
	pki.WriteFileAtomic(n.CAFile(), pki.EncodeCert(ca), 0o644)
	if _, err := StoreKubeletClientCert(n.PKIDir(), issue(t, ca, caKey, "system:node:n1", time.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	pki.WriteFileAtomic(n.KubeletKubeconfig(), []byte("x"), 0o600)
	data, _ := config.MarshalNode(n)
	pki.WriteFileAtomic(cfgFile, data, 0o644)

	var out strings.Builder
	same := &NodeJoin{Node: n, ConfigFile: cfgFile, Token: testToken, Out: &out}
	if res, err := same.Run(context.Background()); err != nil || !res.AlreadyJoined || !strings.Contains(out.String(), "already joined https://192.0.2.10:6443 as n1") {
		t.Fatalf("same server: %+v %v %q", res, err, out.String())
	}
	other := *n
	other.Server = "https://192.0.2.99:6443"
	j := &NodeJoin{Node: &other, ConfigFile: cfgFile, Token: testToken}
	if _, err := j.Run(context.Background()); !errors.Is(err, ErrJoinedElsewhere) {
		t.Fatalf("other server: %v", err)
	}
}

func TestCheckNodeNameFree(t *testing.T) {
	ready := func(status corev1.ConditionStatus) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}}}}
	}
	ctx := context.Background()
	if err := CheckNodeNameFree(ctx, fake.NewClientset(), "n1"); err != nil {
		t.Fatalf("no Node: %v", err)
	}
	if err := CheckNodeNameFree(ctx, fake.NewClientset(ready(corev1.ConditionFalse)), "n1"); err != nil {
		t.Fatalf("a NotReady Node (this machine before a reset) must not block: %v", err)
	}
	err := CheckNodeNameFree(ctx, fake.NewClientset(ready(corev1.ConditionTrue)), "n1")
	if err == nil || !strings.Contains(err.Error(), `a Node named "n1" already exists and is Ready`) {
		t.Fatalf("a Ready Node of the same name: %v", err)
	}
}
