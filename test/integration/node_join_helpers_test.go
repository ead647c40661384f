package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// njBootstrapGroup is the group bootstrap tokens for nodes carry; the
// control plane grants it CSR creation and node-client auto-approval.
const njBootstrapGroup = "system:bootstrappers:vcluster-standalone:default-node-token"

// njCluster is a running control plane prepared for joins.
type njCluster struct {
	cp     *controlPlane
	admin  kubernetes.Interface
	server string // https://127.0.0.1:<apiPort>
	ca     *x509.Certificate
	caKey  any
	pin    string
	log    io.Writer // join progress, to the test log
}

func newNJCluster(t *testing.T) *njCluster {
	t.Helper()
	cp := newControlPlane(t)
	cp.start()
	jc := &njCluster{cp: cp, admin: cp.client(), server: fmt.Sprintf("https://127.0.0.1:%d", cp.apiPort), log: testLog{t}}
	cas, err := certutil.CertsFromFile(filepath.Join(cp.dataDir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	jc.ca, jc.pin = cas[0], pki.CAPin(cas[0])
	if jc.caKey, err = keyutil.PrivateKeyFromFile(filepath.Join(cp.dataDir, "pki", "ca.key")); err != nil {
		t.Fatal(err)
	}
	jc.ensureJoinObjects(t)
	return jc
}

// ensureJoinObjects waits for what the control plane sets up for joins:
// the cluster-info ConfigMap (readable anonymously, with bootstrapper RBAC).
func (jc *njCluster) ensureJoinObjects(t *testing.T) {
	t.Helper()
	mustPoll(t, 30*time.Second, "kube-public/cluster-info", func(ctx context.Context) error {
		_, err := jc.admin.CoreV1().ConfigMaps("kube-public").Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
		return err
	})
}

// createToken creates a bootstrap-token Secret, as `token create` does, and
// waits until bootstrapsigner has signed cluster-info with it.
func (jc *njCluster) createToken(t *testing.T, ttl time.Duration) string {
	t.Helper()
	token, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		t.Fatal(err)
	}
	id, secret, _ := strings.Cut(token, ".")
	data := map[string]string{
		bootstrapapi.BootstrapTokenIDKey:               id,
		bootstrapapi.BootstrapTokenSecretKey:           secret,
		bootstrapapi.BootstrapTokenUsageSigningKey:     "true",
		bootstrapapi.BootstrapTokenUsageAuthentication: "true",
		bootstrapapi.BootstrapTokenExtraGroupsKey:      njBootstrapGroup,
	}
	if ttl > 0 {
		data[bootstrapapi.BootstrapTokenExpirationKey] = time.Now().Add(ttl).UTC().Format(time.RFC3339)
	}
	_, err = jc.admin.CoreV1().Secrets("kube-system").Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: bootstraputil.BootstrapTokenSecretName(id)},
		Type:       bootstrapapi.SecretTypeBootstrapToken,
		StringData: data,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	if ttl == 0 || ttl > 10*time.Second {
		jc.waitSignature(t, id, true)
	}
	return token
}

// waitSignature waits until cluster-info carries (or no longer carries) a
// JWS signature for the token ID; returns how long that took.
func (jc *njCluster) waitSignature(t *testing.T, id string, present bool) time.Duration {
	t.Helper()
	start := time.Now()
	mustPoll(t, 90*time.Second, fmt.Sprintf("signature for %s present=%v", id, present), func(ctx context.Context) error {
		cm, err := jc.admin.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if _, ok := cm.Data[bootstrapapi.JWSSignatureKeyPrefix+id]; ok != present {
			return fmt.Errorf("signature present: %v", ok)
		}
		return nil
	})
	return time.Since(start)
}

// njRequest is one request that went through the recording proxy.
type njRequest struct {
	method, uri string
	header      http.Header
	body        []byte
}

// contains reports whether s appears anywhere in the request.
func (r njRequest) contains(s string) bool {
	if strings.Contains(r.uri, s) || bytes.Contains(r.body, []byte(s)) {
		return true
	}
	for _, vs := range r.header {
		for _, v := range vs {
			if strings.Contains(v, s) {
				return true
			}
		}
	}
	return false
}

// njProxy terminates TLS with a certificate from the cluster CA (so
// nodes cannot tell it from the API server), records every request in full
// and forwards it.
type njProxy struct {
	url  string
	mu   sync.Mutex
	reqs []njRequest
}

func (jc *njCluster) newProxy(t *testing.T) *njProxy {
	t.Helper()
	target, _ := url.Parse(jc.server)
	rp := httputil.NewSingleHostReverseProxy(target)
	pool := x509.NewCertPool()
	pool.AddCert(jc.ca)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	rp.FlushInterval = -1 // watches stream
	p := &njProxy{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		p.mu.Lock()
		p.reqs = append(p.reqs, njRequest{method: r.Method, uri: r.RequestURI, header: r.Header.Clone(), body: body})
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{jc.proxyCert(t)}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func (p *njProxy) requests() []njRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]njRequest(nil), p.reqs...)
}

// proxyCert is a serving certificate for 127.0.0.1 signed by the cluster CA.
func (jc *njCluster) proxyCert(t *testing.T) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := njSignServing(jc.ca, jc.caKey)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// runNodeAgent runs bin/node-agent (built beside the binary under test).
func runNodeAgent(t *testing.T, env []string, args ...string) naResult {
	t.Helper()
	bin := filepath.Join(filepath.Dir(binary), "node-agent")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no node-agent beside %s: run `make build`", binary)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return naResult{stdout: out.String(), stderr: errb.String(), code: code}
}

type naResult struct {
	stdout, stderr string
	code           int
}
