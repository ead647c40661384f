package pki

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/pubkeypin"
)

func testParams(t *testing.T) Params {
	return Params{
		Dir:           filepath.Join(t.TempDir(), "pki"),
		Hostname:      "cp-1",
		AdvertiseIP:   net.ParseIP("192.0.2.10"),
		ServiceIP:     net.ParseIP("10.96.0.1"),
		ClusterDomain: "cluster.local",
		ExtraSANs:     []string{"api.example.com", "198.51.100.7"},
	}
}

func TestEnsureCreatesTheWholePKI(t *testing.T) {
	p := testParams(t)
	now := time.Now()
	b, events, err := Ensure(p, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(CAs) + len(Leaves(p)); len(events) != want {
		t.Fatalf("%d events, want %d (every file generated once)", len(events), want)
	}
	for _, name := range CAs {
		ca := b.CAs[name].Cert
		if !ca.IsCA {
			t.Errorf("%s is not a CA", name)
		}
		if life := ca.NotAfter.Sub(now); life < CALifetime-time.Hour || life > CALifetime+time.Hour {
			t.Errorf("%s lifetime %s, want 10 years", name, life)
		}
	}
	for _, spec := range Leaves(p) {
		leaf := b.Leaves[spec.Name].Cert
		if err := leaf.CheckSignatureFrom(b.CAs[spec.CA].Cert); err != nil {
			t.Errorf("%s not signed by %s: %v", spec.Name, spec.CA, err)
		}
		if life := leaf.NotAfter.Sub(now); life < LeafLifetime-time.Hour || life > LeafLifetime+time.Hour {
			t.Errorf("%s lifetime %s, want 1 year", spec.Name, life)
		}
		if leaf.IsCA {
			t.Errorf("%s must not be a CA", spec.Name)
		}
		info, err := os.Stat(b.Path(spec.Name, ".key"))
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s.key mode %v (%v), want 0600", spec.Name, info.Mode().Perm(), err)
		}
	}
	for _, f := range []string{"sa.key", "sa.pub"} {
		if _, err := os.Stat(filepath.Join(p.Dir, f)); err != nil {
			t.Errorf("service-account key: %v", err)
		}
	}
}

