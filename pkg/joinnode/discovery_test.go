package joinnode

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/nodecreds"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

const testToken = "k7x2p9.4f8d1c0b6a2e9f3d"

// fakeAPI serves kube-public/cluster-info and records every request's headers.
type fakeAPI struct {
	srv     *httptest.Server
	caPEM   []byte // the CA in cluster-info
	mu      sync.Mutex
	headers []http.Header
	data    func() map[string]string // current ConfigMap data
}

func newFakeAPI(t *testing.T, caFromServer bool, sign func(kubeconfig string) map[string]string) *fakeAPI {
	t.Helper()
	f := &fakeAPI{}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.headers = append(f.headers, r.Header.Clone())
		f.mu.Unlock()
		if r.URL.Path != discoveryPath {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(&corev1.ConfigMap{Data: f.data()})
	}))
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	ca := f.srv.Certificate()
	if !caFromServer { // a CA that did not issue the server's certificate
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		other, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: "not-the-server-ca"}, key)
		if err != nil {
			t.Fatal(err)
		}
		ca = other
	}
	f.caPEM = pki.EncodeCert(ca)
	kubeconfig, err := nodecreds.KubeletKubeconfig(f.srv.URL, "/dev/null", "/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	// cluster-info holds the CA inline, like the real one.
	kc := strings.Replace(string(kubeconfig), "certificate-authority: /dev/null", "certificate-authority-data: "+b64(f.caPEM), 1)
	data := map[string]string{"kubeconfig": kc}
	for k, v := range sign(kc) {
		data[k] = v
	}
	f.data = func() map[string]string { return data }
	return f
}

func (f *fakeAPI) pin() string { return pki.CAPin(f.cert()) }

func (f *fakeAPI) cert() *x509.Certificate {
	c, _ := x509.ParseCertificate(mustDER(f.caPEM))
	return c
}

func signWith(token string) func(string) map[string]string {
	return func(kc string) map[string]string {
		id, secret, _ := strings.Cut(token, ".")
		sig, err := jws.ComputeDetachedSignature(kc, id, secret)
		if err != nil {
			panic(err)
		}
		return map[string]string{"jws-kubeconfig-" + id: sig}
	}
}

func discover(f *fakeAPI, token string, pins ...string) (*DiscoveredCluster, error) {
	tok, err := join.ParseBootstrapToken(token)
	if err != nil {
		return nil, err
	}
	d := &Discovery{Server: f.srv.URL, Token: tok, CACertHashes: pins, ConnectTimeout: time.Second}
	return d.Discover(context.Background())
}

func TestDiscoverySucceeds(t *testing.T) {
	f := newFakeAPI(t, true, signWith(testToken))
	other := "sha256:" + strings.Repeat("0", 64)
	got, err := discover(f, testToken, other, f.pin()) // any of several pins
	if err != nil {
		t.Fatal(err)
	}
	if string(got.CAPEM) != string(f.caPEM) || got.Server != f.srv.URL {
		t.Fatalf("discovered %s with CA %q", got.Server, got.CAPEM)
	}
	f.assertNoCredentials(t)
}

