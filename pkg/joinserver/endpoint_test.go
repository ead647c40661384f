package joinserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

func TestEndpointHandler(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "node-agent")
	h := NewEndpointHandler([]byte("#!/bin/sh\necho install\n"), agent, time.Now())
	do := func(method, target string) (int, string) {
		req := httptest.NewRequest(method, "https://cp"+target, nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	if code, body := do("GET", "/install.sh"); code != 200 || body != "#!/bin/sh\necho install\n" {
		t.Fatalf("install.sh: %d %q", code, body)
	}
	if code, body := do("GET", "/bin/node-agent"); code != 404 || body != "404 page not found\n" {
		t.Fatalf("absent node-agent: %d %q, want a bare 404 that names no path", code, body)
	}
	if err := os.WriteFile(agent, []byte("ELF"), 0o755); err != nil {
		t.Fatal(err)
	}
	if code, body := do("GET", "/bin/node-agent"); code != 200 || body != "ELF" {
		t.Fatalf("node-agent: %d %q", code, body)
	}
	if code, body := do("HEAD", "/bin/node-agent"); code != 200 || body != "" {
		t.Fatalf("HEAD node-agent: %d %q", code, body)
	}
	if code, _ := do("POST", "/install.sh"); code != 405 {
		t.Fatalf("POST: %d", code)
	}
	os.WriteFile(filepath.Join(dir, "secret"), []byte("SECRET"), 0o600)
	for _, p := range []string{"/", "/bin/", "/bin/secret", "/bin/../install.sh", "/bin/%2e%2e/secret", "/bin/..%2fsecret",
		"/%69nstall.sh", "/install.sh?x", "//install.sh", "/install.sh/", "/bin/node-agent/", "/bin/node-agent/../secret"} {
		// The 404 names no path: neither what is served nor where on disk.
		if code, body := do("GET", p); code != 404 || body != "404 page not found\n" {
			t.Errorf("GET %s: %d %q, want a bare 404", p, code, body)
		}
	}
	os.Remove(agent)
	os.Mkdir(agent, 0o755)
	if code, body := do("GET", "/bin/node-agent"); code != 404 || strings.Contains(body, dir) {
		t.Errorf("a directory named node-agent: %d %q, want a bare 404", code, body)
	}
}

func TestEndpointComponent(t *testing.T) {
	p := pki.Params{Dir: filepath.Join(t.TempDir(), "pki"), Hostname: "cp", AdvertiseIP: net.ParseIP("127.0.0.1"), ServiceIP: net.ParseIP("10.96.0.1"), ClusterDomain: "cluster.local"}
	b, _, err := pki.Ensure(p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	e := &Endpoint{Addr: addr, CertFile: b.Path(pki.JoinEndpoint, ".crt"), KeyFile: b.Path(pki.JoinEndpoint, ".key"), InstallScript: []byte("script"), NodeAgent: "/nonexistent"}
	if err := e.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	pin := pki.PublicKeyPin(b.Leaves[pki.JoinEndpoint].Cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			cert, err := x509.ParseCertificate(raw[0])
			if err != nil || pki.PublicKeyPin(cert) != pin {
				t.Errorf("served a key other than the pinned one")
			}
			return err
		},
	}}}
	resp, err := client.Get("https://" + addr + "/install.sh")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "script" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	// A renewal (shorter lifetime: reissued now) is served without a
	// restart, with the same pinned key.
	p.Lifetimes = pki.Lifetimes{Leaf: 10 * time.Minute, RenewBefore: time.Minute}
	renewed, _, err := pki.Ensure(p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := renewed.Leaves[pki.JoinEndpoint].Cert.SerialNumber
	if want.Cmp(b.Leaves[pki.JoinEndpoint].Cert.SerialNumber) == 0 {
		t.Fatal("the join endpoint certificate was not reissued")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("handshake during the renewal: %v", err)
		}
		served := conn.ConnectionState().PeerCertificates[0]
		conn.Close()
		if served.SerialNumber.Cmp(want) == 0 {
			if pki.PublicKeyPin(served) != pin {
				t.Fatal("the renewed certificate has another key: printed join lines break")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the join endpoint still serves the old certificate 10s after the renewal")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := e.Stop(); err != nil {
		t.Fatal("second Stop:", err)
	}
	if _, err := client.Get("https://" + addr + "/install.sh"); err == nil {
		t.Fatal("still serving after Stop")
	}
	busy, _ := net.Listen("tcp", "127.0.0.1:0")
	defer busy.Close()
	e2 := &Endpoint{Addr: busy.Addr().String(), CertFile: e.CertFile, KeyFile: e.KeyFile, InstallScript: []byte("x")}
	if err := e2.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "failed to listen on") {
		t.Fatalf("busy port: %v", err)
	}
	if err := (&Endpoint{}).Init(context.Background()); err == nil {
		t.Fatal("Init without install.sh must fail")
	}
}
