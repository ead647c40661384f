package integration

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
)

// joinControlPlane is a control plane whose join endpoint listens on a free
// port, started from a copy of the binary so the test controls which
// node-agent lies beside it.
type joinControlPlane struct {
	*controlPlane
	binDir    string // holds the vcluster-standalone copy; node-agent goes here
	nodeAgent string
}

func newJoinControlPlane(t *testing.T) *joinControlPlane {
	t.Helper()
	binDir := t.TempDir()
	copyFile(t, binary, filepath.Join(binDir, "vcluster-standalone"), 0o755)
	saved := binary
	binary = filepath.Join(binDir, "vcluster-standalone")
	t.Cleanup(func() { binary = saved })

	cp := newControlPlane(t)
	return &joinControlPlane{controlPlane: cp, binDir: binDir, nodeAgent: filepath.Join(binDir, "node-agent")}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// joinOutput is what `token create` printed, taken apart.
type joinOutput struct {
	token, id, secret string
	server            string // --server of the node-agent form
	caHash            string
	pin               string // --pinnedpubkey of the curl form
	endpoint          string // https://127.0.0.1:joinPort, where tests reach it
	printedEndpoint   string // https://<advertise address>:joinPort, as printed
	curlLine          string
}

var (
	tokenRe    = regexp.MustCompile(`(?:--token |NODE_AGENT_TOKEN=|VCS_TOKEN=)([a-z0-9]{6})\.([a-z0-9]{16})`)
	agentRe    = regexp.MustCompile(`(?m)^  NODE_AGENT_TOKEN=\S+ node-agent join --server (https://\S+) --ca-cert-hash (sha256:[0-9a-f]{64})$`)
	curlLineRe = regexp.MustCompile(`(?m)^  (curl -fsSk --pinnedpubkey '(sha256//[A-Za-z0-9+/=]{44})' (https://\S+)/install\.sh \| VCS_TOKEN=\S+ sh -s - .*)$`)
)

func createToken(t *testing.T, cp *joinControlPlane, args ...string) joinOutput {
	t.Helper()
	out, stderr, err := cp.run(append([]string{"token", "create"}, args...)...)
	if err != nil {
		t.Fatalf("token create: %v\n%s%s", err, out, stderr)
	}
	tok, agent, curl := tokenRe.FindStringSubmatch(out), agentRe.FindStringSubmatch(out), curlLineRe.FindStringSubmatch(out)
	if tok == nil || agent == nil || curl == nil {
		t.Fatalf("token create printed no node-agent and curl join lines:\n%s", out)
	}
	return joinOutput{
		token: tok[1] + "." + tok[2], id: tok[1], secret: tok[2], server: agent[1], caHash: agent[2],
		pin: curl[2], endpoint: onLoopback(t, curl[3]), printedEndpoint: curl[3], curlLine: curl[1],
	}
}

// bearerClient authenticates with a bootstrap token, as a joining kubelet does.
func bearerClient(t *testing.T, cp *joinControlPlane, token string) *kubernetes.Clientset {
	t.Helper()
	cfg := &rest.Config{Host: cp.server(), BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: filepath.Join(cp.dataDir, "pki", "ca.crt")}}
	return mustClient(t, cfg)
}

func (cp *joinControlPlane) server() string {
	return fmt.Sprintf("https://127.0.0.1:%d", cp.apiPort)
}

// nodeClient authenticates as system:node:<name> with a client certificate
// minted from the cluster CA in the data dir.
func nodeClient(t *testing.T, cp *joinControlPlane, name string) *kubernetes.Clientset {
	t.Helper()
	return certClient(t, cp.controlPlane, "system:node:"+name, "system:nodes")
}

// certClient authenticates as user cn in groups with a client certificate
// minted from the cluster CA in the data dir.
func certClient(t *testing.T, cp *controlPlane, cn string, groups ...string) *kubernetes.Clientset {
	t.Helper()
	return mustClient(t, certConfig(t, cp, cn, groups...))
}

// certConfig is certClient's client config, for other client kinds.
func certConfig(t *testing.T, cp *controlPlane, cn string, groups ...string) *rest.Config {
	t.Helper()
	pkiDir := filepath.Join(cp.dataDir, "pki")
	cas, err := certutil.CertsFromFile(filepath.Join(pkiDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := keyutil.PrivateKeyFromFile(filepath.Join(pkiDir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn, Organization: groups},
		NotBefore:    time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, cas[0], key.Public(), caKey.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{Host: fmt.Sprintf("https://127.0.0.1:%d", cp.apiPort), TLSClientConfig: rest.TLSClientConfig{
		CAFile:   filepath.Join(pkiDir, "ca.crt"),
		CertData: pemCert(der), KeyData: keyPEM,
	}}
	return cfg
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func mustClient(t *testing.T, cfg *rest.Config) *kubernetes.Clientset {
	t.Helper()
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// pinnedTLS trusts exactly the server key whose curl pin is pin.
func pinnedTLS(pin string) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true, // the pin below is the check
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			cert, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
			if got := "sha256//" + base64.StdEncoding.EncodeToString(sum[:]); got != pin {
				return fmt.Errorf("server key %s does not match pin %s", got, pin)
			}
			return nil
		},
	}
}

// onLoopback keeps test traffic on loopback: the printed join endpoint names
// the host's advertise address, the test control plane listens on 127.0.0.1,
// and the pin, not the host name, authenticates the endpoint.
func onLoopback(t *testing.T, endpoint string) string {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = net.JoinHostPort("127.0.0.1", u.Port())
	return u.String()
}
