package nodecreds

import (
	"context"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
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
