// Package netnstest builds throw-away network namespaces for the pod
// network's tests: "nodes" and "pods" of their own, changed only on threads
// switched into them, so the host's namespace, routes and tables are never
// touched. Everything it creates is removed at the test's cleanup.
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// RequireRoot skips the test unless it runs as root with the named binaries.
func RequireRoot(t testing.TB, bins ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s: %v", bin, err)
		}
	}
}

// New creates a named network namespace with loopback up, removed at
// cleanup, and returns its full name (prefix + pid + name).
func New(t testing.TB, prefix, name string) string {
	t.Helper()
	full := fmt.Sprintf("%s%d-%s", prefix, os.Getpid()%100000, name)
	Run(t, "ip", "netns", "add", full)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", full).Run() })
	Run(t, "ip", "-n", full, "link", "set", "lo", "up")
	return full
}

// Run runs a command and fails the test with its output if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// In runs fn on a thread switched into the named namespace. The thread is
// never switched back: it ends with its goroutine.
func In(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // no Unlock: the thread dies with the goroutine
		host, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer host.Close()
		target, err := netns.GetFromName(name)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		if cur, err := netns.Get(); err != nil || !cur.Equal(target) || cur.Equal(host) {
			errc <- fmt.Errorf("failed to enter namespace %s", name)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
