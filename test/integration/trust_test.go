package integration

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/certificate/csr"
	"k8s.io/client-go/util/keyutil"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/joinnode"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/joinserver"
)

// TestKubeletTrustChain attacks the trust between the API server, kubelets
// and join tokens on one control plane, and checks the legitimate paths.
func TestKubeletTrustChain(t *testing.T) {
	cp := newControlPlane(t)
	cp.start()
	admin := cp.client()
	cfg, errs := config.Resolve(cp.configFile, true, nil, config.DetectAdvertiseAddress)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	advertise := cfg.AdvertiseAddress
	hostName := localNodeName(t)
	victim := registerNode(t, admin, "victim", "10.20.0.7", 0)

	t.Run("serving CSRs for names others rely on stay pending with a Warning Event", func(t *testing.T) {
		// Control: a node asking for exactly its own name and address is approved.
		honest := certClient(t, cp, "system:node:honest", "system:nodes")
		selfRegister(t, honest, "honest", 0, hostnameAddr("honest"), internalIPAddr("10.20.0.8"))
		servingPair(t, admin, honest, "honest", []string{"honest"}, []string{"10.20.0.8"})
		for _, attack := range []struct {
			node string
			dns  []string
			ips  []string
			want []string
		}{
			{"evil-api", []string{"kubernetes.default.svc.cluster.local"}, []string{advertise, "10.96.0.1"}, []string{
				"kubernetes.default.svc.cluster.local is a name of the API server", advertise + " is an address of the API server",
				"10.96.0.1 is in the service CIDR 10.96.0.0/12"}},
			{"evil-host", []string{"evil-host", hostName}, nil, []string{hostName + " is a name of the API server"}},
			{"evil-steal", []string{"evil-steal"}, []string{victim.Status.Addresses[0].Address}, []string{"10.20.0.7 is an address of Node victim"}},
			{"evil-dns", []string{"evil-dns", "www.example.com"}, []string{"10.20.0.9"}, []string{"www.example.com is not the hostname of Node evil-dns"}},
		} {
			node := certClient(t, cp, "system:node:"+attack.node, "system:nodes")
			// The node rewrites its own status.addresses to what it wants certified.
			var addrs []corev1.NodeAddress
			for _, d := range attack.dns {
				addrs = append(addrs, hostnameAddr(d))
			}
			for _, ip := range attack.ips {
				addrs = append(addrs, internalIPAddr(ip))
			}
			selfRegister(t, node, attack.node, 0, addrs...)
			name := servingCert(t, node, attack.node, attack.dns, attack.ips)
			event := waitWarning(t, admin, name, joinserver.ReasonServingNotApproved)
			for _, w := range attack.want {
				if !strings.Contains(event.Message, w) {
					t.Errorf("%s: Event %q lacks %q", attack.node, event.Message, w)
				}
			}
			time.Sleep(2 * time.Second) // anyone else who would approve had time to
			got, err := admin.CertificatesV1().CertificateSigningRequests().Get(context.Background(), name, metav1.GetOptions{})
			if err != nil || len(got.Status.Conditions) != 0 || len(got.Status.Certificate) != 0 {
				t.Errorf("%s: CSR %s decided or issued: %v %+v", attack.node, name, err, got.Status)
			}
		}
	})

	t.Run("a join token cannot take an existing Node's name; a fresh name is approved", func(t *testing.T) {
		token := bootstrapTokenClient(t, cp, admin)
		cas, err := certutil.CertsFromFile(filepath.Join(cp.dataDir, "pki", "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// Straight to the CSR, past node-agent join's own check.
		_, err = joinnode.RequestKubeletClientCert(ctx, token, "victim", cas)
		if err == nil || !strings.Contains(err.Error(), "denied") || !strings.Contains(err.Error(), `a Node named "victim" already exists`) {
			t.Fatalf("a token asking for system:node:victim: %v", err)
		}
		list, err := admin.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var denied string
		for _, c := range list.Items {
			if cn, _ := njCSRSubject(c.Spec.Request); cn == "system:node:victim" {
				if len(c.Status.Certificate) > 0 || njApproved(&c) {
					t.Errorf("CSR %s for victim approved or issued", c.Name)
				}
				for _, cond := range c.Status.Conditions {
					if cond.Type == certificatesv1.CertificateDenied && cond.Reason == joinserver.ReasonClientDenied {
						denied = c.Name
					}
				}
			}
		}
		if denied == "" {
			t.Fatal("no Denied CSR for system:node:victim")
		}
		waitWarning(t, admin, denied, joinserver.ReasonClientDenied)

		issued, err := joinnode.RequestKubeletClientCert(ctx, token, "newcomer", cas)
		if err != nil {
			t.Fatalf("a fresh name: %v", err)
		}
		approved, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, issued.CSRName, metav1.GetOptions{})
		if err != nil || len(approved.Status.Conditions) != 1 || approved.Status.Conditions[0].Reason != joinserver.ReasonClientApproved {
			t.Errorf("CSR for newcomer: %v %+v", err, approved.Status.Conditions)
		}
	})

	t.Run("exec and logs refuse a kubelet whose certificate is from another CA", func(t *testing.T) {
		clusterCA, clusterKey := loadCA(t, filepath.Join(cp.dataDir, "pki"), "ca")
		otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		otherCA, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: "attacker-ca"}, otherKey)
		if err != nil {
			t.Fatal(err)
		}
		for _, rogue := range []struct {
			name string
			ca   *x509.Certificate
			key  any
		}{{"rogue-other-ca", otherCA, otherKey}, {"rogue-cluster-ca", clusterCA, clusterKey}} {
			certPEM, keyPEM, err := njSignServing(rogue.ca, rogue.key)
			if err != nil {
				t.Fatal(err)
			}
			k := newFakeKubelet(t, "127.0.0.1", certPEM, keyPEM, nil)
			registerNode(t, admin, rogue.name, "127.0.0.1", k.port)
			pod := podOn(t, admin, rogue.name)
			_, err = podLogs(admin, pod)
			checkTLSRefused(t, rogue.name+" logs", err)
			err = podExec(cp, admin, pod)
			checkTLSRefused(t, rogue.name+" exec", err)
			if reqs := k.requests(); len(reqs) > 0 {
				t.Errorf("%s: the API server sent requests to a kubelet it cannot trust: %v", rogue.name, reqs)
			}
		}
	})

	t.Run("exec, logs, port-forward and node metrics reach a kubelet certified through the CSR flow", func(t *testing.T) {
		// The control plane's own node (joinNode): its credentials are in the
		// temp dir, and it may be certified for the host's name and address.
		kubeconfig := filepath.Join(cp.localNodeDataDir, "kubelet.kubeconfig")
		rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		node := mustClient(t, rc)
		port := freePorts(t, 1)[0]
		selfRegister(t, node, hostName, port, hostnameAddr(hostName), internalIPAddr(advertise))
		certPEM, keyPEM := servingPair(t, admin, node, hostName, []string{hostName}, []string{advertise})
		servingCA, _ := certutil.CertsFromFile(filepath.Join(cp.dataDir, "pki", "kubelet-serving-ca.crt"))
		clusterCA, _ := certutil.CertsFromFile(filepath.Join(cp.dataDir, "pki", "ca.crt"))
		issued, _ := certutil.ParseCertsPEM(certPEM)
		if !verifies(issued[0], servingCA[0]) || verifies(issued[0], clusterCA[0]) {
			t.Fatalf("the serving certificate is not from the kubelet-serving CA alone (issuer %s)", issued[0].Issuer)
		}
		k := newFakeKubeletOnPort(t, net.JoinHostPort(advertise, fmt.Sprint(port)), certPEM, keyPEM, clusterCA[0])
		pod := podOn(t, admin, hostName)

		if out, err := podLogs(admin, pod); err != nil || out != fakeKubeletLog {
			t.Errorf("logs: %q %v", out, err)
		}
		// The fake kubelet does not stream: reaching it is the check.
		if err := podExec(cp, admin, pod); err == nil || !strings.Contains(err.Error(), fakeKubeletRefusal) {
			t.Errorf("exec did not reach the kubelet: %v", err)
		}
		if err := podPortForward(cp, admin, pod); err == nil || !strings.Contains(err.Error(), fakeKubeletRefusal) {
			t.Errorf("port-forward did not reach the kubelet: %v", err)
		}
		metrics, err := admin.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes/" + hostName + "/proxy/metrics").DoRaw(context.Background())
		if err != nil || string(metrics) != fakeKubeletMetrics {
			t.Errorf("node metrics: %q %v", metrics, err)
		}
		want := []string{"/containerLogs/default/" + pod + "/c", "/exec/default/" + pod + "/c", "/portForward/default/" + pod, "/metrics"}
		got := strings.Join(k.requests(), " ")
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("the kubelet saw no %s (saw %s)", w, got)
			}
		}
	})
}

