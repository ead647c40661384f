package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// These cases fail while parsing flags, before any check or change to the
// machine, so they are safe anywhere. test/e2e covers the rest inside lab nodes.
func TestInstallScriptFlagErrors(t *testing.T) {
	sum := strings.Repeat("0123456789abcdef", 4)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "install.sh: error: unknown flag '--no-such-flag' (see install.sh --help)"},
		{[]string{"extra"}, "install.sh: error: unknown flag 'extra' (see install.sh --help)"},
		{[]string{"--binary-dir"}, "install.sh: error: flag --binary-dir needs a value (see install.sh --help)"},
		{[]string{"--timeout=5"}, "install.sh: error: write flags as '--flag value', not '--timeout=5' (see install.sh --help)"},
		{[]string{"--timeout", "5s"}, "install.sh: error: --timeout must be a number of seconds, got '5s'"},
		// A downloaded binary runs as root: https, and a pin or a checksum.
		{[]string{"--url", "http://192.0.2.10:6444/bin", "--pinned-pubkey", "sha256//AAA="}, "install.sh: error: --url must be an https:// URL, got 'http://192.0.2.10:6444/bin'"},
		{[]string{"--url", "ftp://192.0.2.10/bin", "--sha256", sum}, "install.sh: error: --url must be an https:// URL, got 'ftp://192.0.2.10/bin'"},
		{[]string{"--url", "192.0.2.10/bin", "--sha256", sum}, "install.sh: error: --url must be an https:// URL, got '192.0.2.10/bin'"},
		{[]string{"--url", "https://192.0.2.10:6444/bin"}, "install.sh: error: --url needs --pinned-pubkey PIN or --sha256 HEX: a downloaded binary runs as root and must be checked"},
		{[]string{"--url", "https://releases.example.com/v1", "--sha256", "abc"}, "install.sh: error: --sha256 must be 64 lowercase hex digits (as sha256sum prints), got 'abc'"},
		{[]string{"--url", "https://releases.example.com/v1", "--sha256", strings.ToUpper(sum)}, "install.sh: error: --sha256 must be 64 lowercase hex digits (as sha256sum prints), got '" + strings.ToUpper(sum) + "'"},
		{[]string{"--sha256", sum}, "install.sh: error: --sha256 and --pinned-pubkey check what --url downloads; give --url URL too"},
		// The config of a restore is the snapshot's.
		{[]string{"--restore", "/no/such.snap"}, "install.sh: error: --restore: no snapshot file /no/such.snap"},
		{[]string{"--restore", "install.sh", "--advertise-address", "192.0.2.10"}, "install.sh: error: --restore takes the config from the snapshot; drop --config, --advertise-address, --tls-san and --data-dir"},
		{[]string{"--restore", "install.sh", "--join", "https://192.0.2.10:6443"}, "install.sh: error: --restore installs a control plane; it does not go with --join or --uninstall"},
	}
	for _, c := range cases {
		cmd := exec.Command("sh", append([]string{"install.sh"}, c.args...)...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Errorf("%v: err = %v, want exit 1", c.args, err)
		}
		if got := stderr.String(); got != c.want+"\n" {
			t.Errorf("%v: stderr = %q, want the one line %q", c.args, got, c.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("%v: stdout = %q, want nothing", c.args, stdout.String())
		}
	}
}

// TestInstallScriptKeepsTheTokenFromChildren: the one-line join sets
// VCS_TOKEN for install.sh; no process install.sh starts may inherit it (nor
// the value through a TOKEN or NODE_AGENT_TOKEN the caller exported). The
// first child, id in the root check, is a fake that records its environment
// and arguments and says "not root", so nothing else runs.
func TestInstallScriptKeepsTheTokenFromChildren(t *testing.T) {
	bin := t.TempDir()
	record := filepath.Join(t.TempDir(), "id.env")
	fake := "#!/bin/sh\n{ env; echo \"ARGV: $*\"; } >>" + record + "\necho 1000\n"
	if err := os.WriteFile(filepath.Join(bin, "id"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	const secret = "0123456789abcdef"
	for _, c := range []struct {
		name string
		env  []string
		args []string
	}{
		{"VCS_TOKEN", []string{"VCS_TOKEN=abcdef." + secret}, nil},
		{"VCS_TOKEN and an exported TOKEN", []string{"VCS_TOKEN=abcdef." + secret, "TOKEN=caller", "NODE_AGENT_TOKEN=abcdef." + secret}, nil},
		{"--token and an exported TOKEN", []string{"TOKEN=caller"}, []string{"--token", "abcdef." + secret}},
	} {
		os.Remove(record)
		cmd := exec.Command("sh", append([]string{"install.sh", "--join", "https://192.0.2.10:6443", "--ca-cert-hash", "sha256:" + strings.Repeat("a", 64)}, c.args...)...)
		cmd.Env = append([]string{"PATH=" + bin + ":" + os.Getenv("PATH")}, c.env...)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "must run as root") {
			t.Fatalf("%s: %v %s; want the root check to stop it", c.name, err, out)
		}
		seen, err := os.ReadFile(record)
		if err != nil {
			t.Fatalf("%s: the fake id never ran: %v", c.name, err)
		}
		if strings.Contains(string(seen), secret) {
			t.Errorf("%s: a child of install.sh got the token:\n%s", c.name, seen)
		}
	}
}

func TestInstallScriptHelp(t *testing.T) {
	out, err := exec.Command("sh", "install.sh", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v", err)
	}
	for _, want := range []string{"Usage:", "--join URL", "--uninstall", "Examples:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--help does not mention %q", want)
		}
	}
}

// Every shell script of the install path parses with a POSIX shell, and with
// shellcheck when it is installed.
func TestScriptsParse(t *testing.T) {
	for _, f := range []string{"install.sh", "../test/vm/install-deps.sh", "../test/vm/lab-node-setup"} {
		if out, err := exec.Command("sh", "-n", f).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", f, err, out)
		}
	}
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Log("shellcheck not installed; skipped")
		return
	}
	if _, err := os.Stat("../test/vm/lab"); err == nil {
		if out, err := exec.Command("shellcheck", "-S", "warning", "../test/vm/lab", "../test/vm/qemu.sh").CombinedOutput(); err != nil {
			t.Errorf("shellcheck: %s", out)
		}
	}
	if out, err := exec.Command("shellcheck", "-S", "warning", "-s", "sh", "install.sh", "../test/vm/install-deps.sh", "../test/vm/lab-node-setup").CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %s", out)
	}
}
