package joinnode

import (
	"os/exec"
	"strings"
	"testing"
)

// TestTakeEnvHidesTheTokenFromChildren: after TakeEnv a child process's
// environment no longer holds the variable.
func TestTakeEnvHidesTheTokenFromChildren(t *testing.T) {
	t.Setenv("NODE_AGENT_TOKEN", "abcdef.0123456789abcdef")
	if got := TakeEnv("NODE_AGENT_TOKEN"); got != "abcdef.0123456789abcdef" {
		t.Fatalf("TakeEnv = %q", got)
	}
	out, err := exec.Command("env").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "0123456789abcdef") || strings.Contains(string(out), "NODE_AGENT_TOKEN") {
		t.Fatalf("a child still sees the token:\n%s", out)
	}
	if got := TakeEnv("NODE_AGENT_TOKEN"); got != "" {
		t.Fatalf("second TakeEnv = %q, want empty", got)
	}
}
