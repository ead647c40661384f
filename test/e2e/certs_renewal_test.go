//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	cpConfig    = "/etc/vcluster-standalone/config.yaml"
	cpPKI       = "/var/lib/vcluster-standalone/pki"
	renewCycles = 3
	// Test-only lifetimes: leaves live 1 min and are renewed 45 s before
	// they expire (every ~15 s), checked every 3 s; the kubelets' CSR-signed
	// certificates live 2 min, so a kubelet rotates within ~80 s.
	renewConfig = "certificates:\n  leafLifetime: 1m\n  renewBefore: 45s\n  checkInterval: 3s\n  signingDuration: 2m\n"
)

// testCertRenewalLive (run from nodes_last_test.go, with the nodes joined):
// with short test-only lifetimes on lab-cp, over three renewals of the
// control plane's leaves and a rotation of a node's kubelet client
// certificate, a `kubectl get --watch` opened before stays open without an
// error, a loop of kubectl calls (from the host, and `vcluster-standalone
// kubectl` on lab-cp with the rewritten admin kubeconfig) sees no error,
// the API server serves each renewed certificate, `certs check` shows each
// new expiry, no process restarts (vcluster-standalone's and every
// node-agent's main PID) and every node stays Ready. The default config is
// restored at the end, and the node that got short certificates joins again.
func testCertRenewalLive(t *testing.T) {
	track(t)
	begin := time.Now()
	waitReady(t, 3*time.Minute)
	cs := clientset(t)
	orig := mustInNode(t, cpNode, "cat", npConfig) + "\n"
	t.Cleanup(func() {
		writeControlPlaneConfig(t, orig)
		// resetNode holds 2-minute kubelet certificates: a fresh join gives
		// it the default lifetime again.
		reset(t, resetNode)
		rejoin(t, cs, resetNode)
		t.Logf("whole test with the restore: %s", time.Since(begin).Round(time.Second))
	})
	writeControlPlaneConfig(t, orig+renewConfig)
	if inNode(t, cpNode, "test", "-x", "/usr/local/bin/node-agent").code != 0 {
		mustInNode(t, cpNode, "install", "-m", "0755", binDir+"/node-agent", "/usr/local/bin/node-agent")
	}
	// resetNode joins again, so its kubelet's first certificate is signed
	// for the short signingDuration and rotates during the test.
	reset(t, resetNode)
	rejoin(t, cs, resetNode)
	kubeletSerial := parseCert(t, mustInNode(t, resetNode, "cat", nodeCert)).SerialNumber

	pids := map[string]string{cpNode + " " + service: mainPID(t)}
	for _, n := range allNodes {
		pids[n+" node-agent"] = agentPID(t, n)
	}
	ns := testNamespace(t, cs, "renewal")
	windowStart := time.Now()

	// The watch: a real kubectl from the host, opened before any renewal.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var watchOut, watchErr bytes.Buffer
	watch := exec.CommandContext(ctx, hostBin, "kubectl", "--kubeconfig", kubeconfig, "get", "configmaps", "-n", ns, "--watch", "-o", "name")
	watch.Stdout, watch.Stderr = &watchOut, &watchErr
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	watchDone := make(chan error, 1)
	go func() { watchDone <- watch.Wait() }()

	// The loop: kubectl calls from the host and on lab-cp.
	var calls atomic.Int64
	var failuresMu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	loop := func(what func(i int) result) {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			r := what(i)
			if ctx.Err() != nil {
				return
			}
			calls.Add(1)
			if r.code != 0 {
				failuresMu.Lock()
				failures = append(failures, fmt.Sprintf("%s: %s", time.Now().Format(time.RFC3339), r))
				failuresMu.Unlock()
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	wg.Add(2)
	go loop(func(i int) result {
		if i%2 == 0 {
			return run(ctx, hostBin, "kubectl", "--kubeconfig", kubeconfig, "--request-timeout", "10s", "create", "configmap", fmt.Sprintf("loop-%d", i), "-n", ns)
		}
		return run(ctx, hostBin, "kubectl", "--kubeconfig", kubeconfig, "--request-timeout", "10s", "get", "nodes", "-o", "name")
	})
	go loop(func(int) result {
		return inNode(t, cpNode, "vcluster-standalone", "kubectl", "--request-timeout", "10s", "get", "--raw", "/readyz")
	})

	server := apiServerAddr(t)
	serial := parseCert(t, mustInNode(t, cpNode, "cat", cpPKI+"/apiserver.crt")).SerialNumber
	var served []time.Duration
	for cycle := 1; cycle <= renewCycles; cycle++ {
		var renewedAt time.Time
		var file *x509.Certificate
		poll(t, 40*time.Second, 200*time.Millisecond, fmt.Sprintf("renewal %d of apiserver.crt", cycle), func() (bool, string) {
			file = parseCert(t, mustInNode(t, cpNode, "cat", cpPKI+"/apiserver.crt"))
			renewedAt = time.Now()
			return file.SerialNumber.Cmp(serial) != 0, "serial " + serial.String()
		})
		serial = file.SerialNumber
		poll(t, 20*time.Second, 50*time.Millisecond, fmt.Sprintf("cycle %d: the API server serves the renewed certificate", cycle), func() (bool, string) {
			got := servedCert(t, server)
			return got.SerialNumber.Cmp(file.SerialNumber) == 0, "serves " + got.SerialNumber.String()
		})
		served = append(served, time.Since(renewedAt))
		// certs check prints the expiry of what is on disk; a renewal may
		// come in between, so either the one seen or a later one.
		out := inNode(t, cpNode, "vcluster-standalone", "certs", "check").stdout
		now := parseCert(t, mustInNode(t, cpNode, "cat", cpPKI+"/apiserver.crt"))
		if !strings.Contains(out, file.NotAfter.UTC().Format(time.RFC3339)) && !strings.Contains(out, now.NotAfter.UTC().Format(time.RFC3339)) {
			t.Errorf("cycle %d: certs check does not show the apiserver's new expiry %s:\n%s", cycle, file.NotAfter.UTC().Format(time.RFC3339), out)
		}
		for _, n := range allNodes {
			if ok, why, _ := nodeReady(cs, n); !ok {
				t.Errorf("cycle %d: %s not Ready: %s", cycle, n, why)
			}
		}
	}
	// The kubelet on resetNode rotates its client certificate (2 min,
	// backdated 5 min: within 0.7–0.9 of 7 min of its NotBefore).
	var rotatedAfter time.Duration
	poll(t, 90*time.Second, time.Second, resetNode+": the kubelet rotates its client certificate", func() (bool, string) {
		s := parseCert(t, mustInNode(t, resetNode, "cat", nodeCert)).SerialNumber
		rotatedAfter = time.Since(windowStart)
		return s.Cmp(kubeletSerial) != 0, "serial " + kubeletSerial.String()
	})
	// Past the rotation the kubelet goes on with its new certificate: it
	// renews its Lease (every 10 s) and the Node stays Ready.
	rotated := time.Now()
	poll(t, 40*time.Second, time.Second, resetNode+": Lease renewed after the rotation", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		lease, err := cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, resetNode, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return lease.Spec.RenewTime != nil && lease.Spec.RenewTime.After(rotated), fmt.Sprintf("renewed %v", lease.Spec.RenewTime)
	})

	cancel()
	wg.Wait()
	select {
	case err := <-watchDone:
		if !strings.Contains(fmt.Sprint(err), "killed") {
			t.Errorf("the watch ended on its own during the renewals: %v\n%s", err, watchErr.String())
		}
	case <-time.After(5 * time.Second):
		t.Error("the watch did not end when cancelled")
	}
	if watchErr.Len() > 0 {
		t.Errorf("the watch printed errors: %s", watchErr.String())
	}
	if !strings.Contains(watchOut.String(), "configmap/loop-") {
		t.Errorf("the watch saw none of the loop's ConfigMaps: %q", watchOut.String())
	}
	for _, f := range failures {
		t.Errorf("kubectl call failed: %s", f)
	}
	for what, pid := range pids {
		node, unit, _ := strings.Cut(what, " ")
		now := agentPID(t, node)
		if unit == service {
			now = mainPID(t)
		}
		if now != pid {
			t.Errorf("%s: main PID %s -> %s: restarted during the renewals", what, pid, now)
		}
	}
	for _, n := range allNodes {
		if ok, why, _ := nodeReady(cs, n); !ok {
			t.Errorf("%s not Ready after the renewals: %s", n, why)
		}
	}
	t.Logf("%d control-plane renewals; API server served each new certificate %v after its file changed; %s's kubelet rotated its client certificate %s into the window; %d kubectl calls, %d failed; window %s",
		renewCycles, served, resetNode, rotatedAfter.Round(time.Second), calls.Load(), len(failures), time.Since(windowStart).Round(time.Second))
}

// apiServerAddr is host:port of the API server in the host's kubeconfig.
func apiServerAddr(t *testing.T) string {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// writeControlPlaneConfig replaces lab-cp's config file, restarts the
// control plane and waits until it is ready.
func writeControlPlaneConfig(t *testing.T, cfg string) {
	t.Helper()
	if r := inNodeStdin(t, cpNode, strings.NewReader(cfg), "sh", "-c", "cat >"+npConfig+".new && mv "+npConfig+".new "+npConfig); r.code != 0 {
		t.Fatalf("write %s: %s", npConfig, r)
	}
	mustInNode(t, cpNode, "systemctl", "restart", service)
	waitReady(t, 3*time.Minute)
}
