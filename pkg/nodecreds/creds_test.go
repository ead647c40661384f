package nodecreds

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
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
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: []string{join.NodesGroup}},
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
	if _, err := VerifyKubeletClientCert(c.CertPEM, "n1", []*x509.Certificate{ca}); err != nil {
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
	fsutil.WriteFileAtomic(caFile, pki.EncodeCert(ca), 0o644)
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
	if _, err := VerifyKubeletClientCert(c.CertPEM, "n1", []*x509.Certificate{other}); err == nil {
		t.Fatal("a certificate from another CA passed")
	}
	if _, err := VerifyKubeletClientCert(pki.EncodeCert(issueOrg(t, ca, caKey)), "n1", []*x509.Certificate{ca}); err == nil {
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
