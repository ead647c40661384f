package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// TestRotateCA rotates the cluster CA of a running control plane: phase 1,
// then (once the control plane's own clients have had client-go's CA reload
// period to re-read the bundle) phase 2. Throughout, a loop of requests with
// a client read anew from the admin kubeconfig sees no error, and the same
// process serves; a client that still trusts only the old CA and holds an
// old certificate keeps working until the old CA is retired; join lines pin
// both CAs meanwhile; the controller-manager signs with the new CA; and
// after phase 2 no server and no kubeconfig presents a certificate of the
// old CA.
func TestRotateCA(t *testing.T) {
	cp := newControlPlane(t)
	cp.start()
	pid := cp.cmd.Process.Pid
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pkiDir := filepath.Join(cp.dataDir, "pki")
	c, err := config.Load(cp.configFile, false)
	if err != nil {
		t.Fatal(err)
	}
	oldCA := fileCerts(t, filepath.Join(pkiDir, pki.ClusterCA+".crt"))[0]
	// A client made before the rotation: it trusts the old CA alone and
	// authenticates with a certificate of the old CA, in memory.
	before, err := clientcmd.BuildConfigFromFlags("", cp.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	oldClient := kubernetes.NewForConfigOrDie(before)

	loop := startRequestLoop(ctx, func(int) error { return listWithKubeconfig(ctx, cp.kubeconfig) })

	// Bad input before anything started.
	if _, stderr, err := cp.run("certs", "rotate-ca", "--finish"); err == nil || !strings.Contains(stderr, "no rotation of the cluster CA is under way") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Fatalf("finish without start: %v\n%s", err, stderr)
	}

	// Phase 1.
	begin := time.Now()
	stdout, stderr, err := cp.run("certs", "rotate-ca")
	if err != nil {
		t.Fatalf("rotate-ca: %v\n%s%s\n%s", err, stdout, stderr, cp.logTail())
	}
	t.Logf("phase 1 in %s:\n%s", time.Since(begin).Round(time.Millisecond), stdout)
	if !strings.Contains(stdout, "phase 1 of 2 done") || !strings.Contains(stdout, "certs rotate-ca --finish") {
		t.Errorf("phase 1 does not say where it stands and what comes next:\n%s", stdout)
	}
	if _, stderr, err := cp.run("certs", "rotate-ca"); err == nil || !strings.Contains(stderr, "already under way") {
		t.Errorf("start twice: %v\n%s", err, stderr)
	}
	if _, stderr, err := cp.run("certs", "rotate-ca", "--finish"); err == nil || !strings.Contains(stderr, "still in use") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("finish right after start: %v\n%s, want one line naming what still uses the old CA", err, stderr)
	}
	newCA := fileCerts(t, filepath.Join(pkiDir, pki.ClusterCA+".crt"))[0]
	if newCA.Equal(oldCA) {
		t.Fatal("ca.crt is still the old CA")
	}
	servers := map[string]int{"kube-apiserver": cp.apiPort, "join endpoint": cp.joinPort,
		"kube-controller-manager": c.Ports.ControllerManager, "kube-scheduler": c.Ports.Scheduler}
	for name, port := range servers {
		chain := servedChain(t, port)
		if !pki.SignedBy(chain[0], newCA) || len(chain) != 2 || !pki.SignedBy(chain[1], oldCA) {
			t.Errorf("%s during the rotation serves %d certificate(s), leaf by the new CA %t; want the leaf and the new CA cross-signed by the old", name, len(chain), pki.SignedBy(chain[0], newCA))
		}
	}
	if _, err := oldClient.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("a client trusting only the old CA, with an old certificate, fails during the rotation: %v", err)
	}
	newOnly := clientTrusting(t, cp.kubeconfig, newCA)
	if _, err := newOnly.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("a client trusting only the new CA fails: %v", err)
	}
	assertPublished(t, cp, 2)
	out, stderr, err := cp.run("token", "create")
	if err != nil {
		t.Fatalf("token create: %v %s", err, stderr)
	}
	for _, ca := range []*x509.Certificate{newCA, oldCA} {
		if !strings.Contains(out, "--ca-cert-hash "+pki.CAPin(ca)) {
			t.Errorf("join line during the rotation lacks the pin of %s:\n%s", ca.Subject.CommonName, out)
		}
	}
	if cert := signCSR(t, ctx, superAdmin(t, cp)); !pki.SignedBy(cert, newCA) {
		t.Errorf("the controller-manager signed a CSR with %s, want the new CA", cert.Issuer)
	}

	// Phase 2, once nothing uses the old CA any more.
	mustPoll(t, 7*time.Minute, "rotate-ca status: nothing uses the old CA", func(context.Context) error {
		out, _, err := cp.run("certs", "rotate-ca", "status")
		if err != nil || !strings.Contains(out, "can be retired now") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	stdout, stderr, err = cp.run("certs", "rotate-ca", "--finish")
	if err != nil {
		t.Fatalf("rotate-ca --finish: %v\n%s%s\n%s", err, stdout, stderr, cp.logTail())
	}
	t.Logf("phase 2:\n%s", stdout)
	if _, stderr, err := cp.run("certs", "rotate-ca", "--finish"); err == nil || !strings.Contains(stderr, "no rotation") {
		t.Errorf("finish twice: %v\n%s", err, stderr)
	}
	for name, port := range servers {
		chain := servedChain(t, port)
		if len(chain) != 1 || !pki.SignedBy(chain[0], newCA) {
			t.Errorf("%s after the rotation serves %d certificate(s); want one leaf of the new CA", name, len(chain))
		}
	}
	for _, kc := range kubeconfigsOf(cp) {
		cfg, err := clientcmd.BuildConfigFromFlags("", kc)
		if err != nil {
			t.Fatal(err)
		}
		data, err := readClientCert(cfg)
		if err != nil {
			t.Fatalf("%s: %v", kc, err)
		}
		if certs, _ := certutil.ParseCertsPEM(data); len(certs) == 0 || pki.SignedBy(certs[0], oldCA) {
			t.Errorf("%s still holds a certificate of the old CA", kc)
		}
	}
	assertPublished(t, cp, 1)
	// The controller-manager still works: a new namespace gets its default
	// ServiceAccount, and our publisher its kube-root-ca.crt.
	admin := cp.client()
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "after-rotation"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mustPoll(t, time.Minute, "default ServiceAccount in a namespace made after the rotation", func(ctx context.Context) error {
		_, err := admin.CoreV1().ServiceAccounts("after-rotation").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	if _, err := oldClient.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
		t.Error("a client with a certificate of the retired CA is still accepted")
	}
	cancel()
	requests, failures, firstFailure := loop.wait()
	if cp.cmd.Process.Pid != pid {
		t.Error("the control plane process changed")
	}
	t.Logf("%d requests during the rotation, %d failed", requests, failures)
	if failures > 0 {
		t.Errorf("%d of %d requests failed during the rotation; first: %v", failures, requests, firstFailure)
	}
}

func fileCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	certs, err := certutil.CertsFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

// servedChain is what the TLS server on port presents.
func servedChain(t *testing.T, port int) []*x509.Certificate {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates
}

func listWithKubeconfig(ctx context.Context, kubeconfig string) error {
	client, err := kubeconfigClient(kubeconfig)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = client.CoreV1().Namespaces().List(rctx, metav1.ListOptions{})
	return err
}

// clientTrusting is the admin kubeconfig's user trusting only ca.
func clientTrusting(t *testing.T, kubeconfig string, ca *x509.Certificate) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLSClientConfig.CAData, cfg.TLSClientConfig.CAFile = pki.EncodeCert(ca), ""
	return kubernetes.NewForConfigOrDie(cfg)
}

func superAdmin(t *testing.T, cp *controlPlane) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(cp.dataDir, "kubeconfig", pki.SuperAdmin+".conf"))
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

