package main

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const controls = `controls:
groups:
  - id: 1.2
    checks:
      - id: 1.2.1
        audit: "/bin/ps -ef | grep $apiserverbin | grep -v grep"
        tests:
          test_items:
            - flag: "--anonymous-auth"
              compare: {op: eq, value: no}
        remediation: edit the pod manifest
      - id: 1.2.2
        type: manual
        audit: "/bin/ps -ef | grep $apiserverbin | grep -v grep"
`

func overrides(t *testing.T, text string) *Overrides {
	t.Helper()
	var ov Overrides
	if err := yaml.Unmarshal([]byte(text), &ov); err != nil {
		t.Fatal(err)
	}
	return &ov
}

func TestTransformRewritesAuditsAndAppliesOverrides(t *testing.T) {
	ov := overrides(t, `
replace:
- {from: "/bin/ps -ef | grep $apiserverbin | grep -v grep", to: "vcluster-standalone status --args kube-apiserver"}
checks:
  "1.2.2": {type: skip, reason: not here}
`)
	used := map[string]bool{}
	out, err := transform([]byte(controls), ov, used)
	if err != nil {
		t.Fatal(err)
	}
	got := string(out)
	for _, want := range []string{
		`audit: "vcluster-standalone status --args kube-apiserver"`,
		"value: no", // upstream's scalar text kept: kube-bench compares the string "no"
		"type: skip", "vcluster-standalone: not here", "remediation: edit the pod manifest",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "ps -ef") || !used["1.2.2"] {
		t.Errorf("ps left or override not used (%v):\n%s", used, got)
	}
}

func TestTransformRefusesAuditsThatStillReadPS(t *testing.T) {
	_, err := transform([]byte(controls), overrides(t, "checks: {}"), map[string]bool{})
	if err == nil || !strings.Contains(err.Error(), "audits still read ps") || !strings.Contains(err.Error(), "1.2.1, 1.2.2") {
		t.Errorf("got %v", err)
	}
}
