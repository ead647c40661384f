package mirror

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	dockerconfig "github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

type imageMap map[string]images.Image

func (m imageMap) Get(_ context.Context, name string) (images.Image, error) {
	if img, ok := m[name]; ok {
		return img, nil
	}
	return images.Image{}, fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
}

// testCA issues certificates for the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert, key}
}

func (ca *testCA) writeCA(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue writes a certificate and key in one PEM file, as the kubelet keeps them.
func (ca *testCA) issue(t *testing.T, path, cn string, orgs []string, usage x509.ExtKeyUsage) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	body := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})...)
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
}

// fixture is a mirror serving one image from a real containerd content store.
type fixture struct {
	dir      string
	url      string
	ca       string
	node     string // a node's client pair
	manifest ocispec.Descriptor
	layer    []byte
	served   []string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{dir: t.TempDir()}
	store, err := local.NewStore(filepath.Join(f.dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	put := func(mediaType string, data []byte) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
		if err := content.WriteBlob(ctx, store, d.Digest.String(), bytes.NewReader(data), d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	f.layer = bytes.Repeat([]byte("layer-bytes "), 10000)
	layer := put(ocispec.MediaTypeImageLayer, f.layer)
	cfg := put(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	body, _ := json.Marshal(ocispec.Manifest{Versioned: specsVersioned(), MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{layer}})
	f.manifest = put(ocispec.MediaTypeImageManifest, body)

	ca := newTestCA(t)
	f.ca = filepath.Join(f.dir, "ca.crt")
	ca.writeCA(t, f.ca)
	serving := filepath.Join(f.dir, "serving.pem")
	ca.issue(t, serving, "system:node:peer", []string{"system:nodes"}, x509.ExtKeyUsageServerAuth)
	f.node = filepath.Join(f.dir, "node.pem")
	ca.issue(t, f.node, "system:node:worker-2", []string{"system:nodes"}, x509.ExtKeyUsageClientAuth)
	ca.issue(t, filepath.Join(f.dir, "admin.pem"), "admin", []string{"system:masters"}, x509.ExtKeyUsageClientAuth)
	newTestCA(t).issue(t, filepath.Join(f.dir, "stranger.pem"), "system:node:stranger", []string{"system:nodes"}, x509.ExtKeyUsageClientAuth)

	h := &Handler{Content: store, Info: store,
		Images: imageMap{"registry.k8s.io/e2e-test-images/kitten:1.7": {Name: "registry.k8s.io/e2e-test-images/kitten:1.7", Target: f.manifest}},
		Served: func(who, ref string, _ ocispec.Descriptor) { f.served = append(f.served, who+" "+ref) }}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = ServerTLS(TLSFiles{ServingCert: serving, ClientCA: f.ca})
	srv.StartTLS()
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func specsVersioned() (v struct {
	SchemaVersion int `json:"schemaVersion"`
}) {
	v.SchemaVersion = 2
	return v
}

// hostsDir writes a containerd hosts.toml that uses the mirror for every
// registry with the given client pair, as node-agent writes it.
// Each call gets its own directory.
func (f *fixture) hostsDir(t *testing.T, clientPair string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "_default")
	os.MkdirAll(dir, 0o700)
	// server: the registry itself, unreachable on purpose (nothing leaves the test).
	body := fmt.Sprintf("server = \"https://127.0.0.1:1\"\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = %q\n  client = [[%q, %q]]\n  dial_timeout = \"3s\"\n", f.url, f.ca, clientPair, clientPair)
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(dir)
}

// pull resolves and fetches ref the way containerd's CRI does, through the
// hosts directory; the registry itself is unreachable here (127.0.0.1:1).
func pull(t *testing.T, hosts, ref string) (ocispec.Descriptor, []byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: dockerconfig.ConfigureHosts(ctx, dockerconfig.HostOptions{HostDir: dockerconfig.HostDirFromRoot(hosts)})})
	_, desc, err := resolver.Resolve(ctx, ref)
	if err != nil {
		return desc, nil, err
	}
	fetcher, err := resolver.Fetcher(ctx, ref)
	if err != nil {
		return desc, nil, err
	}
	rc, err := fetcher.Fetch(ctx, desc)
	if err != nil {
		return desc, nil, err
	}
	defer rc.Close()
	var m ocispec.Manifest
	if err := json.NewDecoder(rc).Decode(&m); err != nil {
		return desc, nil, err
	}
	lrc, err := fetcher.Fetch(ctx, m.Layers[0])
	if err != nil {
		return desc, nil, err
	}
	defer lrc.Close()
	layer, err := io.ReadAll(lrc)
	return desc, layer, err
}

func TestContainerdPullsThroughTheMirror(t *testing.T) {
	f := newFixture(t)
	desc, layer, err := pull(t, f.hostsDir(t, f.node), "registry.k8s.io/e2e-test-images/kitten:1.7")
	if err != nil {
		t.Fatalf("pull through the mirror: %v", err)
	}
	if desc.Digest != f.manifest.Digest || desc.MediaType != ocispec.MediaTypeImageManifest || !bytes.Equal(layer, f.layer) {
		t.Fatalf("pulled %v (%d layer bytes), want %v", desc, len(layer), f.manifest)
	}
	if len(f.served) == 0 || f.served[0] != "system:node:worker-2 registry.k8s.io/e2e-test-images/kitten:1.7" {
		t.Errorf("served log: %v", f.served)
	}
}

func TestMirrorRefusesWhatIsNotANodeOfTheCluster(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct{ name, pair string }{
		{"admin certificate of the cluster CA", filepath.Join(f.dir, "admin.pem")},
		{"node certificate of another CA", filepath.Join(f.dir, "stranger.pem")},
	} {
		if _, _, err := pull(t, f.hostsDir(t, c.pair), "registry.k8s.io/e2e-test-images/kitten:1.7"); err == nil {
			t.Errorf("%s: pulled", c.name)
		}
	}
	// No client certificate at all: the TLS handshake fails before any HTTP.
	pool := x509.NewCertPool()
	data, _ := os.ReadFile(f.ca)
	pool.AppendCertsFromPEM(data)
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if resp, err := cl.Get(f.url + "/v2/e2e-test-images/kitten/blobs/" + f.manifest.Digest.String() + "?ns=registry.k8s.io"); err == nil {
		resp.Body.Close()
		t.Errorf("no client certificate: %s", resp.Status)
	}
	if len(f.served) != 0 {
		t.Errorf("served to a stranger: %v", f.served)
	}
}

func TestMirrorAnswers(t *testing.T) {
	f := newFixture(t)
	cert, err := tls.LoadX509KeyPair(f.node, f.node)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	data, _ := os.ReadFile(f.ca)
	pool.AppendCertsFromPEM(data)
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	do := func(method, path string, header ...string) *http.Response {
		req, _ := http.NewRequest(method, f.url+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	layer := digest.FromBytes(f.layer).String()
	for _, c := range []struct {
		method, path string
		status       int
		mediaType    string
	}{
		{"GET", "/v2/", 200, "application/json"},
		{"HEAD", "/v2/e2e-test-images/kitten/manifests/1.7?ns=registry.k8s.io", 200, ocispec.MediaTypeImageManifest},
		// by digest, the type comes from the manifest itself
		{"GET", "/v2/e2e-test-images/kitten/manifests/" + f.manifest.Digest.String() + "?ns=registry.k8s.io", 200, ocispec.MediaTypeImageManifest},
		{"GET", "/v2/e2e-test-images/kitten/manifests/2.0?ns=registry.k8s.io", 404, "application/json"},
		{"GET", "/v2/e2e-test-images/kitten/manifests/1.7?ns=docker.io", 404, "application/json"},
		{"GET", "/v2/e2e-test-images/kitten/blobs/" + layer + "?ns=registry.k8s.io", 200, ""},
		{"GET", "/v2/e2e-test-images/kitten/blobs/sha256:" + strings.Repeat("0", 64) + "?ns=registry.k8s.io", 404, "application/json"},
		{"GET", "/v2/e2e-test-images/kitten/blobs/nonsense?ns=registry.k8s.io", 400, "application/json"},
		{"PUT", "/v2/e2e-test-images/kitten/manifests/1.7?ns=registry.k8s.io", 405, "application/json"},
		{"GET", "/v2/catalog", 404, "application/json"},
	} {
		resp := do(c.method, c.path)
		if resp.StatusCode != c.status || (c.mediaType != "" && resp.Header.Get("Content-Type") != c.mediaType) {
			t.Errorf("%s %s: %s %q, want %d %q", c.method, c.path, resp.Status, resp.Header.Get("Content-Type"), c.status, c.mediaType)
		}
	}
	// A resumed download asks for a range.
	resp := do("GET", "/v2/e2e-test-images/kitten/blobs/"+layer+"?ns=registry.k8s.io", "Range", "bytes=12-23")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusPartialContent || string(body) != "layer-bytes " {
		t.Errorf("range: %s %q", resp.Status, body)
	}
}
