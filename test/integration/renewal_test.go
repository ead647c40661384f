package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	certutil "k8s.io/client-go/util/cert"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// TestLiveCertificateRenewal runs the control plane with one-minute leaves,
// renewed 40 s before they expire and checked every 4 s: over three
// renewals every server (API server, etcd client and peer ports,
// controller-manager, scheduler, join endpoint) serves the renewed
// certificate without a restart, a watch opened before stays open, a loop
// of requests sees no error, and once the first certificates have expired
// the controller-manager and scheduler (whose clients reconnect with the
// renewed files) still do their work.
func TestLiveCertificateRenewal(t *testing.T) {
	cp := newControlPlane(t, "--cert-leaf-lifetime=1m", "--cert-renew-before=40s", "--cert-check-interval=4s")
	cp.start()
	ports := readPorts(t, cp)
	pid := cp.cmd.Process.Pid
	started := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	admin := cp.client()
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "renewal"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := admin.CoreV1().ConfigMaps("renewal").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var watched atomic.Int64
	watchErr := make(chan string, 1)
	go func() {
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error && ctx.Err() == nil {
				watchErr <- fmt.Sprintf("watch error event: %v", ev.Object)
				return
			}
			watched.Add(1)
		}
		if ctx.Err() == nil {
			watchErr <- "the watch stream ended"
		}
	}()
	// A user's requests: each with a client read anew from the admin
	// kubeconfig, as every kubectl call does (it is rewritten on renewal).
	loop := startRequestLoop(ctx, func(i int) error { return userRequest(ctx, cp.kubeconfig, i) })

	pkiDir := filepath.Join(cp.dataDir, "pki")
	endpoints := servingEndpoints(t, pkiDir, ports)
	var cycles []time.Duration
	serial := fileSerial(t, pkiDir, pki.APIServer)
	for cycle := 1; cycle <= 3; cycle++ {
		var renewedAt time.Time
		mustPoll(t, 40*time.Second, fmt.Sprintf("renewal %d of the apiserver certificate", cycle), func(context.Context) error {
			if s := fileSerial(t, pkiDir, pki.APIServer); s.Cmp(serial) != 0 {
				serial, renewedAt = s, time.Now()
				return nil
			}
			return fmt.Errorf("serial still %s", serial)
		})
		// Every server serves the certificate now in its file.
		mustPoll(t, 20*time.Second, fmt.Sprintf("cycle %d: every server serves the renewed certificate", cycle), func(context.Context) error {
			for _, e := range endpoints {
				want := fileSerial(t, pkiDir, e.leaf)
				got, err := e.served()
				if err != nil {
					return fmt.Errorf("%s: %v", e.name, err)
				}
				if got.SerialNumber.Cmp(want) != 0 {
					return fmt.Errorf("%s serves serial %s, its file holds %s", e.name, got.SerialNumber, want)
				}
			}
			return nil
		})
		cycles = append(cycles, time.Since(renewedAt))
	}
	// Past the first certificates' expiry, the controller-manager (service
	// account of a new namespace) and the scheduler (a Pod's PodScheduled
	// condition: there is no node) still reach the API server.
	if wait := time.Until(started.Add(70 * time.Second)); wait > 0 {
		time.Sleep(wait)
	}
	// A client read anew: admin's first certificate has expired too, and
	// the kubeconfig holds the renewed one.
	admin = cp.client()
	ns := "after-expiry"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mustPoll(t, 30*time.Second, "controller-manager creates the new namespace's default ServiceAccount", func(ctx context.Context) error {
		_, err := admin.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mustPoll(t, 30*time.Second, "the scheduler reports on the new Pod", func(ctx context.Context) error {
		p, err := admin.CoreV1().Pods(ns).Get(ctx, "p", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled {
				return nil
			}
		}
		return fmt.Errorf("no PodScheduled condition yet")
	})

	// certs check shows the renewed expiry.
	before := fileCert(t, pkiDir, pki.APIServer).NotAfter.UTC().Format(time.RFC3339)
	out, stderr, _ := cp.run("certs", "check", "--config", cp.configFile)
	after := fileCert(t, pkiDir, pki.APIServer).NotAfter.UTC().Format(time.RFC3339)
	if !strings.Contains(out, before) && !strings.Contains(out, after) {
		t.Errorf("certs check does not show the apiserver's renewed expiry %s:\n%s%s", after, out, stderr)
	}
	cancel()
	requests, failures, firstFailure := loop.wait()
	select {
	case msg := <-watchErr:
		t.Errorf("%s", msg)
	default:
	}
	if cp.cmd.Process.Pid != pid {
		t.Error("the control plane process changed")
	}
	select {
	case <-cp.exited:
		t.Fatalf("the control plane exited: %v", cp.exitErr)
	default:
	}
	if failures > 0 || requests < 100 {
		t.Errorf("%d of %d requests failed (first: %v)", failures, requests, firstFailure)
	}
	if watched.Load() == 0 {
		t.Error("the watch opened before the renewals saw none of the loop's ConfigMaps")
	}
	// How long each check took to renew and write (start's own log lines).
	var checks []string
	for _, line := range strings.Split(readFileString(t, cp.logPath), "\n") {
		if _, rest, ok := strings.Cut(line, "] renewed "); ok {
			checks = append(checks, rest)
		}
	}
	t.Logf("checks that renewed: %q", checks)
	sorted := append([]time.Duration{}, cycles...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	t.Logf("renewal cycles: %v (median %v from the apiserver .crt replaced to every server serving its new certificate); %d requests, %d watch events",
		cycles, sorted[len(sorted)/2], requests, watched.Load())
	cp.stop()
}

// userRequest lists Namespaces and writes a ConfigMap with a client read
// from the kubeconfig file.
func userRequest(ctx context.Context, kubeconfig string, i int) error {
	client, err := kubeconfigClient(kubeconfig)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := client.CoreV1().Namespaces().List(rctx, metav1.ListOptions{}); err != nil {
		return err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "loop-" + strconv.Itoa(i%20)}, Data: map[string]string{"i": strconv.Itoa(i)}}
	if _, err := client.CoreV1().ConfigMaps("renewal").Create(rctx, cm, metav1.CreateOptions{}); err == nil {
		return nil
	}
	_, err = client.CoreV1().ConfigMaps("renewal").Update(rctx, cm, metav1.UpdateOptions{})
	return err
}

// servingEndpoint is one TLS server and the leaf it must serve.
type servingEndpoint struct {
	name, leaf string
	served     func() (*x509.Certificate, error)
}

func servingEndpoints(t *testing.T, pkiDir string, p map[string]int) []servingEndpoint {
	// etcd requires a client certificate: the API server's own.
	etcdClient := func(leaf string) *tls.Config {
		return &tls.Config{InsecureSkipVerify: true, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			pair, err := tls.LoadX509KeyPair(filepath.Join(pkiDir, leaf+".crt"), filepath.Join(pkiDir, leaf+".key"))
			return &pair, err
		}}
	}
	plain := &tls.Config{InsecureSkipVerify: true}
	return []servingEndpoint{
		{"kube-apiserver", pki.APIServer, dialServed(p["api"], plain)},
		{"etcd client port", pki.EtcdServer, dialServed(p["etcdClient"], etcdClient(pki.APIServerEtcdClient))},
		{"etcd peer port", pki.EtcdPeer, dialServed(p["etcdPeer"], etcdClient(pki.EtcdPeer))},
		{"kube-controller-manager", pki.ControllerManagerServer, dialServed(p["controllerManager"], plain)},
		{"kube-scheduler", pki.SchedulerServer, dialServed(p["scheduler"], plain)},
		{"join endpoint", pki.JoinEndpoint, dialServed(p["join"], plain)},
	}
}

func dialServed(port int, cfg *tls.Config) func() (*x509.Certificate, error) {
	return func() (*x509.Certificate, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cfg)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0], nil
	}
}

// readPorts returns the ports newControlPlane wrote into the config file.
func readPorts(t *testing.T, cp *controlPlane) map[string]int {
	c, err := config.Load(cp.configFile, false)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]int{"api": c.APIPort, "join": c.JoinPort, "etcdClient": c.Ports.EtcdClient, "etcdPeer": c.Ports.EtcdPeer,
		"controllerManager": c.Ports.ControllerManager, "scheduler": c.Ports.Scheduler}
}

func fileCert(t *testing.T, pkiDir, leaf string) *x509.Certificate {
	t.Helper()
	certs, err := certutil.CertsFromFile(filepath.Join(pkiDir, leaf+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func fileSerial(t *testing.T, pkiDir, leaf string) *big.Int {
	return fileCert(t, pkiDir, leaf).SerialNumber
}

func readFileString(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
