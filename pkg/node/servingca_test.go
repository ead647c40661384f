package node

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// joinserverKubeconfig is cluster-info's kubeconfig for server and ca, as the
// control plane writes it.
func joinserverKubeconfig(server, ca string) (string, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[""] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: []byte(ca)}
	out, err := clientcmd.Write(*cfg)
	return string(out), err
}

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
	r := newServingCARefresh(client, nil, n, &log)
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

// A running node follows the cluster CA bundle of cluster-info (a cluster CA
// rotation) without a re-join, and reports what it trusts on its Node.
func TestClusterCARefreshFollowsRotation(t *testing.T) {
	ctx := context.Background()
	n := testNode(t)
	oldCA, newCA := testCAPEM(t), testCAPEM(t)
	clusterInfo := func(ca string) *corev1.ConfigMap {
		kubeconfig, err := joinserverKubeconfig("https://192.0.2.10:6443", ca)
		if err != nil {
			t.Fatal(err)
		}
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-public", Name: "cluster-info"}, Data: map[string]string{"kubeconfig": kubeconfig}}
	}
	servingCA := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-public", Name: "kubelet-serving-ca"}, Data: map[string]string{"ca.crt": testCAPEM(t)}}
	client := fake.NewClientset(clusterInfo(oldCA), servingCA, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.NodeName}})
	var log bytes.Buffer
	r := newServingCARefresh(client, client, n, &log)
	r.interval = 50 * time.Millisecond
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	reported := func() join.TrustReport {
		node, err := client.CoreV1().Nodes().Get(ctx, n.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var rep join.TrustReport
		_ = json.Unmarshal([]byte(node.Annotations[join.TrustAnnotation]), &rep)
		return rep
	}
	pin := func(pemText string) string {
		c, _ := certutil.ParseCertsPEM([]byte(pemText))
		return pki.CAPin(c[0])
	}
	if got, _ := os.ReadFile(n.CAFile()); string(got) != oldCA {
		t.Fatalf("after Start %s holds %q, want the published CA", n.CAFile(), got)
	}
	if rep := reported(); len(rep.Trusted) != 1 || rep.Trusted[0] != pin(oldCA) {
		t.Fatalf("reported %+v, want the old CA's pin", rep)
	}
	if _, err := client.CoreV1().ConfigMaps("kube-public").Update(ctx, clusterInfo(newCA+oldCA), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		rep := reported()
		return len(rep.Trusted) == 2 && rep.Trusted[0] == pin(newCA) && rep.Trusted[1] == pin(oldCA), nil
	})
	if err != nil {
		t.Fatalf("the bundle did not reach the node's file and its report: %+v", reported())
	}
	if got, _ := os.ReadFile(n.CAFile()); string(got) != newCA+oldCA {
		t.Fatalf("%s holds %q, want the bundle", n.CAFile(), got)
	}
	if !strings.Contains(log.String(), "cluster CA bundle updated in ") {
		t.Errorf("log:\n%s", log.String())
	}
}
