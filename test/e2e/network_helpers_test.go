//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Helpers of the pod-network tests (network_test.go, network_figures_test.go).

const (
	// netServerScript is what every test pod runs: an HTTP server (8080) and a
	// persistent TCP listener (7001), both answering with the pod's name.
	netServerScript = `mkdir -p /tmp/www && hostname >/tmp/www/index.html
httpd -p 8080 -h /tmp/www
nc -ll -p 7001 -e hostname &
exec sleep 86400`
	netHTTPPort = 8080
	netTCPPort  = 7001
	netUDPPort  = 7002
	// netProbe is where netprobe is copied inside pods and nodes.
	netProbe = "/tmp/e2e-netprobe"
	// netBusybox is the host's busybox-static (make images) as nodes see it.
	netBusybox = binDir + "/images/busybox/bin/busybox"
)

// netprobeSource is a tiny static helper for what busybox cannot do: UDP
// (Debian's busybox nc has no -u) and TCP throughput with large buffers.
//
//	udp-echo PORT            answer every datagram with "<hostname> <payload>"
//	udp-ask ADDR MSG         send MSG, print the answer (3 tries, 1 s each)
//	tcp-sink PORT            accept connections forever, read each to EOF
//	tcp-send ADDR BYTES      send BYTES zeros, wait for the peer to close,
//	                         print "BYTES SECONDS"
//	resolve NAME             look NAME up as a program linked with a libc
//	                         does (Go's resolver: resolv.conf search, ndots)
//	tcp-loop ADDR MS         start a connection to ADDR every MS ms (each on
//	                         its own, 1 s timeout) until killed, one line per
//	                         try as it ends: "<unix ms of its start> ok <first
//	                         line>" or "<unix ms of its start> fail"
//	tcp-scan CIDR PORT MS    every MS ms, connect to every address of CIDR at
//	                         PORT; print "<unix ms> <addr> <first line>" for
//	                         each that answers (200 ms timeout), until killed
const netprobeSource = `package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

func die(err error) { fmt.Fprintln(os.Stderr, "netprobe:", err); os.Exit(1) }

func main() {
	if len(os.Args) < 3 {
		die(fmt.Errorf("usage: netprobe udp-echo PORT | udp-ask ADDR MSG | tcp-sink PORT | tcp-send ADDR BYTES"))
	}
	switch os.Args[1] {
	case "udp-echo":
		c, err := net.ListenPacket("udp4", ":"+os.Args[2])
		if err != nil {
			die(err)
		}
		host, _ := os.Hostname()
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				die(err)
			}
			c.WriteTo(append([]byte(host+" "), buf[:n]...), from)
		}
	case "udp-ask":
		c, err := net.Dial("udp4", os.Args[2])
		if err != nil {
			die(err)
		}
		buf := make([]byte, 65536)
		for i := 0; i < 3; i++ {
			c.Write([]byte(os.Args[3]))
			c.SetReadDeadline(time.Now().Add(time.Second))
			if n, err := c.Read(buf); err == nil {
				fmt.Println(string(buf[:n]))
				return
			}
		}
		die(fmt.Errorf("no answer from %s", os.Args[2]))
	case "tcp-sink":
		l, err := net.Listen("tcp4", ":"+os.Args[2])
		if err != nil {
			die(err)
		}
		for {
			c, err := l.Accept()
			if err != nil {
				die(err)
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	case "tcp-send":
		total, err := strconv.ParseInt(os.Args[3], 10, 64)
		if err != nil {
			die(err)
		}
		start := time.Now()
		c, err := net.Dial("tcp4", os.Args[2])
		if err != nil {
			die(err)
		}
		buf := make([]byte, 256<<10)
		for left := total; left > 0; {
			n := int64(len(buf))
			if left < n {
				n = left
			}
			if _, err := c.Write(buf[:n]); err != nil {
				die(err)
			}
			left -= n
		}
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
		fmt.Println(total, time.Since(start).Seconds())
	case "tcp-loop":
		ms, err := strconv.Atoi(os.Args[3])
		if err != nil {
			die(err)
		}
		var mu sync.Mutex
		for {
			start := time.Now()
			go func() {
				line, ok := firstLine(os.Args[2], time.Second)
				mu.Lock()
				defer mu.Unlock()
				if ok {
					fmt.Println(start.UnixMilli(), "ok", line)
				} else {
					fmt.Println(start.UnixMilli(), "fail")
				}
			}()
			time.Sleep(time.Until(start.Add(time.Duration(ms) * time.Millisecond)))
		}
	case "tcp-scan":
		_, cidr, err := net.ParseCIDR(os.Args[2])
		if err != nil {
			die(err)
		}
		ms, err := strconv.Atoi(os.Args[4])
		if err != nil {
			die(err)
		}
		base := cidr.IP.To4()
		ones, bits := cidr.Mask.Size()
		var mu sync.Mutex
		for {
			start := time.Now()
			var wg sync.WaitGroup
			for i := 1; i < 1<<(bits-ones)-1; i++ {
				ip := net.IPv4(base[0], base[1], base[2]+byte(i>>8), base[3]+byte(i))
				addr := net.JoinHostPort(ip.String(), os.Args[3])
				wg.Add(1)
				go func() {
					defer wg.Done()
					if line, ok := firstLine(addr, 200*time.Millisecond); ok {
						mu.Lock()
						fmt.Println(time.Now().UnixMilli(), addr, line)
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			time.Sleep(time.Until(start.Add(time.Duration(ms) * time.Millisecond)))
		}
	case "resolve":
		addrs, err := net.LookupHost(os.Args[2])
		if err != nil {
			die(err)
		}
		fmt.Println(strings.Join(addrs, " "))
	default:
		die(fmt.Errorf("unknown mode %q", os.Args[1]))
	}
}

// firstLine connects to addr and reads the first line the peer sends.
func firstLine(addr string, timeout time.Duration) (string, bool) {
	c, err := net.DialTimeout("tcp4", addr, timeout)
	if err != nil {
		return "", false
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && line == "" {
		return "", false
	}
	return strings.TrimSpace(line), true
}
`

