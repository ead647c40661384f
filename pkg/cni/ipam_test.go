package cni

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func testAllocator(t *testing.T, cidr, dir string) *allocator {
	t.Helper()
	nw, err := NetConf{Subnet: cidr, IPAMDir: dir}.validate()
	if err != nil {
		t.Fatal(err)
	}
	return newAllocator(nw)
}

func mustAllocate(t *testing.T, a *allocator, id string) net.IP {
	t.Helper()
	ip, _, err := a.Allocate(id, "eth0")
	if err != nil {
		t.Fatalf("Allocate(%s): %v", id, err)
	}
	return ip
}

func TestIPAMSkipsNetworkGatewayBroadcastAndExhausts(t *testing.T) {
	a := testAllocator(t, "10.244.1.0/24", t.TempDir())
	seen := map[string]bool{}
	for i := 0; i < 253; i++ {
		ip := mustAllocate(t, a, fmt.Sprintf("c%d", i))
		s := ip.String()
		if seen[s] {
			t.Fatalf("%s allocated twice", s)
		}
		seen[s] = true
		if s == "10.244.1.0" || s == "10.244.1.1" || s == "10.244.1.255" || !a.subnet.Contains(ip) {
			t.Fatalf("allocated reserved or foreign address %s", s)
		}
	}
	_, _, err := a.Allocate("one-too-many", "eth0")
	if err == nil {
		t.Fatal("expected exhaustion error")
	}
	if want := "no free address in 10.244.1.0/24 (253 in use): "; !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error = %q, want prefix %q", err, want)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error is not one line: %q", err)
	}
	// Releasing one makes exactly that one available again.
	if err := a.Release("c7", "eth0"); err != nil {
		t.Fatal(err)
	}
	ip := mustAllocate(t, a, "late")
	if ip.String() != "10.244.1.9" {
		t.Fatalf("got %s after releasing 10.244.1.9", ip)
	}
}

func TestIPAMIdempotentPersistentReleased(t *testing.T) {
	dir := t.TempDir()
	a := testAllocator(t, "10.244.1.0/24", dir)
	ip1 := mustAllocate(t, a, "pod1")
	if ip1.String() != "10.244.1.2" {
		t.Fatalf("first address = %s, want 10.244.1.2", ip1)
	}
	again, fresh, err := a.Allocate("pod1", "eth0")
	if err != nil || !again.Equal(ip1) || fresh {
		t.Fatalf("second Allocate = %s fresh=%v err=%v, want %s, not fresh", again, fresh, err, ip1)
	}
	other, _, _ := a.Allocate("pod1", "eth1")
	if other.Equal(ip1) {
		t.Fatal("another interface of the same container got the same address")
	}

	// A new allocator (a new plugin process) sees the same state.
	b := testAllocator(t, "10.244.1.0/24", dir)
	if got, _ := b.Lookup("pod1", "eth0"); !got.Equal(ip1) {
		t.Fatalf("Lookup after restart = %v, want %s", got, ip1)
	}
	if got := mustAllocate(t, b, "pod1"); !got.Equal(ip1) {
		t.Fatalf("Allocate after restart = %s, want %s", got, ip1)
	}
	data, err := os.ReadFile(filepath.Join(dir, ip1.String()))
	if err != nil || string(data) != "pod1\neth0\n" {
		t.Fatalf("allocation file = %q, %v", data, err)
	}

	if err := b.Release("pod1", "eth0"); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Lookup("pod1", "eth0"); got != nil {
		t.Fatalf("still allocated after release: %s", got)
	}
	if _, err := os.Stat(filepath.Join(dir, ip1.String())); !os.IsNotExist(err) {
		t.Fatalf("allocation file left behind: %v", err)
	}
	// Unknown release is success, also with no state dir at all.
	if err := b.Release("nope", "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := testAllocator(t, "10.244.1.0/24", filepath.Join(dir, "missing")).Release("x", "eth0"); err != nil {
		t.Fatal(err)
	}
	// The cursor avoids handing the released address out at once.
	if got := mustAllocate(t, b, "pod2"); got.Equal(ip1) {
		t.Fatalf("released address %s reused immediately", got)
	}
}

func TestIPAMConcurrentGoroutines(t *testing.T) {
	dir := t.TempDir()
	const n = 50
	var wg sync.WaitGroup
	ips := make([]string, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each goroutine is its own allocator, as separate plugin processes are.
			a := testAllocator(t, "10.244.1.0/24", dir)
			ip, _, err := a.Allocate(fmt.Sprintf("pod%d", i), "eth0")
			ips[i], errs[i] = ip.String(), err
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for i := range ips {
		if errs[i] != nil {
			t.Fatalf("pod%d: %v", i, errs[i])
		}
		if j, dup := seen[ips[i]]; dup {
			t.Fatalf("pod%d and pod%d both got %s", i, j, ips[i])
		}
		seen[ips[i]] = i
	}
	all, _ := testAllocator(t, "10.244.1.0/24", dir).list()
	if len(all) != n {
		t.Fatalf("%d allocation files, want %d", len(all), n)
	}
}

func TestIPAMConcurrentProcesses(t *testing.T) {
	dir := t.TempDir()
	const n = 20
	var wg sync.WaitGroup
	out := make([]string, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "VCS_CNI_TEST_HELPER=alloc", "VCS_DIR="+dir,
				"VCS_SUBNET=10.244.1.0/28", fmt.Sprintf("VCS_ID=proc%d", i))
			b, err := cmd.CombinedOutput()
			out[i], errs[i] = strings.TrimSpace(string(b)), err
		}()
	}
	wg.Wait()
	// A /28 has 13 usable addresses: 13 processes win, 7 get the clear error.
	seen := map[string]bool{}
	failed := 0
	for i := range out {
		if errs[i] != nil {
			if !strings.HasPrefix(out[i], "no free address in 10.244.1.0/28 (13 in use)") {
				t.Fatalf("proc%d: %v: %s", i, errs[i], out[i])
			}
			failed++
			continue
		}
		if seen[out[i]] {
			t.Fatalf("%s handed out twice", out[i])
		}
		seen[out[i]] = true
	}
	if len(seen) != 13 || failed != 7 {
		t.Fatalf("%d allocated, %d failed; want 13 and 7", len(seen), failed)
	}
}

func TestIPAMReleaseExcept(t *testing.T) {
	a := testAllocator(t, "10.244.1.0/24", t.TempDir())
	for _, id := range []string{"keep", "stale1", "stale2"} {
		mustAllocate(t, a, id)
	}
	released, err := a.ReleaseExcept(func(id, _ string) bool { return id == "keep" })
	if err != nil || len(released) != 2 {
		t.Fatalf("released %v, %v; want 2", released, err)
	}
	all, _ := a.list()
	if len(all) != 1 || all[0].ContainerID != "keep" {
		t.Fatalf("left %v, want only keep", all)
	}
}
