package joinnode

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/nodecreds"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

func TestCSRCreateErrors(t *testing.T) {
	gr := schema.GroupResource{Group: "certificates.k8s.io", Resource: "certificatesigningrequests"}
	cases := map[error]string{
		apierrors.NewUnauthorized("Unauthorized"):                         "rejected the credentials",
		apierrors.NewForbidden(gr, "csr-", errors.New("can only create")): "refused a certificate request for system:node:n1",
		errors.New("dial tcp: refused"):                                   "failed to create the certificate signing request",
	}
	for in, want := range cases {
		if got := csrCreateError(in, "n1").Error(); !strings.Contains(got, want) || strings.Contains(got, "\n") {
			t.Errorf("%v -> %q, want %q", in, got, want)
		}
	}
}

// A malformed token fails before anything is read or written.
func TestNodeJoinChecksTokenFirst(t *testing.T) {
	dir := t.TempDir()
	n := &config.Node{Server: "https://127.0.0.1:1", NodeName: "n1", DataDir: filepath.Join(dir, "data")}
	config.SetNodeDefaults(n, nil)
	j := &NodeJoin{Node: n, ConfigFile: filepath.Join(dir, "etc", "config.yaml"), UnitDir: filepath.Join(dir, "units"), Token: "not-a-token"}
	if _, err := j.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "malformed token") {
		t.Fatalf("got %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("files created: %v", entries)
	}
}

// Joined to one server, join refuses another server or name until reset.
func TestNodeJoinAlreadyJoinedElsewhere(t *testing.T) {
	dir := t.TempDir()
	n := &config.Node{Server: "https://192.0.2.10:6443", NodeName: "n1", DataDir: filepath.Join(dir, "data")}
	config.SetNodeDefaults(n, nil)
	cfgFile := filepath.Join(dir, "etc", "config.yaml")
	bundle, _, err := pki.Ensure(pki.Params{Dir: filepath.Join(dir, "cp"), Hostname: "cp", AdvertiseIP: net.ParseIP("192.0.2.10"),
		ServiceIP: net.ParseIP("10.96.0.1"), ClusterDomain: "cluster.local"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := bundle.Issue(pki.CertSpec{Name: "n1", CA: pki.ClusterCA, CommonName: "system:node:n1",
		Organizations: []string{join.NodesGroup}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert := &nodecreds.KubeletClientCert{CertPEM: certPEM, KeyPEM: keyPEM}
	files := nodecreds.NodeFiles{ConfigFile: cfgFile, UnitDir: filepath.Join(dir, "units"), Unit: []byte("[Unit]\n")}
	if _, err := nodecreds.WriteNodeFiles(n, files, pki.EncodeCert(bundle.CAs[pki.ClusterCA].Cert), pki.EncodeCert(bundle.CAs[pki.KubeletServingCA].Cert), cert); err != nil {
		t.Fatal(err)
	}

	var out strings.Builder
	same := &NodeJoin{Node: n, ConfigFile: cfgFile, Token: testToken, Out: &out}
	if res, err := same.Run(context.Background()); err != nil || !res.AlreadyJoined || !strings.Contains(out.String(), "already joined https://192.0.2.10:6443 as n1") {
		t.Fatalf("same server: %+v %v %q", res, err, out.String())
	}
	other := *n
	other.Server = "https://192.0.2.99:6443"
	j := &NodeJoin{Node: &other, ConfigFile: cfgFile, Token: testToken}
	if _, err := j.Run(context.Background()); !errors.Is(err, ErrJoinedElsewhere) {
		t.Fatalf("other server: %v", err)
	}
}

// The client-side check gives the control plane's answer (join.NodeNameInUse):
// any Node of the name blocks, whatever its state; one being deleted does not.
func TestCheckNodeNameFree(t *testing.T) {
	node := func(ready corev1.ConditionStatus, deleting bool) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}}}
		if deleting {
			n.DeletionTimestamp, n.Finalizers = &metav1.Time{Time: time.Now()}, []string{"example.com/hold"}
		}
		return n
	}
	ctx := context.Background()
	if err := CheckNodeNameFree(ctx, fake.NewClientset(), "n1"); err != nil {
		t.Fatalf("no Node: %v", err)
	}
	if err := CheckNodeNameFree(ctx, fake.NewClientset(node(corev1.ConditionTrue, true)), "n1"); err != nil {
		t.Fatalf("a Node being deleted must not block: %v", err)
	}
	for _, ready := range []corev1.ConditionStatus{corev1.ConditionTrue, corev1.ConditionFalse} {
		err := CheckNodeNameFree(ctx, fake.NewClientset(node(ready, false)), "n1")
		if err == nil || err.Error() != join.NodeNameInUse(node(ready, false)).Error() || !strings.Contains(err.Error(), "vcluster-standalone kubectl delete node n1") {
			t.Errorf("a Node n1 (Ready %s): %v", ready, err)
		}
	}
}