// netBuildProbe builds netprobe (static, no cgo) into a test temp dir.
func netBuildProbe(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(netprobeSource), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module netprobe\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(dir, "netprobe")
	cmd := exec.Command(goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=", "GOTOOLCHAIN=local")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build netprobe: %v\n%s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// netKubectlIn runs the host's kubectl against the lab with stdin.
func netKubectlIn(t *testing.T, stdin io.Reader, timeout time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return runWithInput(ctx, stdin, hostBin, append([]string{"kubectl", "--kubeconfig", kubeconfig}, args...)...)
}

// netExec runs script with sh inside pod (kubectl exec from the host).
func netExec(t *testing.T, ns, pod, script string) result {
	t.Helper()
	return netKubectlIn(t, nil, 2*time.Minute, "-n", ns, "exec", pod, "--", "sh", "-c", script)
}

func netMustExec(t *testing.T, ns, pod, script string) string {
	t.Helper()
	r := netExec(t, ns, pod, script)
	if r.code != 0 {
		t.Fatalf("%s/%s: %q: %s", ns, pod, script, r)
	}
	return r.stdout
}

// netCopyProbe copies netprobe into pod at netProbe.
func netCopyProbe(t *testing.T, ns, pod string, probe []byte) {
	t.Helper()
	r := netKubectlIn(t, bytes.NewReader(probe), time.Minute, "-n", ns, "exec", "-i", pod, "--", "sh", "-c",
		"cat >"+netProbe+".tmp && chmod 755 "+netProbe+".tmp && mv "+netProbe+".tmp "+netProbe)
	if r.code != 0 {
		t.Fatalf("copy netprobe into %s/%s: %s", ns, pod, r)
	}
}

// netCopyProbeToNode copies netprobe into a lab node's root at netProbe,
// removed when the test ends.
func netCopyProbeToNode(t *testing.T, node string, probe []byte) {
	t.Helper()
	r := inNodeStdin(t, node, bytes.NewReader(probe), "sh", "-c", "cat >"+netProbe+" && chmod 755 "+netProbe)
	if r.code != 0 {
		t.Fatalf("copy netprobe into %s: %s", node, r)
	}
	t.Cleanup(func() { inNode(t, node, "rm", "-f", netProbe) })
}

// netPod is a busybox pod bound to node (nodeName: no scheduler, and it
// tolerates the control plane's taint) running netServerScript.
func netPod(name, node string, labels map[string]string) *corev1.Pod {
	zero := int64(0)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: &zero,
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name: "main", Image: busyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", netServerScript},
			}},
		},
	}
}

