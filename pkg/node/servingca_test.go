package node

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	certutil "k8s.io/client-go/util/cert"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

func testCAPEM(t *testing.T) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: "kubelet-serving-ca"}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pki.EncodeCert(ca))
}

// A running node follows the published kubelet-serving CA (a rotation), and
// keeps its copy while the control plane cannot be read.
func TestServingCARefreshFollowsRotation(t *testing.T) {
	ctx := context.Background()
	n := testNode(t)
	first, second := testCAPEM(t), testCAPEM(t)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-public", Name: "kubelet-serving-ca"}, Data: map[string]string{"ca.crt": first}}
	client := fake.NewClientset(cm)
	var log bytes.Buffer
	r := newServingCARefresh(client, n, &log)
	r.interval = 50 * time.Millisecond
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	if got, _ := os.ReadFile(n.KubeletServingCAFile()); string(got) != first {
		t.Fatalf("after Start %s holds %q, want the published CA", n.KubeletServingCAFile(), got)
	}
	cm.Data["ca.crt"] = second
	if _, err := client.CoreV1().ConfigMaps("kube-public").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		got, _ := os.ReadFile(n.KubeletServingCAFile())
		return string(got) == second, nil
	})
	if err != nil {
		t.Fatal("the rotated CA did not reach the node's file")
	}
	if err := client.CoreV1().ConfigMaps("kube-public").Delete(ctx, cm.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if got, _ := os.ReadFile(n.KubeletServingCAFile()); string(got) != second {
		t.Error("the copy was lost while the CA could not be read")
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "kubelet-serving CA updated in ") || !strings.Contains(log.String(), "kubelet-serving CA not refreshed (keeping ") {
		t.Errorf("log:\n%s", log.String())
	}
}
