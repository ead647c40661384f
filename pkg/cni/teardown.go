package cni

import (
	"fmt"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

var builtinChains = map[string]bool{"INPUT": true, "OUTPUT": true, "FORWARD": true, "PREROUTING": true, "POSTROUTING": true}

// RemoveChains is the one iptables teardown of node-agent (the plugin's
// hostPort chains, the pod network's VCS- chains, the kubelet's KUBE-
// chains): in one table, it deletes every rule of a built-in chain that jumps
// to a chain ours selects, however the rule was written, then flushes all
// those chains (they may jump to each other) and deletes them. A table that
// does not exist here is success; running it again is too.
func RemoveChains(ipt *iptables.IPTables, table string, ours func(chain string) bool) error {
	chains, err := ipt.ListChains(table)
	if err != nil {
		return nil // the table does not exist here
	}
	var selected []string
	for _, chain := range chains {
		if ours(chain) {
			selected = append(selected, chain)
			continue
		}
		if !builtinChains[chain] {
			continue
		}
		rules, err := ipt.List(table, chain)
		if err != nil {
			return fmt.Errorf("failed to list iptables %s chain %s: %w", table, chain, err)
		}
		for i := len(rules) - 1; i >= 1; i-- { // rules[0] is the policy line; delete by number, last first
			if target := jumpTarget(strings.Fields(rules[i])); target != "" && ours(target) {
				if err := ipt.DeleteById(table, chain, i); err != nil {
					return fmt.Errorf("failed to delete the jump from %s %s to %s: %w", table, chain, target, err)
				}
			}
		}
	}
	for _, chain := range selected {
		if err := ipt.ClearChain(table, chain); err != nil {
			return fmt.Errorf("failed to flush iptables %s chain %s: %w", table, chain, err)
		}
	}
	for _, chain := range selected {
		if err := ipt.DeleteChain(table, chain); err != nil {
			return fmt.Errorf("failed to delete iptables %s chain %s: %w", table, chain, err)
		}
	}
	return nil
}
