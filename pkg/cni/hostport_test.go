package cni

import (
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

const portMaps = `,"runtimeConfig":{"portMappings":[` +
	`{"hostPort":30080,"containerPort":8080,"protocol":"tcp"},` +
	`{"hostPort":30053,"containerPort":53,"protocol":"udp","hostIP":"10.244.1.1"}]}`

func natRules(t *testing.T, l *lab) string {
	t.Helper()
	return sh(t, l.host, "iptables", "-w", "-t", "nat", "-S")
}

func TestHostPort(t *testing.T) {
	l := newLab(t)
	if err := l.in(func() error { lo, _ := netlink.LinkByName("lo"); return netlink.LinkSetUp(lo) }); err != nil {
		t.Fatal(err)
	}
	pod1, pod2 := newNS(t), newNS(t)
	serve(t, pod1, 8080)
	a1 := l.args("c1", pod1, portMaps)
	l.add(t, a1)
	l.add(t, a1) // idempotent: rules are not duplicated
	l.add(t, l.args("c2", pod2, ""))

	chain := podChainName("c1", "eth0")
	rules := natRules(t, l)
	for _, want := range []string{
		"-A PREROUTING -m addrtype --dst-type LOCAL -j VCS-HOSTPORTS",
		"-A OUTPUT -m addrtype --dst-type LOCAL -j VCS-HOSTPORTS",
		"-A POSTROUTING -j VCS-HOSTPORTS-MASQ",
		"-A VCS-HOSTPORTS -m comment --comment \"c1/eth0\" -j " + chain,
		"-A " + chain + " -p tcp -m tcp --dport 30080 -j DNAT --to-destination 10.244.1.2:8080",
		"-A " + chain + " -d 10.244.1.1/32 -p udp -m udp --dport 30053 -j DNAT --to-destination 10.244.1.2:53",
		"-A " + chain + " -s 10.244.1.0/24 -p tcp -m tcp --dport 30080 -j MARK --set-xmark 0x2000/0x2000",
		"-A VCS-HOSTPORTS-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE",
	} {
		if n := strings.Count(rules, want+"\n"); n != 1 {
			t.Errorf("rule %q present %d times, want once", want, n)
		}
	}
	if t.Failed() {
		t.Fatalf("nat table:\n%s", rules)
	}

	// The hostPort answers from the host (its own address and 127.0.0.1),
	// from another pod, and from the pod itself (hairpin).
	for _, c := range []struct {
		name string
		from ns.NetNS
		addr string
	}{
		{"host", l.host, "10.244.1.1:30080"},
		{"host loopback", l.host, "127.0.0.1:30080"},
		{"other pod", pod2, "10.244.1.1:30080"},
		{"hairpin", pod1, "10.244.1.1:30080"},
	} {
		if err := dial(c.from, c.addr); err != nil {
			t.Errorf("%s -> %s: %v", c.name, c.addr, err)
		}
	}

	// DEL removes the pod's chain and jump; the hostPort no longer answers.
	l.del(t, a1)
	rules = natRules(t, l)
	if strings.Contains(rules, chain) || strings.Contains(rules, "VCS-HP-") {
		t.Fatalf("hostPort rules left after DEL:\n%s", rules)
	}
	if err := dial(l.host, "10.244.1.1:30080"); err == nil {
		t.Fatal("hostPort still answers after DEL")
	}
	l.del(t, a1)
}

func TestSplitRule(t *testing.T) {
	got := splitRule(`-A VCS-HOSTPORTS -m comment --comment "a b/\"c" -j VCS-HP-1`)
	want := []string{"-A", "VCS-HOSTPORTS", "-m", "comment", "--comment", `a b/"c`, "-j", "VCS-HP-1"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("splitRule = %q, want %q", got, want)
	}
}

func TestHostPortRulesValidation(t *testing.T) {
	_, subnet, _ := netParse("10.244.1.0/24")
	ip := subnet.IP
	if _, err := hostportRules([]PortMapping{{HostPort: 80, ContainerPort: 80, Protocol: "icmp"}}, ip, subnet); err == nil ||
		!strings.Contains(err.Error(), `invalid hostPort protocol "icmp"`) {
		t.Fatalf("protocol: %v", err)
	}
	if _, err := hostportRules([]PortMapping{{HostPort: 0, ContainerPort: 80}}, ip, subnet); err == nil {
		t.Fatal("port 0 accepted")
	}
	if _, err := hostportRules([]PortMapping{{HostPort: 80, ContainerPort: 80, HostIP: "nope"}}, ip, subnet); err == nil {
		t.Fatal("bad hostIP accepted")
	}
	r, err := hostportRules([]PortMapping{{HostPort: 80, ContainerPort: 80, HostIP: "::1"}, {HostPort: 81, ContainerPort: 80, HostIP: "0.0.0.0", Protocol: "UDP"}}, ip, subnet)
	if err != nil || len(r) != 3 || strings.Contains(strings.Join(r[2], " "), "-d ") || r[2][1] != "udp" {
		t.Fatalf("rules = %v, %v", r, err)
	}
}
