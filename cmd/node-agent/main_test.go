package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func execute(args ...string) (string, error) {
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestEveryCommandHasHelpAndExample(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Example == "" || c.Short == "" {
			t.Errorf("%s: needs Short and Example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			if sub.Name() != "help" {
				walk(sub)
			}
		}
	}
	walk(newRootCommand())
}

func TestUnitPrintsTheEmbeddedUnit(t *testing.T) {
	out, err := execute("unit", "node-agent")
	if err != nil || !strings.Contains(out, "ExecStart=/usr/local/bin/node-agent run") {
		t.Fatalf("unit: %v\n%s", err, out)
	}
	if _, err := execute("unit", "nope"); err == nil || !strings.Contains(err.Error(), "unknown unit") {
		t.Fatalf("unknown unit: %v", err)
	}
}

func TestJoinFlagErrors(t *testing.T) {
	t.Setenv(envToken, "")
	t.Setenv(envServer, "")
	t.Setenv(envConfig, t.TempDir()+"/config.yaml")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"join", "--server", "https://192.0.2.10:6443"}, "--token is required"},
		{[]string{"join", "--token", "abcdef.0123456789abcdef"}, "server: not set"},
		{[]string{"join", "--server", "http://192.0.2.10:6443", "--token", "abcdef.0123456789abcdef"}, `server: invalid value "http://192.0.2.10:6443"`},
		{[]string{"join", "--server", "https://192.0.2.10:6443", "--token", "abcdef.0123456789abcdef", "--node-name", "Bad_Name"}, `nodeName: invalid value "Bad_Name"`},
		{[]string{"join", "--server", "https://192.0.2.10:6443", "--token", "nope", "--ca-cert-hash", "sha256:" + strings.Repeat("0", 64)}, "malformed token"},
		{[]string{"join", "extra"}, "unknown command"},
	}
	for _, c := range cases {
		_, err := execute(c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: want one line containing %q, got %v", c.args, c.want, err)
		}
	}
}

func TestStatusArgsErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "--args", "kubelt"}, `unknown component "kubelt": one of kubelet, kube-proxy`},
		{[]string{"status", "kubelet"}, `unexpected argument "kubelet": a component name goes with --args`},
		{[]string{"status", "--args", "kubelet", "--config", t.TempDir() + "/none.yaml"}, "none.yaml"},
	} {
		_, err := execute(c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: want one line containing %q, got %v", c.args, c.want, err)
		}
	}
}