func TestDiscoveryRefuses(t *testing.T) {
	wrongPin := "sha256:" + strings.Repeat("ab", 32)
	cases := []struct {
		name         string
		caFromServer bool
		sign         func(string) map[string]string
		token        string
		pin          func(f *fakeAPI) string
		want         string
	}{
		{"wrong CA pin", true, signWith(testToken), testToken, func(*fakeAPI) string { return wrongPin }, "CA pin mismatch"},
		{"unknown token", true, signWith("zzzzzz.4f8d1c0b6a2e9f3d"), testToken, (*fakeAPI).pin, `token "k7x2p9" is unknown or expired`},
		{"unsigned cluster-info", true, func(string) map[string]string { return nil }, testToken, (*fakeAPI).pin, `token "k7x2p9" is unknown or expired`},
		{"signature by another secret", true, signWith("k7x2p9.ffffffffffffffff"), testToken, (*fakeAPI).pin, "does not verify: wrong token secret"},
		{"server cert not from the pinned CA", false, signWith(testToken), testToken, (*fakeAPI).pin, "does not verify against the pinned cluster CA"},
		{"malformed token", true, signWith(testToken), "k7x2p9:4f8d1c0b6a2e9f3d", (*fakeAPI).pin, "malformed token"},
		{"malformed pin", true, signWith(testToken), testToken, func(*fakeAPI) string { return "md5:abc" }, `invalid --ca-cert-hash "md5:abc"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAPI(t, tc.caFromServer, tc.sign)
			_, err := discover(f, tc.token, tc.pin(f))
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("want one line containing %q, got %v", tc.want, err)
			}
			if strings.Contains(err.Error(), "4f8d1c0b6a2e9f3d") {
				t.Fatalf("error reveals the token secret: %v", err)
			}
			f.assertNoCredentials(t)
		})
	}
}

func TestDiscoveryNeedsAPin(t *testing.T) {
	f := newFakeAPI(t, true, signWith(testToken))
	if _, err := discover(f, testToken); err == nil || !strings.Contains(err.Error(), "no --ca-cert-hash given") {
		t.Fatalf("got %v", err)
	}
	if len(f.headers) != 0 {
		t.Fatal("contacted the server without a pin")
	}
}

// bootstrapsigner signs shortly after a token is created: discovery waits.
func TestDiscoveryWaitsForTheSignature(t *testing.T) {
	f := newFakeAPI(t, true, signWith(testToken))
	signed := f.data
	var calls atomic.Int32
	f.data = func() map[string]string {
		if calls.Add(1) < 3 {
			return map[string]string{"kubeconfig": signed()["kubeconfig"]}
		}
		return signed()
	}
	tok, _ := join.ParseBootstrapToken(testToken)
	d := &Discovery{Server: f.srv.URL, Token: tok, CACertHashes: []string{f.pin()}, SignatureWait: 5 * time.Second}
	if _, err := d.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestDiscoveryUnreachable(t *testing.T) {
	tok, _ := join.ParseBootstrapToken(testToken)
	d := &Discovery{Server: "https://127.0.0.1:1", Token: tok, CACertHashes: []string{"sha256:" + strings.Repeat("0", 64)}}
	_, err := d.Discover(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot reach the API server") {
		t.Fatalf("got %v", err)
	}
	d.Server = "http://127.0.0.1:1"
	if _, err := d.Discover(context.Background()); err == nil || !strings.Contains(err.Error(), "must be the API server's https:// URL") {
		t.Fatalf("got %v", err)
	}
}

func TestTokenNeverPrinted(t *testing.T) {
	tok, err := join.ParseBootstrapToken(testToken)
	if err != nil || tok.String() != "k7x2p9.<secret>" || tok.Full() != testToken {
		t.Fatalf("%v %s %s", err, tok, tok.Full())
	}
	for _, bad := range []string{"", "K7X2P9.4f8d1c0b6a2e9f3d", "k7x2p9.4f8d1c0b6a2e9f3", "k7x2p94f8d1c0b6a2e9f3d"} {
		if _, err := join.ParseBootstrapToken(bad); err == nil || (bad != "" && strings.Contains(err.Error(), bad)) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func (f *fakeAPI) assertNoCredentials(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range f.headers {
		if h.Get("Authorization") != "" || h.Get("Cookie") != "" {
			t.Fatalf("discovery sent credentials: %v", h)
		}
		for _, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, "4f8d1c0b6a2e9f3d") {
					t.Fatalf("discovery sent the token secret in a header: %v", h)
				}
			}
		}
	}
}

func TestDiscoveryServerNameNotInCertificate(t *testing.T) {
	f := newFakeAPI(t, true, signWith(testToken))
	tok, _ := join.ParseBootstrapToken(testToken)
	d := &Discovery{Server: strings.Replace(f.srv.URL, "127.0.0.1", "localhost", 1), Token: tok, CACertHashes: []string{f.pin()}}
	_, err := d.Discover(context.Background())
	if err == nil || !strings.Contains(err.Error(), "certificate is not valid for localhost (it names ") {
		t.Fatalf("got %v", err)
	}
}

// TestDiscoveryClockSkew: a node clock more than MaxClockSkew from the
// server's Date is refused in one line naming the clock, before any
// credential is sent; within it, discovery succeeds.
func TestDiscoveryClockSkew(t *testing.T) {
	tok, err := join.ParseBootstrapToken(testToken)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		offset time.Duration
		want   string // "" = success
	}{
		{-3 * time.Hour, "behind the API server's"},
		{MaxClockSkew + 30*time.Second, "ahead of the API server's"},
		{MaxClockSkew - 30*time.Second, ""},
		{-(MaxClockSkew - 30*time.Second), ""},
	}
	for _, c := range cases {
		t.Run(c.offset.String(), func(t *testing.T) {
			f := newFakeAPI(t, true, signWith(testToken))
			d := &Discovery{Server: f.srv.URL, Token: tok, CACertHashes: []string{f.pin()}, ConnectTimeout: time.Second,
				Now: func() time.Time { return time.Now().Add(c.offset) }}
			_, err := d.Discover(context.Background())
			f.assertNoCredentials(t)
			if c.want == "" {
				if err != nil {
					t.Fatalf("clock %s off: %v", c.offset, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "clock") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("clock %s off: got %v, want one line containing %q", c.offset, err, c.want)
			}
		})
	}
}