func hostnameAddr(a string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeHostName, Address: a}
}
func internalIPAddr(a string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a}
}

// registerNode creates a Node as the admin, with one internal IP and the
// kubelet port the API server dials for logs, exec and proxy (a Node's
// status is taken on create, as a kubelet registers).
func registerNode(t *testing.T, admin kubernetes.Interface, name, ip string, kubeletPort int) *corev1.Node {
	t.Helper()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{
		Addresses:       []corev1.NodeAddress{internalIPAddr(ip), hostnameAddr(name)},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(kubeletPort)}},
	}}
	created, err := admin.CoreV1().Nodes().Create(context.Background(), node, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return created
}

// selfRegister creates the node's own Node with its credential, with the
// addresses it reports (a kubelet, or an attacker holding its credential,
// writes them).
func selfRegister(t *testing.T, node kubernetes.Interface, name string, kubeletPort int, addrs ...corev1.NodeAddress) {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{
		Addresses:       addrs,
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(kubeletPort)}},
	}}
	got, err := node.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("node %s registers itself: %v", name, err)
	}
	if len(got.Status.Addresses) != len(addrs) {
		t.Fatalf("node %s registered with addresses %v, want %v", name, got.Status.Addresses, addrs)
	}
}

// servingCert asks, as the node, for a kubelet serving certificate with
// these SANs and returns the CSR's name.
func servingCert(t *testing.T, node kubernetes.Interface, name string, dns, ips []string) string {
	t.Helper()
	csrName, _ := createServingCSR(t, node, name, dns, ips)
	return csrName
}

