package nodecreds

import (
	"context"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

func servingCAConfigMap(data string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-public", Name: "kubelet-serving-ca"}, Data: map[string]string{"ca.crt": data}}
}

func TestRefreshKubeletServingCA(t *testing.T) {
	ctx := context.Background()
	n := &config.Node{Server: "https://192.0.2.10:6443", NodeName: "n1", DataDir: t.TempDir()}
	config.SetNodeDefaults(n, nil)
	ca, caKey := testCA(t)
	caPEM := string(pki.EncodeCert(ca))
	client := fake.NewClientset(servingCAConfigMap(caPEM))
	if changed, err := RefreshKubeletServingCA(ctx, client, n); err != nil || !changed {
		t.Fatalf("first refresh: changed=%v %v", changed, err)
	}
	if got, _ := os.ReadFile(n.KubeletServingCAFile()); string(got) != caPEM {
		t.Fatalf("%s holds %q", n.KubeletServingCAFile(), got)
	}
	if fi, _ := os.Stat(n.KubeletServingCAFile()); fi.Mode() != 0o644 {
		t.Errorf("mode %v, want 0644 (a CA certificate is no secret)", fi.Mode())
	}
	if changed, err := RefreshKubeletServingCA(ctx, client, n); err != nil || changed {
		t.Fatalf("unchanged CA: changed=%v %v", changed, err)
	}

	// What is not a CA certificate is refused and the copy stays.
	leaf := issue(t, ca, caKey, "system:node:n1", ca.NotAfter)
	for what, data := range map[string]string{"empty": "", "garbage": "hello", "a leaf": string(leaf.CertPEM)} {
		bad := fake.NewClientset(servingCAConfigMap(data))
		if _, err := RefreshKubeletServingCA(ctx, bad, n); err == nil || !strings.Contains(err.Error(), "kube-public/kubelet-serving-ca key ca.crt") {
			t.Errorf("%s: %v", what, err)
		}
	}
	if _, err := RefreshKubeletServingCA(ctx, fake.NewClientset(), n); err == nil || !strings.Contains(err.Error(), "failed to read the kubelet-serving CA from ConfigMap kube-public/kubelet-serving-ca") {
		t.Errorf("no ConfigMap: %v", err)
	}
	if got, _ := os.ReadFile(n.KubeletServingCAFile()); string(got) != caPEM {
		t.Error("a refused refresh replaced the copy")
	}

	// A rotated CA replaces it.
	rotated, _ := testCA(t)
	if changed, err := RefreshKubeletServingCA(ctx, fake.NewClientset(servingCAConfigMap(string(pki.EncodeCert(rotated)))), n); err != nil || !changed {
		t.Fatalf("rotated CA: changed=%v %v", changed, err)
	}
}

// A kubelet serving pair the API server would refuse (signed by the cluster
// CA, as before the kubelet-serving CA existed) is dropped at start, so the
// kubelet asks for a new one; a good one, or one with no CA to judge it by,
// stays.
func TestDropUnverifiableServingCert(t *testing.T) {
	bundle, _, err := pki.Ensure(pki.Params{Dir: t.TempDir(), Hostname: "cp", AdvertiseIP: net.ParseIP("192.0.2.10"),
		ServiceIP: net.ParseIP("10.96.0.1"), ClusterDomain: "cluster.local"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	servingPair := func(n *config.Node, ca string) {
		certPEM, keyPEM, err := bundle.Issue(pki.CertSpec{Name: "kubelet-server", CA: ca, CommonName: "system:node:n1",
			DNSNames: []string{"n1"}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		dated := filepath.Join(n.PKIDir(), "kubelet-server-2026-12-01-10-00-00.pem")
		if err := fsutil.WriteFileAtomic(dated, append(certPEM, keyPEM...), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Remove(n.KubeletServingCertFile())
		if err := os.Symlink(dated, n.KubeletServingCertFile()); err != nil {
			t.Fatal(err)
		}
	}
	newNode := func() *config.Node {
		n := &config.Node{Server: "https://192.0.2.10:6443", NodeName: "n1", DataDir: t.TempDir()}
		config.SetNodeDefaults(n, nil)
		return n
	}
	servingCA := pki.EncodeCert(bundle.CAs[pki.KubeletServingCA].Cert)

	stale := newNode()
	servingPair(stale, pki.ClusterCA)
	if dropped, err := DropUnverifiableServingCert(stale); err != nil || dropped {
		t.Fatalf("no CA file yet: dropped=%v %v, want the pair kept", dropped, err)
	}
	if _, err := WriteKubeletServingCA(stale, servingCA); err != nil {
		t.Fatal(err)
	}
	if dropped, err := DropUnverifiableServingCert(stale); err != nil || !dropped {
		t.Fatalf("cluster-CA serving pair: dropped=%v %v", dropped, err)
	}
	if left, _ := filepath.Glob(filepath.Join(stale.PKIDir(), "kubelet-server-*")); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}

	good := newNode()
	servingPair(good, pki.KubeletServingCA)
	if _, err := WriteKubeletServingCA(good, servingCA); err != nil {
		t.Fatal(err)
	}
	if dropped, err := DropUnverifiableServingCert(good); err != nil || dropped {
		t.Fatalf("a pair of the kubelet-serving CA: dropped=%v %v", dropped, err)
	}
	if _, err := os.Stat(good.KubeletServingCertFile()); err != nil {
		t.Fatal(err)
	}
}
