package node

import (
	"errors"
	"fmt"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// kubeChainPrefix names the chains the kubelet and kube-proxy create; on a
// node they are all node-agent's. kube-proxy's cleanup removes its own, not
// the kubelet's (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT).
const kubeChainPrefix = "KUBE-"

var builtinChains = map[string]bool{"INPUT": true, "OUTPUT": true, "FORWARD": true, "PREROUTING": true, "POSTROUTING": true}

// removeKubeChains deletes, in IPv4 and IPv6 and every table, the rules of
// built-in chains that jump to a KUBE- chain, then the KUBE- chains.
func removeKubeChains() error {
	var errs []error
	for _, proto := range []iptables.Protocol{iptables.ProtocolIPv4, iptables.ProtocolIPv6} {
		ipt, err := iptables.NewWithProtocol(proto)
		if err != nil {
			continue // no ip6tables (or no iptables at all): nothing was made with it
		}
		for _, table := range []string{"filter", "nat", "mangle", "raw"} {
			if err := removeKubeChainsIn(ipt, table); err != nil {
				errs = append(errs, fmt.Errorf("iptables (%v) %s: %w", ipt.Proto(), table, err))
			}
		}
	}
	return errors.Join(errs...)
}

func removeKubeChainsIn(ipt *iptables.IPTables, table string) error {
	chains, err := ipt.ListChains(table)
	if err != nil {
		return nil // the table does not exist here
	}
	var ours []string
	for _, chain := range chains {
		if strings.HasPrefix(chain, kubeChainPrefix) {
			ours = append(ours, chain)
			continue
		}
		if !builtinChains[chain] {
			continue
		}
		rules, err := ipt.List(table, chain)
		if err != nil {
			return err
		}
		for i := len(rules) - 1; i >= 1; i-- { // rules[0] is the policy line; delete by number, last first
			if strings.Contains(rules[i]+" ", " -j "+kubeChainPrefix) {
				if err := ipt.DeleteById(table, chain, i); err != nil {
					return err
				}
			}
		}
	}
	// Flush all first: KUBE- chains jump to each other.
	for _, chain := range ours {
		if err := ipt.ClearChain(table, chain); err != nil {
			return err
		}
	}
	for _, chain := range ours {
		if err := ipt.DeleteChain(table, chain); err != nil {
			return err
		}
	}
	return nil
}