// netStartPods creates pods at once and waits until all run.
func netStartPods(t *testing.T, cs kubernetes.Interface, ns string, pods ...*corev1.Pod) map[string]*corev1.Pod {
	t.Helper()
	for _, p := range pods {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		cancel()
		if err != nil {
			t.Fatalf("create pod %s/%s: %v", ns, p.Name, err)
		}
	}
	got := map[string]*corev1.Pod{}
	for _, p := range pods {
		got[p.Name] = waitPodRunning(t, cs, ns, p.Name, 2*time.Minute)
	}
	return got
}

// netNamespace is testNamespace with the privileged Pod Security level
// (the pods ping and bind host ports) and a wait for the namespace to be
// gone at cleanup, so the next test starts from a quiet node.
func netNamespace(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	var ns string
	// Registered before testNamespace's delete, so it runs after it.
	t.Cleanup(func() {
		start := time.Now()
		for ns != "" && time.Since(start) < time.Minute {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			cancel()
			if apierrors.IsNotFound(err) {
				return
			}
			time.Sleep(300 * time.Millisecond)
		}
		if ns != "" {
			t.Logf("namespace %s still there after %s", ns, time.Since(start).Round(time.Second))
		}
	})
	ns = testNamespace(t, cs, "e2e-net")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	for _, l := range []string{"enforce", "warn", "audit"} {
		n.Labels["pod-security.kubernetes.io/"+l] = "privileged"
	}
	if _, err := cs.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("label namespace %s: %v", ns, err)
	}
	return ns
}

// netWaitNodes waits for every lab node (the control-plane host included)
// to be a Ready Node with a pod CIDR, and imports the busybox image there.
func netWaitNodes(t *testing.T, cs kubernetes.Interface) map[string]*corev1.Node {
	t.Helper()
	// In the suite the nodes stay joined from TestOneLineJoin on; a lab left
	// by another run may hold a reset node: join it (or start its agent).
	for _, n := range joinNodes {
		if inNode(t, n, "systemctl", "is-active", nodeAgentUnit).stdout == "active" {
			continue
		}
		if inNode(t, n, "test", "-e", "/etc/node-agent/config.yaml").code == 0 {
			t.Logf("%s: %s is not active; starting it", n, nodeAgentUnit)
			mustInNode(t, n, "systemctl", "start", nodeAgentUnit)
			continue
		}
		t.Logf("%s is not joined; joining it with the one-line join", n)
		if r := inNode(t, n, "sh", "-c", joinLine(t)); r.code != 0 {
			t.Fatalf("%s: one-line join: %s", n, r)
		}
	}
	// The lab gives containerd an ext4 disk (overlay snapshots cannot sit on
	// the node's overlay root). Without it no pod starts: say so at once
	// instead of waiting for pods stuck in ContainerCreating.
	for _, n := range allNodes {
		if r := inNode(t, n, "findmnt", "-n", "-o", "FSTYPE", "/var/lib/node-agent/containerd"); r.stdout != "ext4" {
			t.Fatalf("%s: /var/lib/node-agent/containerd is not the lab's ext4 disk any more (findmnt: %s): something unmounted it "+
				"(an uninstall or `node-agent reset` unmounts everything below /var/lib/node-agent, the dedicated disk included), "+
				"and containerd's overlay snapshots on the node's overlay root fail with EINVAL", n, r)
		}
	}
	nodes := map[string]*corev1.Node{}
	poll(t, 3*time.Minute, 300*time.Millisecond, "lab nodes Ready with a pod CIDR", func() (bool, string) {
		for _, n := range allNodes {
			if ok, why, _ := nodeReady(cs, n); !ok {
				return false, n + ": " + why
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			node, err := cs.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			cancel()
			if err != nil {
				return false, err.Error()
			}
			if node.Spec.PodCIDR == "" {
				return false, n + " has no pod CIDR"
			}
			nodes[n] = node
		}
		return true, ""
	})
	importBusybox(t, allNodes...)
	return nodes
}

// netNodeIP is the node's InternalIP.
func netNodeIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// netPeerState is what a node's data path holds about peers: its proto-118
// routes, the VXLAN FDB and the VXLAN neighbours.
func netPeerState(t *testing.T, node string) string {
	t.Helper()
	r := inNode(t, node, "sh", "-c", "ip route show proto 118; bridge fdb show dev vcs-vxlan; ip neigh show dev vcs-vxlan")
	if r.code != 0 {
		return "error: " + r.String()
	}
	return r.stdout
}

// netFigure logs a measurement in a form easy to collect from the test log.
func netFigure(t *testing.T, name string, format string, args ...any) {
	t.Helper()
	t.Logf("FIGURE %s: %s", name, fmt.Sprintf(format, args...))
}
