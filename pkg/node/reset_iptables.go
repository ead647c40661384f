package node

import (
	"errors"
	"fmt"
	"strings"

	"github.com/coreos/go-iptables/iptables"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni"
)

// kubeChainPrefix names the chains the kubelet and kube-proxy create; on a
// node they are all node-agent's. kube-proxy's cleanup removes its own, not
// the kubelet's (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT).
const kubeChainPrefix = "KUBE-"

// removeKubeChains deletes, in IPv4 and IPv6 and every table, the KUBE-
// chains and the rules of built-in chains that jump to them.
func removeKubeChains() error {
	var errs []error
	for _, proto := range []iptables.Protocol{iptables.ProtocolIPv4, iptables.ProtocolIPv6} {
		ipt, err := iptables.NewWithProtocol(proto)
		if err != nil {
			continue // no ip6tables (or no iptables at all): nothing was made with it
		}
		for _, table := range []string{"filter", "nat", "mangle", "raw"} {
			if err := cni.RemoveChains(ipt, table, func(c string) bool { return strings.HasPrefix(c, kubeChainPrefix) }); err != nil {
				errs = append(errs, fmt.Errorf("iptables (%v) %s: %w", ipt.Proto(), table, err))
			}
		}
	}
	return errors.Join(errs...)
}
