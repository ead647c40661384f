package integration

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBadInput: each mistake gives one line on stderr naming what was wrong,
// a non-zero exit, no stack trace, and nothing written to the data dir.
func TestBadInput(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() }) // after the parallel subtests, not before
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)

	cases := []struct {
		name   string
		args   []string
		config string // written to config.yaml and passed with --config
		want   string
	}{
		{name: "invalid CIDR", args: []string{"--pod-cidr", "10.244.0.0/33"}, want: `error: network.podCIDR: invalid value "10.244.0.0/33"`},
		{name: "overlapping CIDRs", args: []string{"--pod-cidr", "10.96.0.0/16"}, want: `error: network.serviceCIDR: invalid value "10.96.0.0/12": overlaps network.podCIDR 10.96.0.0/16`},
		{name: "unknown config field", config: "apiVersion: vcluster-standalone.io/v1alpha1\nkind: ControlPlaneConfig\npodCIDR: 10.1.0.0/16\n", want: `unknown field "podCIDR"`},
		{name: "API port in use", args: []string{"--api-port", busyPort}, want: "error: port " + busyPort + " on 127.0.0.1 is not available"},
		{name: "unwritable data dir", args: []string{"--data-dir", "UNDER_FILE"}, want: "cannot be created (not a directory): choose another with --data-dir"},
		{name: "unknown flag", args: []string{"--no-such-flag"}, want: "error: unknown flag: --no-such-flag"},
		{name: "unknown feature gate", args: []string{"--feature-gates", "NoSuchGate=true"}, want: "error: featureGates: unrecognized feature gate: NoSuchGate"},
		// start makes the data dir 0700 and uninstall removes it.
		{name: "data dir /", args: []string{"--data-dir", "/"}, want: `error: dataDir: invalid value "/": must be a directory of its own such as /var/lib/<name>`},
		{name: "data dir /var", args: []string{"--data-dir", "/var"}, want: `error: dataDir: invalid value "/var": must be a directory of its own`},
		{name: "data dir /usr/", args: []string{"--data-dir", "/usr/"}, want: `error: dataDir: invalid value "/usr/": must be a directory of its own`},
		{name: "local node data dir /etc", args: []string{"--local-node-data-dir", "/etc"}, want: `error: localNode.dataDir: invalid value "/etc": must be a directory of its own`},
		{name: "bad pod security standard", args: []string{"--pod-security-standard", "strict"}, want: `error: policies.podSecurityStandard: invalid value "strict": must be one of privileged, baseline, restricted`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			dataDir := filepath.Join(dir, "data")
			ports := freePorts(t, 6)
			args := []string{"start", "--data-dir", dataDir, "--admin-kubeconfig", filepath.Join(dir, "admin.kubeconfig"),
				"--bind-address", "127.0.0.1", "--api-port", strconv.Itoa(ports[0]),
				"--etcd-client-port", strconv.Itoa(ports[1]), "--etcd-peer-port", strconv.Itoa(ports[2]),
				"--controller-manager-port", strconv.Itoa(ports[3]), "--scheduler-port", strconv.Itoa(ports[4]),
				"--join-port", strconv.Itoa(ports[5]), "--join-node=false"} // never a node in /etc
			if tc.config != "" {
				writeFile(t, filepath.Join(dir, "config.yaml"), tc.config)
				args = append(args, "--config", filepath.Join(dir, "config.yaml"))
			}
			for _, a := range tc.args {
				if a == "UNDER_FILE" {
					writeFile(t, filepath.Join(dir, "file"), "x")
					dataDir = filepath.Join(dir, "file", "data")
					a = dataDir
				}
				args = append(args, a)
			}
			stderr, code := runFailing(t, args...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if code == 0 {
				t.Fatalf("exit 0, want failure")
			}
			if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("stderr must be one line containing %q, got:\n%s", tc.want, stderr)
			}
			if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
				t.Fatalf("stack trace on bad input:\n%s", stderr)
			}
			if _, err := os.Stat(dataDir); err == nil {
				t.Fatalf("data dir %s was created on bad input", dataDir)
			}
		})
	}
}

// TestComponentFailureStopsTheProcess: when a component fails after others
// started, the process stops everything and exits non-zero, naming it.
func TestComponentFailureStopsTheProcess(t *testing.T) {
	cp := newControlPlane(t, "--kube-scheduler-arg", "no-such-flag=1")
	if err := cp.startNoWait(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cp.exited:
		if cp.exitErr == nil {
			t.Fatal("exit 0 after a component failed")
		}
		log := cp.logTail()
		if !strings.Contains(log, "error: failed to start kube-scheduler: invalid kube-scheduler argument: unknown flag: --no-such-flag") {
			t.Fatalf("error does not name the component and flag:\n%s", log)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("still running after a component failed\n%s", cp.logTail())
	}
	for _, state := range drain(cp.notify) {
		if state == "READY=1" {
			t.Fatal("reported READY=1 although a component failed")
		}
	}
}

func drain(n *notifySocket) []string {
	var states []string
	for {
		select {
		case s := <-n.states:
			states = append(states, s)
		case <-time.After(300 * time.Millisecond):
			return states
		}
	}
}

func runFailing(t *testing.T, args ...string) (stderr string, exitCode int) {
	t.Helper()
	// A mistake must be refused at once; a minute means it was not.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var errOut strings.Builder
	cmd.Stderr = &errOut
	err := cmd.Run()
	if exitErr, ok := err.(*exec.ExitError); ok {
		return errOut.String(), exitErr.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return errOut.String(), 0
}