// servingPair is a kubelet serving certificate and key issued to the node
// through the CSR flow.
func servingPair(t *testing.T, admin, node kubernetes.Interface, name string, dns, ips []string) (certPEM, keyPEM []byte) {
	t.Helper()
	csrName, keyPEM := createServingCSR(t, node, name, dns, ips)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got, err := node.CertificatesV1().CertificateSigningRequests().Get(ctx, csrName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err = csr.WaitForCertificate(ctx, node, csrName, got.UID)
	if err != nil {
		t.Fatalf("serving CSR %s of %s: %v (approver: %s)", csrName, name, err, warnings(admin, csrName))
	}
	return certPEM, keyPEM
}

func createServingCSR(t *testing.T, node kubernetes.Interface, name string, dns, ips []string) (string, []byte) {
	t.Helper()
	var netIPs []net.IP
	for _, ip := range ips {
		netIPs = append(netIPs, net.ParseIP(ip))
	}
	usages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
	return requestCSRWithKey(t, node, "serving", "system:node:"+name, certificatesv1.KubeletServingSignerName, usages, dns, netIPs)
}

// warnings are the messages of the Warning Events on a CSR.
func warnings(admin kubernetes.Interface, csrName string) string {
	events, err := admin.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + csrName})
	if err != nil {
		return err.Error()
	}
	var msgs []string
	for _, e := range events.Items {
		if e.Type == corev1.EventTypeWarning {
			msgs = append(msgs, e.Message)
		}
	}
	return strings.Join(msgs, "; ")
}

// waitWarning waits for the approver's Warning Event on a CSR.
func waitWarning(t *testing.T, admin kubernetes.Interface, csrName, reason string) corev1.Event {
	t.Helper()
	var found corev1.Event
	mustPoll(t, 30*time.Second, "Warning Event "+reason+" on CSR "+csrName, func(ctx context.Context) error {
		events, err := admin.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + csrName})
		if err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.Type == corev1.EventTypeWarning && e.Reason == reason {
				found = e
				return nil
			}
		}
		return fmt.Errorf("%d other events", len(events.Items))
	})
	return found
}

