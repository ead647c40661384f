//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// The cluster CA rotation runs in two halves around the node-runtime tests:
// TestRotateCAStart (this file sorts right after the join tests) starts it
// on the lab with pods on every node; the tests after it run during the
// rotation; TestRotateCAFinish (run from nodes_last_test.go, while the nodes
// are still joined) retires the old CA, by when the clients everywhere have
// long re-read the bundle.
var rotation struct {
	oldCA, newCA *x509.Certificate
	ns           string
	pods         map[string]podIdentity // pod name -> what it was at the start
}

// rotatePodNodes run the pods that must live through the rotation: not
// resetNode, which TestNodeResetLeavesNothing resets in between.
var rotatePodNodes = []string{cpNode, podNode}

// podIdentity is what changes when a pod's container restarts.
type podIdentity struct {
	node, containerID string
	restarts          int32
}

const rotatePKI = "/var/lib/vcluster-standalone/pki"

func TestRotateCAStart(t *testing.T) {
	track(t)
	cs := clientset(t)
	importBusybox(t, allNodes...)
	ctx := context.Background()
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-rotate-ca-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rotation.ns = ns.Name
	t.Cleanup(func() {
		if t.Failed() { // else TestRotateCAFinish checks the pods, then deletes it
			cs.CoreV1().Namespaces().Delete(context.Background(), rotation.ns, metav1.DeleteOptions{})
			rotation.oldCA = nil
		}
	})
	rotation.pods = map[string]podIdentity{}
	for _, n := range rotatePodNodes {
		pod := busyboxPod("web-"+n, n, "sh", "-c", `echo started; mkdir -p /www && echo rotate-ca >/www/index.html && exec httpd -f -p 8080 -h /www`)
		pod.Spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
		startPod(t, cs, ns.Name, pod, 90*time.Second)
	}
	rotation.pods = podIdentities(t, cs, ns.Name)
	rotation.oldCA = clusterCA(t)
	loop := startKubectlLoop(t, ns.Name)

	begin := time.Now()
	out := mustInNode(t, cpNode, "vcluster-standalone", "certs", "rotate-ca")
	t.Logf("certs rotate-ca in %s:\n%s", time.Since(begin).Round(time.Millisecond), out)
	if !strings.Contains(out, "phase 1 of 2 done") || !strings.Contains(out, "certs rotate-ca --finish") {
		t.Errorf("rotate-ca does not say where the rotation stands and what comes next:\n%s", out)
	}
	rotation.newCA = clusterCA(t)
	if rotation.newCA.Equal(rotation.oldCA) {
		t.Fatal("ca.crt did not change")
	}
	// The host's kubeconfig was copied off lab-cp before: as the output says,
	// a user fetches it again (it then trusts both CAs and holds a
	// certificate of the new one). Until then it keeps working.
	if _, err := clientset(t).CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("a kubeconfig copied before the rotation stopped working during it: %v", err)
	}
	refreshHostKubeconfig(t)
	oneLineError(t, "rotate-ca twice", inNode(t, cpNode, "vcluster-standalone", "certs", "rotate-ca"), "already under way")
	oneLineError(t, "rotate-ca --force", inNode(t, cpNode, "vcluster-standalone", "certs", "rotate-ca", "--force"), "--force only goes with --finish")
	oneLineError(t, "finish at once", inNode(t, cpNode, "vcluster-standalone", "certs", "rotate-ca", "--finish"), "still in use")

	line := joinLine(t)
	for _, ca := range []*x509.Certificate{rotation.newCA, rotation.oldCA} {
		if !strings.Contains(line, "--ca-cert-hash "+pki.CAPin(ca)) {
			t.Errorf("join line during the rotation lacks the pin of %s: %s", ca.Subject.CommonName, line)
		}
	}
	// Every node picks the bundle up from cluster-info, without a re-join.
	took := poll(t, 90*time.Second, time.Second, "every node's CA file holds the bundle", func() (bool, string) {
		for _, n := range allNodes {
			certs, _ := certutil.ParseCertsPEM([]byte(inNode(t, n, "cat", "/var/lib/node-agent/pki/ca.crt").stdout))
			if len(certs) != 2 || !certs[0].Equal(rotation.newCA) || !certs[1].Equal(rotation.oldCA) {
				return false, fmt.Sprintf("%s holds %d CA(s)", n, len(certs))
			}
		}
		return true, ""
	})
	t.Logf("bundle on every node %s after rotate-ca", took.Round(time.Second))
	// The upstream kubelet reads its client certificate once: a node-agent
	// restart (pods keep running) moves it to the new CA now, not at its
	// next rotation. One node at a time, the loop leaving it alone meanwhile.
	for _, n := range allNodes {
		loop.pause(n)
		since := time.Now()
		mustInNode(t, n, "systemctl", "restart", nodeAgentUnit)
		waitNodeReady(t, cs, n, since, 90*time.Second)
		poll(t, time.Minute, time.Second, n+": kubelet client certificate of the new CA", func() (bool, string) {
			certs, err := certutil.ParseCertsPEM([]byte(inNode(t, n, "cat", nodeCert).stdout))
			if err != nil || !pki.SignedBy(certs[0], rotation.newCA) {
				return false, fmt.Sprintf("%v", err)
			}
			return true, ""
		})
		loop.resume(n)
	}
	if body := portForwardGet(t, ns.Name, "web-"+podNode, 8080, "/index.html"); body != "rotate-ca\n" {
		t.Errorf("port-forward during the rotation: %q", body)
	}
	checkPodsUnchanged(t, cs)
	loop.check(t, "phase 1")
}

