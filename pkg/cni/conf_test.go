package cni

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteConfList(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net.d")
	c := NetConf{MTU: 1450, Subnet: "10.244.1.0/24", IPAMDir: "/var/lib/node-agent/cni/ipam"}
	if err := WriteConfList(dir, c); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "10-vcs.conflist")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got["cniVersion"] != "1.1.0" || got["name"] != "vcs" {
		t.Fatalf("header = %v", got)
	}
	p := got["plugins"].([]any)[0].(map[string]any)
	if p["type"] != "vcs-cni" || p["bridge"] != "vcs0" || p["mtu"] != float64(1450) ||
		p["subnet"] != "10.244.1.0/24" || p["ipamDir"] != "/var/lib/node-agent/cni/ipam" {
		t.Fatalf("plugin = %v", p)
	}
	if caps, _ := p["capabilities"].(map[string]any); caps["portMappings"] != true {
		t.Fatalf("capabilities = %v", p["capabilities"])
	}
	// The written entry parses back as the plugin's own config.
	entry, _ := json.Marshal(p)
	_, nw, err := parseConf(entry)
	if err != nil || nw.gateway.String() != "10.244.1.1/24" || nw.mtu != 1450 {
		t.Fatalf("parse back: %v %+v", err, nw)
	}

	// Same content: the file is not rewritten.
	old := time.Unix(1000, 0)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if err := WriteConfList(dir, c); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); !st.ModTime().Equal(old) {
		t.Fatal("unchanged config was rewritten")
	}
	// Changed content: rewritten, and no temp files left behind.
	c.Subnet = "10.244.2.0/24"
	if err := WriteConfList(dir, c); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	if !strings.Contains(string(data), "10.244.2.0/24") {
		t.Fatalf("not rewritten: %s", data)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("dir holds %d entries, want 1", len(entries))
	}
}

func TestConfValidation(t *testing.T) {
	for _, tc := range []struct {
		c    NetConf
		want string
	}{
		{NetConf{IPAMDir: "/x"}, "subnet is required"},
		{NetConf{Subnet: "10.244.1.0", IPAMDir: "/x"}, `invalid subnet "10.244.1.0"`},
		{NetConf{Subnet: "fd00::/64", IPAMDir: "/x"}, `invalid subnet "fd00::/64"`},
		{NetConf{Subnet: "10.244.1.0/31", IPAMDir: "/x"}, "prefix length"},
		{NetConf{Subnet: "10.244.1.0/24", IPAMDir: "rel"}, `invalid ipamDir "rel"`},
		{NetConf{Subnet: "10.244.1.0/24", IPAMDir: "/x", MTU: 100}, "invalid mtu 100"},
		{NetConf{Subnet: "10.244.1.0/24", IPAMDir: "/x", Bridge: "a-very-long-bridge-name"}, "invalid bridge"},
	} {
		err := WriteConfList(t.TempDir(), tc.c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.c, err, tc.want)
		}
	}
	// A host-bits subnet is normalised; defaults apply.
	_, nw, err := parseConf([]byte(`{"cniVersion":"1.1.0","name":"vcs","type":"vcs-cni","subnet":"10.244.1.7/24","ipamDir":"/x"}`))
	if err != nil || nw.subnet.String() != "10.244.1.0/24" || nw.bridge != "vcs0" || nw.mtu != 1500 {
		t.Fatalf("parse: %v %+v", err, nw)
	}
	if _, _, err := parseConf([]byte(`{`)); err == nil || !strings.HasPrefix(err.Error(), "failed to parse network configuration") {
		t.Fatalf("bad json: %v", err)
	}
}