func loadCA(t *testing.T, pkiDir, name string) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	certs, err := certutil.CertsFromFile(filepath.Join(pkiDir, name+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := keyutil.PrivateKeyFromFile(filepath.Join(pkiDir, name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	return certs[0], key.(crypto.Signer)
}

func verifies(cert, ca *x509.Certificate) bool {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	_, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err == nil
}

// podOn creates a pod bound to node (no scheduler, no kubelet needed: the
// API server looks up its node for logs, exec and port-forward).
func podOn(t *testing.T, admin kubernetes.Interface, node string) string {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "on-" + node + "-"},
		Spec: corev1.PodSpec{NodeName: node, AutomountServiceAccountToken: new(bool),
			Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/none"}}},
	}
	created, err := admin.CoreV1().Pods("default").Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin.CoreV1().Pods("default").Delete(context.Background(), created.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	})
	return created.Name
}

func podLogs(admin kubernetes.Interface, pod string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := admin.CoreV1().Pods("default").GetLogs(pod, &corev1.PodLogOptions{Container: "c"}).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, out) // the body says why
	}
	return string(out), nil
}

func adminRestConfig(cp *controlPlane) (*rest.Config, error) {
	return clientcmd.BuildConfigFromFlags("", cp.kubeconfig)
}

// podExec runs `kubectl exec`'s request (SPDY) through the API server.
func podExec(cp *controlPlane, admin *kubernetes.Clientset, pod string) error {
	cfg, err := adminRestConfig(cp)
	if err != nil {
		return err
	}
	url := admin.CoreV1().RESTClient().Post().Namespace("default").Resource("pods").Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: "c", Command: []string{"true"}, Stdout: true}, scheme.ParameterCodec).URL()
	exec, err := remotecommand.NewSPDYExecutor(cfg, "POST", url)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &strings.Builder{}})
}

// podPortForward opens `kubectl port-forward`'s connection (SPDY).
func podPortForward(cp *controlPlane, admin *kubernetes.Clientset, pod string) error {
	cfg, err := adminRestConfig(cp)
	if err != nil {
		return err
	}
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return err
	}
	url := admin.CoreV1().RESTClient().Post().Namespace("default").Resource("pods").Name(pod).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport, Timeout: 20 * time.Second}, "POST", url)
	conn, _, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
	if err == nil {
		conn.Close()
	}
	return err
}

// checkTLSRefused: the request failed because the API server did not trust
// the kubelet's certificate.
func checkTLSRefused(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: succeeded against an untrusted kubelet", what)
		return
	}
	if !strings.Contains(err.Error(), "x509") && !strings.Contains(err.Error(), "certificate") {
		t.Errorf("%s: failed, but not on the kubelet's certificate: %v", what, err)
	}
}

const (
	fakeKubeletLog     = "hello from the kubelet\n"
	fakeKubeletMetrics = "# fake kubelet metrics\n"
	fakeKubeletRefusal = "fake kubelet does not stream"
)

// fakeKubelet is an HTTPS server standing in for a kubelet: it answers logs
// and metrics and refuses to stream (exec, port-forward), recording every
// request path.
type fakeKubelet struct {
	port int
	mu   sync.Mutex
	reqs []string
}

func (k *fakeKubelet) requests() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.reqs...)
}

func newFakeKubelet(t *testing.T, host string, certPEM, keyPEM []byte, clientCA *x509.Certificate) *fakeKubelet {
	t.Helper()
	return newFakeKubeletOnPort(t, net.JoinHostPort(host, "0"), certPEM, keyPEM, clientCA)
}

// newFakeKubeletOnPort listens on addr; with clientCA it requires a client
// certificate from it, as a kubelet does of the API server.
func newFakeKubeletOnPort(t *testing.T, addr string, certPEM, keyPEM []byte, clientCA *x509.Certificate) *fakeKubelet {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	k := &fakeKubelet{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		k.reqs = append(k.reqs, r.URL.Path)
		k.mu.Unlock()
		switch {
		case strings.HasPrefix(r.URL.Path, "/containerLogs/"):
			fmt.Fprint(w, fakeKubeletLog)
		case r.URL.Path == "/metrics":
			fmt.Fprint(w, fakeKubeletMetrics)
		default:
			http.Error(w, fakeKubeletRefusal, http.StatusForbidden)
		}
	}))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener.Close()
	srv.Listener = l
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	if clientCA != nil {
		pool := x509.NewCertPool()
		pool.AddCert(clientCA)
		srv.TLS.ClientCAs, srv.TLS.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	k.port = l.Addr().(*net.TCPAddr).Port
	return k
}