// testRotateCAFinish retires the old CA (run from nodes_last_test.go).
func testRotateCAFinish(t *testing.T) {
	track(t)
	if rotation.oldCA == nil {
		t.Skip("TestRotateCAStart did not run or failed")
	}
	cs := clientset(t)
	defer cs.CoreV1().Namespaces().Delete(context.Background(), rotation.ns, metav1.DeleteOptions{})
	// In the whole suite the tests in between took longer than the clients'
	// CA reload period; run alone, this waits for it.
	waited := poll(t, 6*time.Minute, 5*time.Second, "rotate-ca status: nothing uses the old CA", func() (bool, string) {
		r := inNode(t, cpNode, "vcluster-standalone", "certs", "rotate-ca", "status")
		return strings.Contains(r.stdout, "can be retired now"), r.String()
	})
	t.Logf("waited %s for the old CA to be unused", waited.Round(time.Second))
	loop := startKubectlLoop(t, rotation.ns)
	begin := time.Now()
	out := mustInNode(t, cpNode, "vcluster-standalone", "certs", "rotate-ca", "--finish")
	t.Logf("certs rotate-ca --finish in %s:\n%s", time.Since(begin).Round(time.Millisecond), out)
	refreshHostKubeconfig(t) // its CA data still names the old CA as well
	oneLineError(t, "finish twice", inNode(t, cpNode, "vcluster-standalone", "certs", "rotate-ca", "--finish"), "no rotation of the cluster CA is under way")

	old := rotation.oldCA
	// What the servers present: no certificate of the old CA in any chain.
	servers := map[string]string{"kube-apiserver": "10.123.0.10:6443", "join endpoint": "10.123.0.10:6444"}
	for _, n := range allNodes {
		servers[n+" kubelet"] = nodeAddr(t, cs, n) + ":10250"
	}
	poll(t, time.Minute, time.Second, "no server presents a certificate of the old CA", func() (bool, string) {
		for name, addr := range servers {
			chain, err := presented(addr)
			if err != nil {
				return false, name + ": " + err.Error()
			}
			for _, c := range chain {
				if pki.SignedBy(c, old) {
					return false, fmt.Sprintf("%s presents %s, signed by the old CA", name, c.Subject)
				}
			}
		}
		return true, ""
	})
	// etcd listens on lab-cp's loopback: curl shows the issuer it presents.
	if r := inNode(t, cpNode, "sh", "-c", "curl -vsk --max-time 5 https://127.0.0.1:2379/health 2>&1 | grep -i 'issuer:'"); !strings.Contains(r.stdout, "etcd-ca") {
		t.Errorf("etcd presents a certificate not of the etcd CA: %s", r)
	}
	// The client certificates in use: the control plane's kubeconfigs and
	// every node's kubelet client certificate, and the CA files.
	kubeconfigs := strings.Fields(mustInNode(t, cpNode, "sh", "-c", "ls /var/lib/vcluster-standalone/kubeconfig/*.conf /etc/vcluster-standalone/admin.kubeconfig"))
	for _, kc := range kubeconfigs {
		cfg, err := clientcmd.Load([]byte(mustInNode(t, cpNode, "cat", kc)))
		if err != nil {
			t.Fatalf("%s: %v", kc, err)
		}
		for _, auth := range cfg.AuthInfos {
			data := string(auth.ClientCertificateData)
			if data == "" {
				data = mustInNode(t, cpNode, "cat", auth.ClientCertificate)
			}
			if certs, err := certutil.ParseCertsPEM([]byte(data)); err != nil || pki.SignedBy(certs[0], old) || len(certs) != 1 {
				t.Errorf("lab-cp %s: client certificate of the old CA, or still with its chain (%v)", kc, err)
			}
		}
	}
	poll(t, 90*time.Second, time.Second, "every node trusts the new CA alone", func() (bool, string) {
		for _, n := range allNodes {
			certs, _ := certutil.ParseCertsPEM([]byte(inNode(t, n, "cat", "/var/lib/node-agent/pki/ca.crt").stdout))
			if len(certs) != 1 || !certs[0].Equal(rotation.newCA) {
				return false, fmt.Sprintf("%s holds %d CA(s)", n, len(certs))
			}
		}
		return true, ""
	})
	for _, n := range allNodes {
		if certs, err := certutil.ParseCertsPEM([]byte(mustInNode(t, n, "cat", nodeCert))); err != nil || pki.SignedBy(certs[0], old) {
			t.Errorf("%s: kubelet client certificate of the old CA (%v)", n, err)
		}
		if ok, why, _ := nodeReady(cs, n); !ok {
			t.Errorf("%s not Ready after the rotation: %s", n, why)
		}
	}
	if body := portForwardGet(t, rotation.ns, "web-"+podNode, 8080, "/index.html"); body != "rotate-ca\n" {
		t.Errorf("port-forward after the rotation: %q", body)
	}
	checkPodsUnchanged(t, cs)
	loop.check(t, "phase 2")

	// A node joined after the rotation, with a line that pins the new CA alone.
	line := joinLine(t)
	if !strings.Contains(line, "--ca-cert-hash "+pki.CAPin(rotation.newCA)) || strings.Contains(line, pki.CAPin(old)) {
		t.Errorf("join line after the rotation: %s, want the new pin alone", line)
	}
	reset(t, resetNode)
	took := rejoin(t, cs, resetNode)
	t.Logf("%s re-joined with the new pin, Ready in %s", resetNode, took.Round(100*time.Millisecond))
	importBusybox(t, resetNode) // reset removed the images it imported
	pod := busyboxPod("after-rotation", resetNode, "sh", "-c", "echo joined-after; exec sleep 3600")
	startPod(t, cs, rotation.ns, pod, 90*time.Second)
	if out := mustKubectl(t, "exec", "-n", rotation.ns, "after-rotation", "--", "echo", "ok"); out != "ok" {
		t.Errorf("exec on the node joined after the rotation: %q", out)
	}
}

