package systemd

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	got := strings.Join(Names(), ",")
	if got != "node-agent.service,vcluster-standalone.service" {
		t.Fatalf("Names() = %q", got)
	}
}

func TestUnitLookup(t *testing.T) {
	for _, name := range []string{"vcluster-standalone", "vcluster-standalone.service", "node-agent", "node-agent.service"} {
		b, err := Unit(name)
		if err != nil {
			t.Fatalf("Unit(%q): %v", name, err)
		}
		if !bytes.Contains(b, []byte("[Service]")) {
			t.Fatalf("Unit(%q) has no [Service] section", name)
		}
	}
	for _, name := range []string{"", "nope", "../units.go", "units.go"} {
		if _, err := Unit(name); err == nil {
			t.Fatalf("Unit(%q) succeeded, want error", name)
		} else if strings.Contains(err.Error(), "\n") {
			t.Fatalf("Unit(%q) error spans lines: %q", name, err)
		}
	}
}

// directives parses the [Service] and [Unit] keys of a unit file. Repeated
// keys keep every value.
func directives(t *testing.T, text []byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("malformed line %q", line)
		}
		out[k] = append(out[k], v)
	}
	return out
}

func TestUnitsHaveRequiredSettings(t *testing.T) {
	want := map[string]string{
		"Type":                  "notify",
		"Delegate":              "yes",
		"KillMode":              "process",
		"Restart":               "always",
		"LimitNOFILE":           "1048576",
		"TasksMax":              "infinity",
		"After":                 "network-online.target",
		"Wants":                 "network-online.target",
		"WantedBy":              "multi-user.target",
		"StartLimitIntervalSec": "0",
	}
	for _, name := range Names() {
		b, _ := Unit(name)
		d := directives(t, b)
		for k, v := range want {
			if len(d[k]) != 1 || d[k][0] != v {
				t.Errorf("%s: %s = %q, want %q", name, k, d[k], v)
			}
		}
		env := d["EnvironmentFile"]
		if len(env) != 1 || !strings.HasPrefix(env[0], "-/etc/") {
			t.Errorf("%s: EnvironmentFile = %q, want one optional file under /etc", name, env)
		}
		lower := strings.ToLower(string(b))
		for _, secret := range []string{"token=", "--token", "password"} {
			if strings.Contains(lower, secret) {
				t.Errorf("%s: unit text contains %q; secrets belong in the EnvironmentFile", name, secret)
			}
		}
		if len(d["ExecStart"]) != 1 || !strings.HasPrefix(d["ExecStart"][0], "/usr/local/bin/") {
			t.Errorf("%s: ExecStart = %q", name, d["ExecStart"])
		}
	}
}
