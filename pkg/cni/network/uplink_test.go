package network

import (
	"strings"
	"testing"
)

func TestFindUplink(t *testing.T) {
	requireRoot(t)
	l := newLab(t, 1500)
	ns := l.nodes[0]
	run(t, "ip", "-n", ns, "link", "set", "eth0", "mtu", "1400")
	run(t, "ip", "-n", ns, "addr", "add", "10.123.201.1/24", "dev", "vcs0")
	run(t, "ip", "-n", ns, "route", "add", "default", "via", nodeIPs[1], "dev", "eth0")
	for _, tc := range []struct {
		iface, nodeIP, wantName, wantIP, wantErr string
	}{
		{iface: "eth0", wantName: "eth0", wantIP: nodeIPs[0]},
		{iface: "vcs0", nodeIP: "10.123.201.1", wantName: "vcs0", wantIP: "10.123.201.1"},
		{nodeIP: "10.123.201.1", wantName: "vcs0", wantIP: "10.123.201.1"},
		{wantName: "eth0", wantIP: nodeIPs[0]},
		{iface: "nope0", wantErr: `--iface "nope0"`},
		{nodeIP: "10.9.9.9", wantErr: "--node-ip 10.9.9.9"},
		{nodeIP: "fe80::1", wantErr: "--node-ip"},
	} {
		var up Uplink
		err := inNS(t, ns, func() (err error) {
			up, err = FindUplink(tc.iface, tc.nodeIP)
			return err
		})
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("FindUplink(%q, %q) error = %v, want one naming %s", tc.iface, tc.nodeIP, err, tc.wantErr)
			}
			continue
		}
		if err != nil || up.Name != tc.wantName || up.IP.String() != tc.wantIP || up.Index <= 0 ||
			(up.Name == "eth0" && up.MTU != 1400) {
			t.Errorf("FindUplink(%q, %q) = %+v, %v; want %s %s", tc.iface, tc.nodeIP, up, err, tc.wantName, tc.wantIP)
		}
	}
	run(t, "ip", "-n", ns, "route", "del", "default")
	err := inNS(t, ns, func() error { _, err := FindUplink("", ""); return err })
	if err == nil || !strings.Contains(err.Error(), "--iface") {
		t.Errorf("without a default route: %v, want an error naming --iface", err)
	}
}
