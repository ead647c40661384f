// Package integration starts the real vcluster-standalone binary on free
// ports in temporary directories and checks it the way a user would.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// binary is the vcluster-standalone binary under test.
var binary string

func TestMain(m *testing.M) {
	binary = os.Getenv("VCS_BINARY")
	if binary == "" {
		// Built like a release so every component reports its real version.
		root, _ := filepath.Abs("../..")
		out, err := exec.Command("make", "-C", root, "build").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "make build failed: %v\n%s", err, out)
			os.Exit(1)
		}
		binary = filepath.Join(root, "bin", "vcluster-standalone")
	}
	os.Exit(m.Run())
}

// controlPlane is one `vcluster-standalone start` process under test.
type controlPlane struct {
	t          *testing.T
	dir        string
	dataDir    string
	configFile string
	kubeconfig string
	apiPort    int
	args       []string
	cmd        *exec.Cmd
	logPath    string
	joinPort   int
	exited     chan struct{} // closed when the process has exited
	exitErr    error         // why it exited; read after exited is closed
	notify     *notifySocket
	env        []string // added to the process's environment
	// The host's own node (joinNode, on by default) writes here, never to
	// /etc or /var/lib.
	localNodeConfig, localNodeDataDir, unitDir string
}

// newControlPlane prepares a control plane on free ports in a temp dir. The
// ports and paths go into a config file, as a user would write one.
func newControlPlane(t *testing.T, extraArgs ...string) *controlPlane {
	t.Helper()
	dir := t.TempDir()
	ports := freePorts(t, 6)
	cp := &controlPlane{
		t: t, dir: dir, dataDir: filepath.Join(dir, "data"), configFile: filepath.Join(dir, "config.yaml"),
		kubeconfig: filepath.Join(dir, "admin.kubeconfig"), apiPort: ports[0], joinPort: ports[5],
		localNodeConfig: filepath.Join(dir, "node-agent", "config.yaml"), localNodeDataDir: filepath.Join(dir, "node-agent-data"),
		unitDir: filepath.Join(dir, "systemd"),
	}
	writeFile(t, cp.configFile, fmt.Sprintf(`apiVersion: vcluster-standalone.io/v1alpha1
kind: ControlPlaneConfig
bindAddress: 127.0.0.1
apiPort: %d
dataDir: %s
adminKubeconfig: %s
ports:
  etcdClient: %d
  etcdPeer: %d
  controllerManager: %d
  scheduler: %d
joinPort: %d
localNode:
  configFile: %s
  dataDir: %s
  unitDir: %s
`, ports[0], cp.dataDir, cp.kubeconfig, ports[1], ports[2], ports[3], ports[4], ports[5], cp.localNodeConfig, cp.localNodeDataDir, cp.unitDir))
	cp.args = append([]string{"start", "--config", cp.configFile}, extraArgs...)
	t.Cleanup(cp.kill)
	return cp
}

// start runs the process and waits until start reports READY=1.
func (cp *controlPlane) start() {
	cp.t.Helper()
	if err := cp.startNoWait(); err != nil {
		cp.t.Fatal(err)
	}
	select {
	case state := <-cp.notify.states:
		if state != "READY=1" {
			cp.t.Fatalf("first sd_notify state %q, want READY=1\n%s", state, cp.logTail())
		}
	case <-cp.exited:
		cp.t.Fatalf("start exited before ready: %v\n%s", cp.exitErr, cp.logTail())
	case <-time.After(2 * time.Minute):
		cp.t.Fatalf("not ready within 2 minutes\n%s", cp.logTail())
	}
}

func (cp *controlPlane) startNoWait() error {
	cp.notify = listenNotify(cp.t)
	cp.logPath = filepath.Join(cp.dir, fmt.Sprintf("start-%d.log", time.Now().UnixNano()))
	logFile, err := os.Create(cp.logPath)
	if err != nil {
		return err
	}
	cp.cmd = exec.Command(binary, cp.args...)
	cp.cmd.Stdout, cp.cmd.Stderr = logFile, logFile
	cp.cmd.Env = append(append(os.Environ(), "NOTIFY_SOCKET="+cp.notify.path), cp.env...)
	cp.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cp.cmd.Start(); err != nil {
		return err
	}
	cp.exited = make(chan struct{})
	go func() {
		cp.exitErr = cp.cmd.Wait()
		logFile.Close()
		close(cp.exited)
	}()
	return nil
}

// stop sends SIGTERM and requires a clean exit within 30 s.
func (cp *controlPlane) stop() {
	cp.t.Helper()
	begin := time.Now()
	cp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-cp.exited:
		if cp.exitErr != nil {
			cp.t.Fatalf("exit after SIGTERM: %v\n%s", cp.exitErr, cp.logTail())
		}
		cp.t.Logf("stopped in %.1fs", time.Since(begin).Seconds())
	case <-time.After(30 * time.Second):
		cp.t.Fatalf("still running 30s after SIGTERM\n%s", cp.logTail())
	}
	cp.cmd = nil
}

// kill ends the process if a test left it running (only the PID we started).
func (cp *controlPlane) kill() {
	if cp.cmd != nil && cp.cmd.Process != nil {
		cp.cmd.Process.Kill()
		<-cp.exited
	}
}

func (cp *controlPlane) logTail() string {
	data, _ := os.ReadFile(cp.logPath)
	lines := strings.Split(string(data), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	return strings.Join(lines, "\n")
}

func (cp *controlPlane) client() *kubernetes.Clientset {
	cp.t.Helper()
	client, err := kubeconfigClient(cp.kubeconfig)
	if err != nil {
		cp.t.Fatal(err)
	}
	return client
}

// kubeconfigClient is a client from the kubeconfig file, read anew (so a
// test sees what a fresh kubectl call would).
func kubeconfigClient(kubeconfig string) (*kubernetes.Clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// run executes the binary with the config file found through the
// environment, as `vcluster-standalone kubectl` is run without flags.
func (cp *controlPlane) run(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "VCLUSTER_STANDALONE_CONFIG="+cp.configFile)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var listeners []net.Listener
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range listeners {
		l.Close()
	}
	return ports
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// notifySocket receives sd_notify messages like systemd does.
type notifySocket struct {
	path   string
	states chan string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{path: path, states: make(chan string, 16)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			n.states <- strings.TrimSpace(string(buf[:k]))
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return n
}

func mustPoll(t *testing.T, timeout time.Duration, what string, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		if last = f(ctx); last == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, last)
}

// requestLoop sends a request every 100 ms until its context ends, counting
// the ones that failed (a request cut short by the context's end is not
// counted).
type requestLoop struct {
	requests, failures atomic.Int64
	firstFailure       atomic.Value
	done               chan struct{}
}

func startRequestLoop(ctx context.Context, request func(i int) error) *requestLoop {
	l := &requestLoop{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for i := 0; ctx.Err() == nil; i++ {
			err := request(i)
			if ctx.Err() != nil {
				return
			}
			l.requests.Add(1)
			if err != nil {
				l.failures.Add(1)
				l.firstFailure.CompareAndSwap(nil, err.Error())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return l
}

// wait returns the counts once the loop has ended (after its context did).
func (l *requestLoop) wait() (requests, failures int64, firstFailure any) {
	<-l.done
	return l.requests.Load(), l.failures.Load(), l.firstFailure.Load()
}
