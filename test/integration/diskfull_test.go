package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestFullDisk: the data dir is a small tmpfs of its own. While it is full,
// the running control plane refuses writes (etcd's NOSPACE alarm, raised by
// the control plane before etcd itself fails on ENOSPC) and keeps serving
// reads, in the same process; once space is freed writes resume. A start on
// the full disk fails at once with one line naming the filesystem and the
// free space; the next start (systemd's restart) waits, and starts as soon
// as there is room.
func TestFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	cp := newControlPlane(t, "--join-node=false")
	// As systemd's RuntimeDirectory= gives it: kept across the starts below.
	cp.env = []string{"RUNTIME_DIRECTORY=" + t.TempDir()}
	mountTmpfs(t, cp.dataDir, "400m")
	cp.start()
	admin := cp.client()
	ctx := context.Background()
	createCM(t, admin, "before-full")

	filler := fillDisk(t, cp.dataDir)
	mustPoll(t, 30*time.Second, "writes refused on the full disk", func(ctx context.Context) error {
		err := tryCreateCM(ctx, admin, fmt.Sprintf("during-full-%d", time.Now().UnixNano()))
		switch {
		case err == nil:
			return errors.New("a write succeeded")
		case !strings.Contains(err.Error(), "database space exceeded"):
			return fmt.Errorf("write failed otherwise: %v", err)
		}
		return nil
	})
	for i := 0; i < 5; i++ {
		if _, err := admin.CoreV1().ConfigMaps("default").Get(ctx, "before-full", metav1.GetOptions{}); err != nil {
			t.Fatalf("read while the disk is full: %v", err)
		}
		if _, err := admin.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
			t.Fatalf("list while the disk is full: %v", err)
		}
		time.Sleep(time.Second)
	}
	select {
	case <-cp.exited:
		t.Fatalf("the control plane exited while the disk was full: %v\n%s", cp.exitErr, cp.logTail())
	default:
	}
	if log, _ := os.ReadFile(cp.logPath); !strings.Contains(string(log), "etcd refuses writes") {
		t.Errorf("no line saying writes are refused:\n%s", cp.logTail())
	}

	os.Remove(filler)
	mustPoll(t, 30*time.Second, "writes resume once space is freed", func(ctx context.Context) error {
		return tryCreateCM(ctx, admin, "after-full")
	})
	cp.stop()

	// A start on the full disk: one line, at once.
	filler = fillDisk(t, cp.dataDir)
	began := time.Now()
	if err := cp.startNoWait(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cp.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("start on a full disk still runs after 30 s\n%s", cp.logTail())
	}
	t.Logf("start on a full disk failed in %.1fs", time.Since(began).Seconds())
	if cp.exitErr == nil {
		t.Fatal("start on a full disk exited 0")
	}
	log, _ := os.ReadFile(cp.logPath)
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "error: data dir "+cp.dataDir) || !strings.Contains(last, "mounted at "+cp.dataDir) || !strings.Contains(last, "MiB free") {
		t.Errorf("last line of a start on a full disk: %q, want one line naming the filesystem and its free space", last)
	}

	// The restart: it waits for space instead of failing again at once.
	if err := cp.startNoWait(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	select {
	case <-cp.exited:
		t.Fatalf("a repeated start on a full disk exited at once: %v\n%s", cp.exitErr, cp.logTail())
	default:
	}
	if log, _ := os.ReadFile(cp.logPath); !strings.Contains(string(log), "waiting up to") {
		t.Errorf("a repeated start does not say it waits:\n%s", cp.logTail())
	}
	freed := time.Now()
	os.Remove(filler)
	select {
	case state := <-cp.notify.states:
		if state != "READY=1" {
			t.Fatalf("sd_notify %q, want READY=1", state)
		}
	case <-cp.exited:
		t.Fatalf("exited after space was freed: %v\n%s", cp.exitErr, cp.logTail())
	case <-time.After(2 * time.Minute):
		t.Fatalf("not ready 2 min after space was freed\n%s", cp.logTail())
	}
	t.Logf("ready %.1fs after space was freed", time.Since(freed).Seconds())
	for _, name := range []string{"before-full", "after-full"} {
		if _, err := admin.CoreV1().ConfigMaps("default").Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("ConfigMap %s after the restart: %v", name, err)
		}
	}
	cp.stop()
}

// mountTmpfs mounts a tmpfs of size at dir, unmounted when the test ends.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("vcs-test", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	// Cleanups run last in, first out: this one before the process of a
	// failed test is killed, so detach lazily (its open files do not keep it).
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// fillDisk writes one file until its filesystem has no space left.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "test-filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			break
		}
	}
	// Tails of pages: fill those too.
	for {
		if _, err := f.Write(chunk[:512]); err != nil {
			break
		}
	}
	return path
}

func createCM(t *testing.T, c kubernetes.Interface, name string) {
	t.Helper()
	if err := tryCreateCM(context.Background(), c, name); err != nil {
		t.Fatalf("create ConfigMap %s: %v", name, err)
	}
}

func tryCreateCM(ctx context.Context, c kubernetes.Interface, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := c.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"a": "b"}}, metav1.CreateOptions{})
	return err
}
