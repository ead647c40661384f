package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary act as pause for TestExitsOnSignal.
func TestMain(m *testing.M) {
	if os.Getenv("PAUSE_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func TestExitsZeroOnSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "PAUSE_TEST_MAIN=1")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		// Still running after a while: it waits, it does not exit on its own.
		select {
		case err := <-done:
			t.Fatalf("pause exited on its own: %v (%s)", err, stderr.String())
		case <-time.After(300 * time.Millisecond):
		}
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%v: exit %v, want 0 (%s)", sig, err, stderr.String())
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("%v: pause did not exit", sig)
		}
		if !strings.Contains(stderr.String(), "Shutting down") {
			t.Errorf("stderr = %q", stderr.String())
		}
	}
}

func TestReapCollectsExitedChildren(t *testing.T) {
	var pids []int
	for i := 0; i < 3; i++ {
		cmd := exec.Command("/bin/true")
		if err := cmd.Start(); err != nil {
			t.Skipf("cannot start /bin/true: %v", err)
		}
		pids = append(pids, cmd.Process.Pid)
	}
	// Wait for all three to become zombies.
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for !isZombie(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("child %d never exited", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if n := reap(); n != 3 {
		t.Errorf("reap() = %d, want 3", n)
	}
	for _, pid := range pids {
		if _, err := os.Stat("/proc/" + itoa(pid)); err == nil {
			t.Errorf("child %d still exists after reap", pid)
		}
	}
	if n := reap(); n != 0 {
		t.Errorf("second reap() = %d, want 0", n)
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndex(s, ")")
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

func itoa(i int) string { return strconv.Itoa(i) }
