package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/cmd/containerd/command"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	// containerd's own plugins, for the containerd this test binary runs.
	_ "github.com/containerd/containerd/v2/cmd/containerd/builtins"
)

// envContainerd makes the test binary run containerd instead of the tests.
const envContainerd = "VCS_TEST_CONTAINERD"

func TestMain(m *testing.M) {
	if os.Getenv(envContainerd) == "1" {
		if err := command.App().Run(os.Args); err != nil {
			fmt.Fprintf(os.Stderr, "containerd: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// testContainerd is a containerd run by this test binary in a temp dir.
type testContainerd struct {
	dir, socket string
	client      *client.Client
}

// startContainerd runs a real containerd (this binary with envContainerd)
// with its root, state and socket in a temp dir; it is stopped, and its
// mounts removed, when the test ends.
func startContainerd(t *testing.T) *testContainerd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("containerd with the overlayfs snapshotter needs root")
	}
	dir := t.TempDir()
	tc := &testContainerd{dir: dir, socket: filepath.Join(dir, "containerd.sock")}
	cfg := fmt.Sprintf(`version = 3
root = %q
state = %q
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs", "io.containerd.differ.v1.erofs",
  "io.containerd.mount-handler.v1.erofs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing", "io.containerd.nri.v1.nri",
  "io.containerd.internal.v1.opt", "io.containerd.image-verifier.v1.bindir",
]

[grpc]
  address = %q

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = [%q]
  conf_dir = %q

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), tc.socket, filepath.Join(dir, "cni-bin"), filepath.Join(dir, "cni-conf"))
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "containerd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()

	cmd := exec.Command(os.Args[0], "--config", cfgPath, "--log-level", "info")
	cmd.Env = append(os.Environ(), envContainerd+"=1")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread() // Pdeathsig follows the thread that started the child
	err = cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		if tc.client != nil {
			tc.client.Close()
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		unmountUnder(t, dir)
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("containerd log:\n%s", tail(string(b), 40))
			}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		c, err := Connect(ctx, tc.socket)
		if err == nil {
			tc.client = c
			return tc
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("containerd exited:\n%s", tail(string(b), 40))
		case <-ctx.Done():
			b, _ := os.ReadFile(logPath)
			t.Fatalf("containerd did not come up: %v\n%s", err, tail(string(b), 40))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// unmountUnder detaches every mount below dir, deepest first.
func unmountUnder(t *testing.T, dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Logf("unmount %s: %v", m, err)
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// names lists the image names in the k8s.io namespace.
func (tc *testContainerd) names(t *testing.T) []string {
	t.Helper()
	imgs, err := tc.client.ImageService().List(namespaces.WithNamespace(context.Background(), Namespace))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, img := range imgs {
		out = append(out, img.Name+"@"+img.Target.Digest.String())
	}
	sort.Strings(out)
	return out
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// tools builds hack/ociimage and a tiny static binary (images/pause) once.
func tools(t *testing.T) (ociimage, pause string) {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "images-test-tools-")
		if buildErr != nil {
			return
		}
		root, err := filepath.Abs("../../..")
		if err != nil {
			buildErr = err
			return
		}
		for _, b := range []struct{ out, pkg string }{{"ociimage", "./hack/ociimage"}, {"pause", "./images/pause"}} {
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(buildDir, b.out), b.pkg)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "ociimage"), filepath.Join(buildDir, "pause")
}

// writeImage writes an OCI archive holding the tiny binary as /pause under
// name, for arch, and returns its path and manifest digest.
func writeImage(t *testing.T, dir, file, name, arch string) (string, string) {
	t.Helper()
	ociimage, pause := tools(t)
	out := filepath.Join(dir, file)
	cmd := exec.Command(ociimage, "-o", out, "-name", name, "-arch", arch,
		"-file", pause+":/pause:0755", "-entrypoint", `["/pause"]`, "-user", "65535:65535")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ociimage: %v\n%s", err, b)
	}
	f := strings.Fields(string(b))
	return out, f[len(f)-1]
}