func kubeconfigsOf(cp *controlPlane) []string {
	out := []string{cp.kubeconfig}
	for _, user := range []string{pki.SuperAdmin, pki.Admin, pki.ControllerManager, pki.Scheduler, pki.CSRApprover, pki.JoinObjects, pki.Addons, pki.CSI} {
		out = append(out, filepath.Join(cp.dataDir, "kubeconfig", user+".conf"))
	}
	return out
}

// readClientCert is the client certificate (PEM) a kubeconfig uses,
// embedded or named by path.
func readClientCert(cfg *rest.Config) ([]byte, error) {
	if len(cfg.CertData) > 0 {
		return cfg.CertData, nil
	}
	return os.ReadFile(cfg.CertFile)
}

// assertPublished waits until cluster-info and kube-root-ca.crt hold a
// bundle of n CAs, the same as the trust bundle file.
func assertPublished(t *testing.T, cp *controlPlane, n int) {
	t.Helper()
	admin := cp.client()
	data, err := os.ReadFile(filepath.Join(cp.dataDir, "pki", pki.BundleName(pki.ClusterCA)+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	want := string(data)
	mustPoll(t, 30*time.Second, fmt.Sprintf("cluster-info and kube-root-ca.crt hold the bundle of %d CA(s)", n), func(ctx context.Context) error {
		if certs, _ := certutil.ParseCertsPEM([]byte(want)); len(certs) != n {
			return fmt.Errorf("the bundle file holds %d CAs", len(certs))
		}
		ci, err := admin.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cfg, err := clientcmd.Load([]byte(ci.Data["kubeconfig"]))
		if err != nil {
			return err
		}
		for _, cl := range cfg.Clusters {
			if string(cl.CertificateAuthorityData) != want {
				return fmt.Errorf("cluster-info holds another bundle")
			}
		}
		root, err := admin.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if root.Data["ca.crt"] != want {
			return fmt.Errorf("default/kube-root-ca.crt holds another bundle")
		}
		return nil
	})
}

// signCSR has the controller-manager sign a client certificate.
func signCSR(t *testing.T, ctx context.Context, client kubernetes.Interface) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrPEM, err := certutil.MakeCSR(key, &pkix.Name{CommonName: "rotation-test"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := client.CertificatesV1().CertificateSigningRequests().Create(ctx, &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "rotation-"},
		Spec: certv1.CertificateSigningRequestSpec{Request: csrPEM, SignerName: certv1.KubeAPIServerClientSignerName,
			Usages: []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageClientAuth}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	csr.Status.Conditions = append(csr.Status.Conditions, certv1.CertificateSigningRequestCondition{
		Type: certv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "Test", Message: "rotation test"})
	if _, err := client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var cert *x509.Certificate
	mustPoll(t, time.Minute, "CSR signed", func(ctx context.Context) error {
		got, err := client.CertificatesV1().CertificateSigningRequests().Get(ctx, csr.Name, metav1.GetOptions{})
		if err != nil || len(got.Status.Certificate) == 0 {
			return fmt.Errorf("not signed yet: %v", err)
		}
		certs, err := certutil.ParseCertsPEM(got.Status.Certificate)
		if err != nil {
			return err
		}
		cert = certs[0]
		return nil
	})
	return cert
}
