package network

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"

	"github.com/coreos/go-iptables/iptables"
	"k8s.io/klog/v2"
)

// The iptables chains this package owns; nothing else of ours is touched.
const (
	// PostroutingChain (nat) masquerades pod traffic leaving the cluster.
	PostroutingChain = "VCS-POSTROUTING"
	// ForwardChain (filter) accepts forwarded pod traffic on hosts whose
	// FORWARD policy is DROP (Docker does that).
	ForwardChain = "VCS-FORWARD"
)

// jump is one rule in a built-in chain leading to ours.
type jump struct {
	table, builtin, chain string
	// insert puts the jump first; otherwise it is appended.
	insert bool
}

var jumps = []jump{
	// First, so no other masquerade rule sees pod-to-pod traffic before ours
	// returns it untouched.
	{"nat", "POSTROUTING", PostroutingChain, true},
	{"filter", "FORWARD", ForwardChain, false},
}

func (j jump) rule() []string {
	return []string{"-m", "comment", "--comment", "vcluster-standalone pod network", "-j", j.chain}
}

// masqueradeRules: pod traffic to pods and services keeps its source, the
// rest (except multicast) leaves with the node's address.
func masqueradeRules(cluster, service netip.Prefix, randomFully bool) [][]string {
	c := cluster.Masked().String()
	rules := [][]string{
		{"-s", c, "-d", c, "-m", "comment", "--comment", "pod to pod: no masquerade", "-j", "RETURN"},
	}
	if service.IsValid() {
		rules = append(rules, []string{"-s", c, "-d", service.Masked().String(), "-m", "comment", "--comment", "pod to service: no masquerade", "-j", "RETURN"})
	}
	masq := []string{"-s", c, "!", "-d", "224.0.0.0/4", "-m", "comment", "--comment", "pod leaving the cluster: masquerade", "-j", "MASQUERADE"}
	if randomFully {
		masq = append(masq, "--random-fully")
	}
	return append(rules, masq)
}

func forwardRules(cluster netip.Prefix) [][]string {
	c := cluster.Masked().String()
	return [][]string{
		{"-s", c, "-m", "comment", "--comment", "forward pod traffic", "-j", "ACCEPT"},
		{"-d", c, "-m", "comment", "--comment", "forward pod traffic", "-j", "ACCEPT"},
	}
}

func ensureMasquerade(ipt *iptables.IPTables, cluster, service netip.Prefix) error {
	if err := ensureChain(ipt, "nat", PostroutingChain, masqueradeRules(cluster, service, ipt.HasRandomFully())); err != nil {
		return err
	}
	return ensureJump(ipt, jumps[0])
}

func ensureForward(ipt *iptables.IPTables, cluster netip.Prefix) error {
	if err := ensureChain(ipt, "filter", ForwardChain, forwardRules(cluster)); err != nil {
		return err
	}
	return ensureJump(ipt, jumps[1])
}

// ensureChain makes chain hold exactly rules, in order. It rewrites the chain
// only when a rule is missing or there are others, so a restart over a
// correct chain changes nothing.
func ensureChain(ipt *iptables.IPTables, table, chain string, rules [][]string) error {
	exists, err := ipt.ChainExists(table, chain)
	if err != nil {
		return fmt.Errorf("failed to read iptables %s chain %s: %w", table, chain, err)
	}
	if exists {
		have, err := ipt.List(table, chain)
		if err != nil {
			return fmt.Errorf("failed to list iptables %s chain %s: %w", table, chain, err)
		}
		same := len(have) == len(rules)+1 // the first line is "-N chain"
		for i := 0; same && i < len(rules); i++ {
			same, err = ipt.Exists(table, chain, rules[i]...)
			if err != nil {
				return fmt.Errorf("failed to check iptables %s chain %s: %w", table, chain, err)
			}
		}
		if same {
			return nil
		}
		klog.InfoS("rewriting iptables chain", "table", table, "chain", chain)
	}
	// ClearChain creates the chain, or empties it.
	if err := ipt.ClearChain(table, chain); err != nil {
		return fmt.Errorf("failed to prepare iptables %s chain %s: %w", table, chain, err)
	}
	for _, r := range rules {
		if err := ipt.Append(table, chain, r...); err != nil {
			return fmt.Errorf("failed to add iptables rule to %s chain %s: %w", table, chain, err)
		}
	}
	return nil
}

func ensureJump(ipt *iptables.IPTables, j jump) error {
	ok, err := ipt.Exists(j.table, j.builtin, j.rule()...)
	if err != nil {
		return fmt.Errorf("failed to check the jump from %s %s to %s: %w", j.table, j.builtin, j.chain, err)
	}
	if ok {
		return nil
	}
	if j.insert {
		err = ipt.Insert(j.table, j.builtin, 1, j.rule()...)
	} else {
		err = ipt.Append(j.table, j.builtin, j.rule()...)
	}
	if err != nil {
		return fmt.Errorf("failed to add the jump from %s %s to %s: %w", j.table, j.builtin, j.chain, err)
	}
	return nil
}

// ipForwardFile is net.ipv4.ip_forward of the calling thread's network
// namespace.
const ipForwardFile = "/proc/sys/net/ipv4/ip_forward"

func enableIPForward() error {
	b, err := os.ReadFile(ipForwardFile)
	if err == nil && bytes.Equal(bytes.TrimSpace(b), []byte("1")) {
		return nil
	}
	if err := os.WriteFile(ipForwardFile, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("failed to enable IP forwarding (net.ipv4.ip_forward): %w", err)
	}
	klog.InfoS("enabled IP forwarding", "sysctl", "net.ipv4.ip_forward")
	return nil
}