func TestAPIServerSANs(t *testing.T) {
	p := testParams(t)
	b, _, err := Ensure(p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert := b.Leaves["apiserver"].Cert
	wantDNS := []string{"cp-1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "api.example.com"}
	if !sameStrings(cert.DNSNames, wantDNS) {
		t.Errorf("DNS SANs %v, want %v", cert.DNSNames, wantDNS)
	}
	wantIPs := []net.IP{net.ParseIP("192.0.2.10"), net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1"), net.ParseIP("198.51.100.7")}
	if !sameIPs(cert.IPAddresses, wantIPs) {
		t.Errorf("IP SANs %v, want %v", cert.IPAddresses, wantIPs)
	}
	if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Error("apiserver cert lacks server auth")
	}
	for _, name := range []string{"cp-1", "kubernetes.default.svc.cluster.local", "api.example.com", "192.0.2.10", "10.96.0.1"} {
		if err := cert.VerifyHostname(name); err != nil {
			t.Errorf("apiserver cert does not verify for %s: %v", name, err)
		}
	}
	admin := b.Leaves["admin"].Cert
	if admin.Subject.CommonName != AdminUser || !slices.Equal(admin.Subject.Organization, []string{ClusterAdminGroup}) {
		t.Errorf("admin subject %v", admin.Subject)
	}
}

func TestEnsureReusesFiles(t *testing.T) {
	p := testParams(t)
	if _, _, err := Ensure(p, time.Now()); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, p.Dir)
	_, events, err := Ensure(p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 0 {
		t.Fatalf("second Ensure changed files: %v", events)
	}
	if after := snapshot(t, p.Dir); !maps.Equal(before, after) {
		t.Fatal("files changed on reuse")
	}
}

func TestRenewal(t *testing.T) {
	p := testParams(t)
	now := time.Now()
	b1, _, err := Ensure(p, now)
	if err != nil {
		t.Fatal(err)
	}
	// 91 days before expiry nothing is renewed; at 90 days every leaf is.
	_, events, err := Ensure(p, b1.Leaves["apiserver"].Cert.NotAfter.Add(-91*24*time.Hour))
	if err != nil || len(events) != 0 {
		t.Fatalf("renewed too early: %v %v", events, err)
	}
	later := b1.Leaves["apiserver"].Cert.NotAfter.Add(-RenewalThreshold)
	b2, events, err := Ensure(p, later)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != len(Leaves(p)) {
		t.Fatalf("renewed %d leaves, want %d: %v", len(events), len(Leaves(p)), events)
	}
	for _, name := range CAs {
		if !b2.CAs[name].Cert.Equal(b1.CAs[name].Cert) {
			t.Errorf("CA %s changed on renewal", name)
		}
	}
	renewed := b2.Leaves["apiserver"].Cert
	if err := renewed.CheckSignatureFrom(b1.CAs[ClusterCA].Cert); err != nil {
		t.Errorf("renewed cert not signed by the same CA: %v", err)
	}
	if !renewed.NotAfter.After(b1.Leaves["apiserver"].Cert.NotAfter) {
		t.Error("renewed cert does not live longer")
	}
}

func TestRenewalOnSANChange(t *testing.T) {
	p := testParams(t)
	if _, _, err := Ensure(p, time.Now()); err != nil {
		t.Fatal(err)
	}
	p.ExtraSANs = append(p.ExtraSANs, "new.example.com")
	b, events, err := Ensure(p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{{Name: "apiserver", Action: "renewed: SANs changed"}, {Name: JoinEndpoint, Action: "renewed: SANs changed"}}
	if !slices.Equal(events, want) {
		t.Fatalf("events %v, want only the apiserver and join endpoint renewed for their SANs", events)
	}
	for _, name := range []string{"apiserver", JoinEndpoint} {
		if err := b.Leaves[name].Cert.VerifyHostname("new.example.com"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCAPinMatchesKubeadm(t *testing.T) {
	b, _, err := Ensure(testParams(t), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca := b.CAs[ClusterCA].Cert
	sum := sha256.Sum256(ca.RawSubjectPublicKeyInfo)
	want := "sha256:" + hex.EncodeToString(sum[:])
	if got := CAPin(ca); got != want || got != pubkeypin.Hash(ca) {
		t.Fatalf("pin %s, want %s (kubeadm: %s)", got, want, pubkeypin.Hash(ca))
	}
	pins := pubkeypin.NewSet()
	if err := pins.Allow(CAPin(ca)); err != nil {
		t.Fatalf("kubeadm rejects our pin format: %v", err)
	}
	if err := pins.CheckAny([]*x509.Certificate{ca}); err != nil {
		t.Fatalf("kubeadm does not match our pin to the CA: %v", err)
	}
	if err := pins.CheckAny([]*x509.Certificate{b.CAs[EtcdCA].Cert}); err == nil {
		t.Fatal("pin of the cluster CA matched another CA")
	}
}

func TestJoinEndpointCertAndPin(t *testing.T) {
	b, _, err := Ensure(testParams(t), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert := b.Leaves[JoinEndpoint].Cert
	for _, host := range []string{"192.0.2.10", "cp-1", "api.example.com", "198.51.100.7"} {
		if err := cert.VerifyHostname(host); err != nil {
			t.Errorf("join endpoint cert: %v", err)
		}
	}
	if cert.VerifyHostname("127.0.0.1") == nil {
		t.Error("join endpoint cert must not name loopback")
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("usages %v, want server auth only", cert.ExtKeyUsage)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	if got, want := PublicKeyPin(cert), "sha256//"+base64.StdEncoding.EncodeToString(sum[:]); got != want {
		t.Fatalf("pin %s, want %s", got, want)
	}
	if PublicKeyPin(cert) == PublicKeyPin(b.CAs[ClusterCA].Cert) {
		t.Fatal("pins of different keys are equal")
	}
}

func TestKubeconfig(t *testing.T) {
	b, _, err := Ensure(testParams(t), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	data, err := b.Kubeconfig("https://127.0.0.1:6443", "admin")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if rc.Host != "https://127.0.0.1:6443" || len(rc.CAData) == 0 || len(rc.CertData) == 0 || len(rc.KeyData) == 0 {
		t.Fatalf("incomplete kubeconfig: %+v", rc)
	}
}

func TestCheck(t *testing.T) {
	p := testParams(t)
	if _, _, err := Ensure(p, time.Now()); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(p.Dir, "scheduler.crt"))
	statuses := Check(p.Dir)
	if len(statuses) != len(CAs)+len(Leaves(p)) {
		t.Fatalf("%d statuses", len(statuses))
	}
	for _, s := range statuses {
		if s.Name == "scheduler" {
			if s.Err == nil {
				t.Error("missing scheduler.crt not reported")
			}
		} else if s.Err != nil || s.NotAfter.IsZero() {
			t.Errorf("%s: %v", s.Name, s.Err)
		}
	}
}

func snapshot(t *testing.T, dir string) map[string]string {
	out := map[string]string{}
	filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			data, _ := os.ReadFile(path)
			out[path] = string(data) + info.ModTime().String()
		}
		return nil
	})
	return out
}

// Every suite a server offers under TLS 1.2 is AEAD with forward secrecy.
func TestCipherSuitesAreAEADOnly(t *testing.T) {
	insecure := map[uint16]bool{}
	for _, s := range tls.InsecureCipherSuites() {
		insecure[s.ID] = true
	}
	for _, id := range ServerTLSConfig().CipherSuites {
		name := tls.CipherSuiteName(id)
		if insecure[id] || !strings.HasPrefix(name, "TLS_ECDHE_") || strings.Contains(name, "CBC") || strings.HasSuffix(name, "_SHA") {
			t.Errorf("%s is not an ECDHE AEAD suite", name)
		}
	}
	if got := strings.Count(CipherSuitesFlag(), ",") + 1; got != len(CipherSuites) {
		t.Fatalf("flag %q names %d suites, want %d", CipherSuitesFlag(), got, len(CipherSuites))
	}
}
