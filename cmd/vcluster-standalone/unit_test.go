package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestUnitCommand(t *testing.T) {
	run := func(args ...string) (string, error) {
		cmd := newUnitCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(args)
		err := cmd.Execute()
		return out.String(), err
	}
	out, err := run()
	if err != nil || !strings.Contains(out, "vcluster-standalone.service\n") || !strings.Contains(out, "node-agent.service\n") {
		t.Fatalf("list: %q, %v", out, err)
	}
	out, err = run("vcluster-standalone")
	if err != nil || !strings.Contains(out, "ExecStart=/usr/local/bin/vcluster-standalone start") {
		t.Fatalf("print: %q, %v", out, err)
	}
	if _, err := run("nope"); err == nil || !strings.Contains(err.Error(), "unknown unit") {
		t.Fatalf("unknown unit: %v", err)
	}
}
