package cni

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// iptables layout (nat table), every chain prefixed "VCS-":
//
//	PREROUTING  -m addrtype --dst-type LOCAL -j VCS-HOSTPORTS
//	OUTPUT      -m addrtype --dst-type LOCAL -j VCS-HOSTPORTS
//	POSTROUTING -j VCS-HOSTPORTS-MASQ
//	VCS-HOSTPORTS       -m comment --comment <id>/<ifname> -j VCS-HP-<hash>   (one per pod)
//	VCS-HP-<hash>       mark for masquerade when the source is a pod or loopback, then DNAT
//	VCS-HOSTPORTS-MASQ  -m mark --mark 0x2000/0x2000 -j MASQUERADE
const (
	natTable          = "nat"
	hostportsChain    = "VCS-HOSTPORTS"
	hostportsMasq     = "VCS-HOSTPORTS-MASQ"
	podChainPrefix    = "VCS-HP-"
	hostportMasqMark  = "0x2000/0x2000"
	podChainHashChars = 16
)

var (
	localDstJump = []string{"-m", "addrtype", "--dst-type", "LOCAL", "-j", hostportsChain}
	masqJump     = []string{"-j", hostportsMasq}
	commentSafe  = regexp.MustCompile(`[^A-Za-z0-9_./:-]`)
)

// podChainName is VCS-HP-<16 hex of the attachment hash>.
func podChainName(id, ifname string) string {
	return podChainPrefix + strings.ToUpper(attachmentHash(id, ifname)[:podChainHashChars])
}

// newIPTables returns an IPv4 iptables handle, or nil when no iptables binary
// is installed (then there is nothing of ours to clean up either).
func newIPTables() (*iptables.IPTables, error) {
	ipt, err := iptables.New()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("failed to use iptables: %w", err)
	}
	return ipt, nil
}

