package packaging

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// These cases fail while parsing flags, before any check or change to the
// machine, so they are safe anywhere. test/e2e covers the rest inside lab nodes.
func TestInstallScriptFlagErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "install.sh: error: unknown flag '--no-such-flag' (see install.sh --help)"},
		{[]string{"extra"}, "install.sh: error: unknown flag 'extra' (see install.sh --help)"},
		{[]string{"--binary-dir"}, "install.sh: error: flag --binary-dir needs a value (see install.sh --help)"},
		{[]string{"--timeout=5"}, "install.sh: error: write flags as '--flag value', not '--timeout=5' (see install.sh --help)"},
		{[]string{"--timeout", "5s"}, "install.sh: error: --timeout must be a number of seconds, got '5s'"},
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