func podIdentities(t *testing.T, cs kubernetes.Interface, ns string) map[string]podIdentity {
	t.Helper()
	pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]podIdentity{}
	for _, p := range pods.Items {
		if len(p.Status.ContainerStatuses) == 1 {
			s := p.Status.ContainerStatuses[0]
			out[p.Name] = podIdentity{node: p.Spec.NodeName, containerID: s.ContainerID, restarts: s.RestartCount}
		}
	}
	return out
}

// checkPodsUnchanged: every pod of the start still runs its first container.
func checkPodsUnchanged(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	now := podIdentities(t, cs, rotation.ns)
	for name, was := range rotation.pods {
		if got := now[name]; got != was {
			t.Errorf("pod %s changed during the rotation: %+v -> %+v", name, was, got)
		}
	}
}

func nodeAddr(t *testing.T, cs kubernetes.Interface, name string) string {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	t.Fatalf("node %s has no InternalIP", name)
	return ""
}

// presented is the chain a TLS server presents (only read, not verified).
func presented(addr string) ([]*x509.Certificate, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{InsecureSkipVerify: true}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates, nil
}

// kubectlLoop runs kubectl exec and logs against the pod on each node, in
// turn, until stopped, and records failures.
type kubectlLoop struct {
	ns      string
	mu      sync.Mutex
	paused  map[string]bool
	failed  []string
	ok      atomic.Int64
	cancel  context.CancelFunc
	done    chan struct{}
	lineRe  *regexp.Regexp
	running bool
}