// hostportRules turns port mappings into the rules of a pod chain.
func hostportRules(maps []PortMapping, podIP net.IP, subnet *net.IPNet) ([][]string, error) {
	var rules [][]string
	for _, m := range maps {
		proto := strings.ToLower(m.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" && proto != "sctp" {
			return nil, fmt.Errorf("invalid hostPort protocol %q: tcp, udp or sctp is allowed", m.Protocol)
		}
		if m.HostPort <= 0 || m.HostPort > 65535 || m.ContainerPort <= 0 || m.ContainerPort > 65535 {
			return nil, fmt.Errorf("invalid port mapping %d->%d: ports between 1 and 65535 are allowed", m.HostPort, m.ContainerPort)
		}
		match := []string{"-p", proto, "-m", proto, "--dport", strconv.Itoa(m.HostPort)}
		if m.HostIP != "" {
			hip := net.ParseIP(m.HostIP)
			if hip == nil {
				return nil, fmt.Errorf("invalid hostIP %q in port mapping", m.HostIP)
			}
			if hip.To4() == nil {
				continue // IPv6 host IPs are not served by this IPv4-only plugin
			}
			if !hip.IsUnspecified() {
				match = append([]string{"-d", hip.String() + "/32"}, match...)
			}
		}
		mark := []string{"-j", "MARK", "--set-xmark", hostportMasqMark}
		rules = append(rules,
			concat([]string{"-s", subnet.String()}, match, mark),
			concat([]string{"-s", "127.0.0.0/8"}, match, mark),
			concat(match, []string{"-j", "DNAT", "--to-destination", net.JoinHostPort(podIP.String(), strconv.Itoa(m.ContainerPort))}),
		)
	}
	return rules, nil
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// setupHostports installs (or replaces) the DNAT rules of one attachment.
func setupHostports(ipt *iptables.IPTables, id, ifname string, podIP net.IP, subnet *net.IPNet, maps []PortMapping) error {
	rules, err := hostportRules(maps, podIP, subnet)
	if err != nil {
		return err
	}
	if len(rules) == 0 {
		return nil
	}
	if ipt == nil {
		return errors.New("hostPort needs iptables, which is not installed")
	}
	if err := ensureHostportChains(ipt); err != nil {
		return err
	}
	chain := podChainName(id, ifname)
	if err := ipt.ClearChain(natTable, chain); err != nil {
		return fmt.Errorf("failed to create iptables chain %s: %w", chain, err)
	}
	for _, r := range rules {
		if err := ipt.Append(natTable, chain, r...); err != nil {
			return fmt.Errorf("failed to add hostPort rule to %s: %w", chain, err)
		}
	}
	comment := commentSafe.ReplaceAllString(id+"/"+ifname, "_")
	if len(comment) > 200 {
		comment = comment[:200]
	}
	if err := ipt.AppendUnique(natTable, hostportsChain, "-m", "comment", "--comment", comment, "-j", chain); err != nil {
		return fmt.Errorf("failed to add hostPort jump to %s: %w", chain, err)
	}
	return nil
}

// ensureHostportChains creates the shared chains and their jumps.
func ensureHostportChains(ipt *iptables.IPTables) error {
	for _, c := range []string{hostportsChain, hostportsMasq} {
		if err := ensureChain(ipt, c); err != nil {
			return err
		}
	}
	for _, j := range []struct {
		chain string
		rule  []string
	}{
		{"PREROUTING", localDstJump},
		{"OUTPUT", localDstJump},
		{"POSTROUTING", masqJump},
	} {
		if err := ipt.InsertUnique(natTable, j.chain, 1, j.rule...); err != nil {
			return fmt.Errorf("failed to add jump from %s: %w", j.chain, err)
		}
	}
	masq := []string{"-m", "mark", "--mark", hostportMasqMark, "-j", "MASQUERADE"}
	if err := ipt.AppendUnique(natTable, hostportsMasq, masq...); err != nil {
		return fmt.Errorf("failed to add masquerade rule to %s: %w", hostportsMasq, err)
	}
	return nil
}

// ensureChain creates chain unless it exists (another ADD may race us).
func ensureChain(ipt *iptables.IPTables, chain string) error {
	if ok, err := ipt.ChainExists(natTable, chain); err == nil && ok {
		return nil
	}
	if err := ipt.NewChain(natTable, chain); err != nil {
		if ok, _ := ipt.ChainExists(natTable, chain); ok {
			return nil
		}
		return fmt.Errorf("failed to create iptables chain %s: %w", chain, err)
	}
	return nil
}

// teardownPodChain removes one attachment's chain and jump; missing is success.
func teardownPodChain(ipt *iptables.IPTables, chain string) error {
	if ipt == nil {
		return nil
	}
	if ok, err := ipt.ChainExists(natTable, chain); err != nil || !ok {
		return err
	}
	return deletePodChains(ipt, []string{chain})
}

// teardownStaleChains removes every pod chain whose name keep rejects.
func teardownStaleChains(ipt *iptables.IPTables, keep func(chain string) bool) error {
	if ipt == nil {
		return nil
	}
	chains, err := ipt.ListChains(natTable)
	if err != nil {
		return fmt.Errorf("failed to list iptables chains: %w", err)
	}
	var victims []string
	for _, c := range chains {
		if strings.HasPrefix(c, podChainPrefix) && !keep(c) {
			victims = append(victims, c)
		}
	}
	return deletePodChains(ipt, victims)
}

// deletePodChains deletes the jumps to chains from VCS-HOSTPORTS, then the chains.
func deletePodChains(ipt *iptables.IPTables, chains []string) error {
	if len(chains) == 0 {
		return nil
	}
	victim := map[string]bool{}
	for _, c := range chains {
		victim[c] = true
	}
	var errs []error
	if ok, _ := ipt.ChainExists(natTable, hostportsChain); ok {
		rules, err := ipt.List(natTable, hostportsChain)
		if err != nil {
			return fmt.Errorf("failed to list %s: %w", hostportsChain, err)
		}
		for _, r := range rules {
			f := splitRule(r)
			if len(f) < 4 || f[0] != "-A" || !victim[jumpTarget(f)] {
				continue
			}
			if err := ipt.DeleteIfExists(natTable, hostportsChain, f[2:]...); err != nil {
				errs = append(errs, fmt.Errorf("failed to delete hostPort jump %q: %w", r, err))
			}
		}
	}
	for _, c := range chains {
		if err := ipt.ClearAndDeleteChain(natTable, c); err != nil {
			errs = append(errs, fmt.Errorf("failed to delete iptables chain %s: %w", c, err))
		}
	}
	return errors.Join(errs...)
}

// splitRule splits a rule in `iptables -S` form into arguments, undoing the
// double quotes iptables puts around comments.
func splitRule(rule string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(rule); i++ {
		ch := rule[i]
		switch {
		case ch == '\\' && inQuote && i+1 < len(rule):
			i++
			cur.WriteByte(rule[i])
		case ch == '"':
			inQuote, have = !inQuote, true
		case (ch == ' ' || ch == '\t') && !inQuote:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(ch)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// jumpTarget returns the -j argument of a rule in `iptables -S` form.
func jumpTarget(fields []string) string {
	for i := 0; i+1 < len(fields); i++ {
		if fields[i] == "-j" {
			return fields[i+1]
		}
	}
	return ""
}

// removeAllHostports deletes every hostPort chain and jump of the plugin.
func removeAllHostports(ipt *iptables.IPTables) error {
	if ipt == nil {
		return nil
	}
	return RemoveChains(ipt, natTable, func(c string) bool {
		return c == hostportsChain || c == hostportsMasq || strings.HasPrefix(c, podChainPrefix)
	})
}
