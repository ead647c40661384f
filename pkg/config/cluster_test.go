package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestClusterSettingsRoundTrip(t *testing.T) {
	c := DefaultControlPlane()
	data, err := MarshalClusterSettings(c.ClusterSettings())
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseClusterSettings(data)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if !reflect.DeepEqual(got, c.ClusterSettings()) {
		t.Fatalf("round trip: got %+v, want %+v", got, c.ClusterSettings())
	}
	if got.Backend != "vxlan" || got.VNI != 4242 || got.ClusterDNS != "10.96.0.10" {
		t.Fatalf("defaults: %+v", got)
	}
	np := got.NetworkPolicy
	if !np.Enabled || !np.PublicEgress || np.PublicEgressCIDR != "0.0.0.0/0" || !reflect.DeepEqual(np.DeniedEgress, []string{"169.254.169.254/32"}) {
		t.Fatalf("network policy defaults: %+v", np)
	}
}

func TestClusterSettingsOfAnOlderControlPlaneDoNotEnforce(t *testing.T) {
	got, err := ParseClusterSettings("podCIDR: 10.244.0.0/16\nserviceCIDR: 10.96.0.0/12\nclusterDNS: 10.96.0.10\nclusterDomain: cluster.local\nbackend: vxlan\nvni: 1\n")
	if err != nil {
		t.Fatal(err)
	}
	if got.NetworkPolicy.Enabled {
		t.Fatalf("settings without networkPolicy must not enforce: %+v", got.NetworkPolicy)
	}
}

func TestClusterSettingsRefusesWhatANodeCannotUse(t *testing.T) {
	for _, tc := range []struct{ data, want string }{
		{"podCIDR: 10.244.0.0/16\nserviceCIDR: 10.96.0.0/12\nclusterDNS: 10.96.0.10\nclusterDomain: cluster.local\nbackend: ipip\nvni: 1\n", `network.backend: invalid value "ipip": must be vxlan or host-gw`},
		{"podCIDR: 10.244.0.0/16\nserviceCIDR: 10.96.0.0/12\nclusterDNS: 10.96.0.10\nclusterDomain: cluster.local\nbackend: vxlan\nvni: 0\n", "network.vni: invalid value 0"},
		{"podCIDR: 10.244.0.0/16\nunknown: 1\n", "unknown"},
		{"podCIDR: 10.244.0.0/16\nserviceCIDR: 10.96.0.0/12\nclusterDNS: 10.96.0.10\nclusterDomain: cluster.local\nbackend: vxlan\nvni: 1\nnetworkPolicy: {enabled: true, publicEgress: true, publicEgressCIDR: 0.0.0.0/0, deniedEgress: [169.254.169.254]}\n",
			`policies.networkPolicy.workload.publicEgress.except[0]: invalid value "169.254.169.254": must be an IPv4 CIDR`},
	} {
		_, err := ParseClusterSettings(tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "kube-system/node-agent-config: ") {
			t.Errorf("ParseClusterSettings(%q) = %v, want error containing %q", tc.data, err, tc.want)
		}
	}
}

func TestControlPlaneJoinsNodeByDefault(t *testing.T) {
	c := DefaultControlPlane()
	if !c.JoinsNode() {
		t.Fatal("joinNode should default to true")
	}
	off := false
	c.JoinNode = &off
	if c.JoinsNode() {
		t.Fatal("joinNode: false must be honoured")
	}
}