func startKubectlLoop(t *testing.T, ns string) *kubectlLoop {
	ctx, cancel := context.WithCancel(context.Background())
	l := &kubectlLoop{ns: ns, paused: map[string]bool{}, cancel: cancel, done: make(chan struct{}), lineRe: regexp.MustCompile(`^started$`), running: true}
	t.Cleanup(func() {
		if t.Failed() {
			l.stop()
		}
	})
	go func() {
		defer close(l.done)
		for i := 0; ctx.Err() == nil; i++ {
			n := rotatePodNodes[i%len(rotatePodNodes)]
			l.mu.Lock()
			skip := l.paused[n]
			l.mu.Unlock()
			if !skip {
				l.probe(t, n)
			}
			time.Sleep(time.Second)
		}
	}()
	return l
}

func (l *kubectlLoop) probe(t *testing.T, node string) {
	pod := "web-" + node
	exec := kubectl(t, "exec", "-n", l.ns, pod, "--", "cat", "/www/index.html")
	logs := kubectl(t, "logs", "-n", l.ns, pod)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.paused[node] {
		return // its node-agent restarted meanwhile
	}
	switch {
	case exec.code != 0 || exec.stdout != "rotate-ca":
		l.failed = append(l.failed, fmt.Sprintf("%s exec at %s: %s", pod, time.Now().Format(time.TimeOnly), exec))
	case logs.code != 0 || !l.lineRe.MatchString(strings.TrimSpace(logs.stdout)):
		l.failed = append(l.failed, fmt.Sprintf("%s logs at %s: %s", pod, time.Now().Format(time.TimeOnly), logs))
	default:
		l.ok.Add(1)
	}
}

func (l *kubectlLoop) pause(node string) {
	l.mu.Lock()
	l.paused[node] = true
	l.mu.Unlock()
}

func (l *kubectlLoop) resume(node string) {
	l.mu.Lock()
	delete(l.paused, node)
	l.mu.Unlock()
}

// stop ends the loop and returns its counts; safe to call again.
func (l *kubectlLoop) stop() (int, []string) {
	l.mu.Lock()
	running := l.running
	l.running = false
	l.mu.Unlock()
	if running {
		l.cancel()
		<-l.done
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.ok.Load()), append([]string(nil), l.failed...)
}

// check stops the loop and fails the test if any call failed.
func (l *kubectlLoop) check(t *testing.T, phase string) {
	t.Helper()
	ok, failed := l.stop()
	t.Logf("kubectl exec/logs loop during %s: %d ok, %d failed", phase, ok, len(failed))
	if len(failed) > 0 || ok == 0 {
		t.Errorf("kubectl exec/logs failed during %s (%d of %d): %s", phase, len(failed), ok+len(failed), strings.Join(failed[:min(3, len(failed))], "; "))
	}
}

// refreshHostKubeconfig fetches the admin kubeconfig from lab-cp again, as
// `lab up` does (test/vm/lab kubeconfig).
func refreshHostKubeconfig(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r := run(ctx, labTool, "kubeconfig"); r.code != 0 {
		t.Fatalf("lab kubeconfig: %s", r)
	}
}
