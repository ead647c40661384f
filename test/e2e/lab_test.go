//go:build e2e

// Package e2e drives a lab cluster (test/vm/lab) the way a user would: install
// with packaging/install.sh, talk to the API server from the host through the
// lab network, break the service and watch it come back, uninstall, tear down.
//
// Run it with `make e2e` (as root). It brings its own lab up, and the last test
// tears it down and checks nothing is left behind.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	cpNode     = "lab-cp"
	labState   = "/run/vcluster-standalone-lab"
	kubeconfig = labState + "/admin.kubeconfig"
	installSh  = "/run/lab/packaging/install.sh"
	binDir     = "/run/lab/bin"
	service    = "vcluster-standalone"
)

var (
	labTool   string      // test/vm/lab
	reuseLab  bool        // VCS_E2E_REUSE_LAB=1: run against a lab already up, leave it up (development only)
	hostBin   string      // the freshly built vcluster-standalone on the host (its kubectl)
	failed    atomic.Bool // any test failed: keep node logs before tearing down
	beforeLab *hostSnapshot
)

func TestMain(m *testing.M) {
	labTool = os.Getenv("VCS_LAB")
	hostBin = os.Getenv("VCS_BINARY")
	if labTool == "" || hostBin == "" || os.Geteuid() != 0 {
		fmt.Println("e2e: needs root, VCS_LAB and VCS_BINARY; run it with `make e2e`")
		os.Exit(1)
	}
	if reuseLab = os.Getenv("VCS_E2E_REUSE_LAB") == "1"; reuseLab {
		fmt.Println("e2e: VCS_E2E_REUSE_LAB=1: using the lab that is up (make lab) and leaving it up")
		os.Exit(m.Run())
	}
	if _, err := os.Stat(filepath.Join(labState, "nodes")); err == nil {
		fmt.Println("e2e: a lab is already up; run `make lab-down` first (the suite checks what lab-down leaves behind)")
		os.Exit(1)
	}
	snap, err := takeSnapshot()
	if err != nil {
		fmt.Println("e2e: snapshot before the lab:", err)
		os.Exit(1)
	}
	beforeLab = snap
	start := time.Now()
	up := exec.Command(labTool, "up")
	up.Stdout, up.Stderr = os.Stdout, os.Stderr
	if err := up.Run(); err != nil {
		fmt.Println("e2e: lab up failed:", err)
		os.Exit(1)
	}
	fmt.Printf("e2e: lab up (1 control plane + 2 nodes, control plane installed) in %s\n", time.Since(start).Round(100*time.Millisecond))
	os.Exit(m.Run())
}

// track marks the suite failed when t fails, so node logs are kept.
func track(t *testing.T) {
	t.Cleanup(func() {
		if t.Failed() {
			failed.Store(true)
		}
	})
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, clip(r.stdout), clip(r.stderr))
}

// clip keeps failure messages readable: kubectl packs whole /readyz reports in one line.
func clip(s string) string {
	if len(s) > 400 {
		return s[:400] + "…"
	}
	return s
}

func run(ctx context.Context, name string, args ...string) result {
	return runWithInput(ctx, nil, name, args...)
}

// runWithInput is run with stdin.
func runWithInput(ctx context.Context, stdin io.Reader, name string, args ...string) result {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			errb.WriteString(err.Error())
		}
	}
	return result{stdout: strings.TrimSpace(out.String()), stderr: strings.TrimSpace(errb.String()), code: code}
}

// inNode runs a command inside a lab node, like `lab exec NODE CMD...`.
func inNode(t *testing.T, node string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	return run(ctx, labTool, append([]string{"exec", node}, args...)...)
}

// mustInNode fails the test unless the command exits 0; returns its stdout.
func mustInNode(t *testing.T, node string, args ...string) string {
	t.Helper()
	r := inNode(t, node, args...)
	if r.code != 0 {
		t.Fatalf("%s: %v: %s", node, args, r)
	}
	return r.stdout
}

// readyz is `kubectl --kubeconfig <lab kubeconfig> get --raw /readyz` from the host.
func readyz(ctx context.Context) result {
	return run(ctx, hostBin, "kubectl", "--kubeconfig", kubeconfig, "--request-timeout", "5s", "get", "--raw", "/readyz")
}

// waitReady polls until the service is active and /readyz is ok from the host.
func waitReady(t *testing.T, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last result
	var state string
	for time.Since(start) < timeout {
		state = inNode(t, cpNode, "systemctl", "is-active", service).stdout
		if state == "active" {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			last = readyz(ctx)
			cancel()
			if last.code == 0 && last.stdout == "ok" {
				return time.Since(start)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("not ready after %s: systemctl is-active=%q, readyz: %s", timeout, state, last)
	return 0
}

func mainPID(t *testing.T) string {
	t.Helper()
	return mustInNode(t, cpNode, "systemctl", "show", "-p", "MainPID", "--value", service)
}

// clientset for the lab cluster from the printed host kubeconfig.
func clientset(t *testing.T) *kubernetes.Clientset {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatalf("load %s: %v", kubeconfig, err)
	}
	cfg.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return cs
}

// oneLineError checks a failed command printed exactly one line on stderr
// containing want, and nothing on stdout.
func oneLineError(t *testing.T, what string, r result, want string) {
	t.Helper()
	if r.code == 0 {
		t.Errorf("%s: exit 0, want failure: %s", what, r)
		return
	}
	if strings.Count(r.stderr, "\n") != 0 || r.stderr == "" {
		t.Errorf("%s: want one line on stderr, got %q", what, r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		t.Errorf("%s: stderr %q does not mention %q", what, r.stderr, want)
	}
	if r.stdout != "" {
		t.Errorf("%s: unexpected stdout %q", what, r.stdout)
	}
}
