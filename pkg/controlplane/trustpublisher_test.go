package controlplane

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

func testCA(t *testing.T, name string) []byte {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: name}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pki.EncodeCert(ca)
}

// The trust publisher follows the bundle file: cluster-info and every
// namespace's kube-root-ca.crt (new namespaces too) get each new content,
// after the re-issue hook ran, which is retried while it fails.
func TestTrustPublisherFollowsTheBundle(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "ca-bundle.crt")
	first := testCA(t, "old")
	if err := os.WriteFile(file, first, 0o644); err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-public"}},
	)
	var reissued, tries atomic.Int32
	var log bytes.Buffer
	p := &trustPublisher{
		client: func() (kubernetes.Interface, error) { return client, nil }, server: "https://192.0.2.10:6443",
		bundleFile: file, interval: 50 * time.Millisecond, log: &log,
		reissue: func() error {
			if tries.Add(1) == 1 {
				return fmt.Errorf("cut short")
			}
			reissued.Add(1)
			return nil
		},
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	published := func(want []byte, namespaces ...string) error {
		return wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := publishedCA(ctx, client)
			if err != nil || !bytes.Equal(got, want) {
				return false, nil
			}
			for _, ns := range namespaces {
				cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
				if err != nil || cm.Data["ca.crt"] != string(want) {
					return false, nil
				}
			}
			return true, nil
		})
	}
	if err := published(first, "default", "kube-public"); err != nil {
		t.Fatalf("the bundle at start was not published: %v", err)
	}
	if reissued.Load() != 0 {
		t.Fatal("re-issued at start; only a changed bundle needs it")
	}
	bundle := append(testCA(t, "new"), first...)
	if err := os.WriteFile(file, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "later"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := published(bundle, "default", "kube-public", "later"); err != nil {
		t.Fatalf("the changed bundle was not published everywhere:\n%s", log.String())
	}
	if reissued.Load() != 1 {
		t.Errorf("re-issued %d times, want once after the failed try", reissued.Load())
	}
	cm, _ := client.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if cfg, err := clientcmd.Load([]byte(cm.Data["kubeconfig"])); err != nil || cfg.Clusters[""].Server != "https://192.0.2.10:6443" {
		t.Errorf("cluster-info kubeconfig: %v", err)
	}
}
