package controlplane

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
)

// What finish refuses for, per node report.
func TestNodeUsesOldCA(t *testing.T) {
	now := time.Now()
	report := func(r join.TrustReport) string {
		b, _ := json.Marshal(r)
		return string(b)
	}
	for _, tc := range []struct {
		name, value, want string
	}{
		{"no report", "", "has not reported"},
		{"garbage", "{", "not readable"},
		{"old trust only", report(join.TrustReport{Trusted: []string{"old"}, KubeletClientCA: "old"}), "does not trust the new CA"},
		{"kubelet started before the bundle", report(join.TrustReport{Trusted: []string{"new", "old"}, KubeletTrusted: []string{"old"}, KubeletClientCA: "new"}), "restart node-agent"},
		{"old kubelet cert", report(join.TrustReport{Trusted: []string{"new", "old"}, KubeletTrusted: []string{"new", "old"}, KubeletClientCA: "old"}), "kubelet client certificate is signed by the old CA"},
		{"bundle too fresh", report(join.TrustReport{Trusted: []string{"new", "old"}, KubeletTrusted: []string{"new", "old"}, KubeletClientCA: "new", Since: now.Add(-time.Minute)}), "re-read the bundle by"},
		{"bundle read long ago", report(join.TrustReport{Trusted: []string{"new", "old"}, KubeletTrusted: []string{"new", "old"}, KubeletClientCA: "new", Since: now.Add(-CAReloadPeriod - time.Second)}), ""},
		{"read at node-agent start", report(join.TrustReport{Trusted: []string{"new", "old"}, KubeletTrusted: []string{"new", "old"}, KubeletClientCA: "new"}), ""},
	} {
		got := nodeUsesOldCA(tc.value, "new", "old", now)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
