package netpol

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

// ClusterPolicyCounterPrefix + name counts the packets a
// ClusterNetworkPolicy's Accept rules accepted, ClusterPolicyDropCounterPrefix
// + name those its Deny rules dropped. Namespaces cannot hold capitals, so
// neither meets a NetworkPolicy's "namespace/name".
const (
	ClusterPolicyCounterPrefix     = "ClusterNetworkPolicy/"
	ClusterPolicyDropCounterPrefix = "denied/ClusterNetworkPolicy/"
)

// ClusterPolicyID is the short, stable name of a ClusterNetworkPolicy in the table.
func ClusterPolicyID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "cnp-" + hex.EncodeToString(sum[:5])
}

// dirTiers are the ClusterNetworkPolicies (IDs, in precedence order) with
// rules of one direction that select a pod.
type dirTiers struct{ admin, baseline []string }

type podTiers struct{ in, eg dirTiers }

func (t podTiers) of(d direction) dirTiers {
	if d == ingress {
		return t.in
	}
	return t.eg
}

// clusterPolicies compiles every ClusterNetworkPolicy's rules once per
// direction (cnpRules) and records which local pods each one selects.
func (c *compiler) clusterPolicies() {
	c.tiers = make([]podTiers, len(c.local))
	c.cnpRules = map[string][]Rule{}
	pols := slices.Clone(c.in.ClusterPolicies)
	// Lower priority values first; equal ones in name order, so the
	// choice the API leaves to the implementation is at least stable.
	slices.SortFunc(pols, func(a, b *ClusterNetworkPolicy) int {
		return cmp.Or(cmp.Compare(a.Spec.Priority, b.Spec.Priority), strings.Compare(a.Name, b.Name))
	})
	for _, p := range pols {
		if p.Spec.Tier != TierAdmin && p.Spec.Tier != TierBaseline {
			continue // the CRD admits only these two
		}
		if p.Labels[config.BuiltinClusterPolicyLabel] == "true" {
			continue // compiled from the node's settings (base, tierChain)
		}
		var subject []pod
		for _, cand := range c.pods {
			if c.subjectSelects(p.Spec.Subject, cand) {
				subject = append(subject, cand)
			}
		}
		id := ClusterPolicyID(p.Name)
		counters := [2]string{ClusterPolicyCounterPrefix + p.Name, ClusterPolicyDropCounterPrefix + p.Name}
		c.t.Counters = append(c.t.Counters, counters[:]...)
		for _, d := range []direction{ingress, egress} {
			rules := p.Spec.Ingress
			if d == egress {
				rules = p.Spec.Egress
			}
			if len(rules) == 0 {
				continue // no rules of a direction: that direction is not affected
			}
			key := id + "-" + d.name
			for i, r := range rules {
				c.cnpRules[key] = append(c.cnpRules[key], c.clusterRule(fmt.Sprintf("%s%d", key, i), counters, d, r, subject)...)
			}
			for j, lp := range c.local {
				if !c.subjectSelects(p.Spec.Subject, lp) {
					continue
				}
				t := &c.tiers[j].in
				if d == egress {
					t = &c.tiers[j].eg
				}
				if p.Spec.Tier == TierAdmin {
					t.admin = append(t.admin, id)
				} else {
					t.baseline = append(t.baseline, id)
				}
			}
		}
	}
}

// tierChain adds the chain of one tier for one combination of policies:
// their rules in precedence order; a Pass returns to the combination's chain,
// which goes on with the next tier. withBuiltinBaseline ends it with the
// built-in egress baseline (the last policy of the Baseline tier).
func (c *compiler) tierChain(name string, d direction, ids []string, withBuiltinBaseline bool) string {
	ch := &Chain{Name: name}
	for _, id := range ids {
		ch.Rules = append(ch.Rules, c.cnpRules[id+"-"+d.name]...)
	}
	if withBuiltinBaseline {
		ch.Rules = append(ch.Rules, Rule{Verdict: Verdict{Kind: Jump, Chain: chainBaseEg}})
	}
	c.t.Chains = append(c.t.Chains, ch)
	return name
}

func (c *compiler) selectsPods(nsSel, podSel *metav1.LabelSelector, p pod) bool {
	if nsSel != nil {
		s, err := metav1.LabelSelectorAsSelector(nsSel)
		if err != nil {
			return false
		}
		nsLabels, ok := c.namespaces[p.obj.Namespace]
		if !ok || !s.Matches(nsLabels) {
			return false
		}
	}
	if podSel != nil {
		s, err := metav1.LabelSelectorAsSelector(podSel)
		if err != nil || !s.Matches(labels.Set(p.obj.Labels)) {
			return false
		}
	}
	return true
}

func (c *compiler) subjectSelects(s CNPSubject, p pod) bool {
	switch {
	case s.Namespaces != nil:
		return c.selectsPods(s.Namespaces, nil, p)
	case s.Pods != nil:
		return c.selectsPods(&s.Pods.NamespaceSelector, &s.Pods.PodSelector, p)
	}
	return false
}

// clusterRule compiles one rule: its peers (any of them) and protocols (any
// of them) must match. A peer or protocol this package cannot evaluate (an
// experimental or unknown field) fails closed as the API asks: an Accept
// rule ignores it, a Deny or Pass rule denies everything.
// counters are the policy's accept and drop counters.
func (c *compiler) clusterRule(prefix string, counters [2]string, d direction, r CNPRule, subject []pod) []Rule {
	v, counter := Verdict{Kind: Accept}, counters[0]
	switch r.Action {
	case ActionAccept:
	case ActionDeny:
		v, counter = Verdict{Kind: Drop}, counters[1]
	case ActionPass:
		v, counter = Verdict{Kind: Return}, ""
	default:
		return nil // the CRD admits only the three
	}
	denyAll := []Rule{{Counter: counters[1], Log: "vcs-netpol drop cnp " + prefix, Verdict: Verdict{Kind: Drop}}}
	peers := r.From
	if d == egress {
		peers = r.To
	}
	var peerRanges []Range
	var peerPods []pod
	for _, peer := range peers {
		switch {
		case peer.Namespaces != nil || peer.Pods != nil:
			nsSel, podSel := peer.Namespaces, (*metav1.LabelSelector)(nil)
			if peer.Pods != nil {
				nsSel, podSel = &peer.Pods.NamespaceSelector, &peer.Pods.PodSelector
			}
			for _, p := range c.pods {
				if c.selectsPods(nsSel, podSel, p) {
					peerPods = append(peerPods, p)
					a := addrValue(p.addr)
					peerRanges = append(peerRanges, Range{Lo: a, Hi: a})
				}
			}
		case len(peer.Networks) > 0 && d == egress:
			for _, n := range peer.Networks {
				if p, err := netip.ParsePrefix(n); err == nil && p.Addr().Is4() {
					peerRanges = append(peerRanges, prefixRange(p))
				} // IPv6: the pod network is IPv4-only
			}
		default:
			if v.Kind != Accept {
				return denyAll
			}
		}
	}
	peerRanges = normalize(peerRanges)
	if len(peerRanges) == 0 {
		return nil
	}
	c.addSet(prefix+"-peers", AddrSet, peerRanges)
	peerMatch := Match{Field: d.peerF, Set: prefix + "-peers"}
	rule := func(ms ...Match) Rule {
		out := Rule{Matches: append([]Match{peerMatch}, ms...), Counter: counter, Verdict: v}
		if v.Kind == Drop {
			out.Log = "vcs-netpol drop cnp " + prefix
		}
		return out
	}
	if len(r.Protocols) == 0 {
		return []Rule{rule()}
	}
	// A named port resolves on the destination: the subject for ingress,
	// the peer pods for egress.
	destinations := subject
	if d == egress {
		destinations = peerPods
	}
	var out []Rule
	for i, proto := range r.Protocols {
		var number uint32
		var m *CNPPortMatch
		switch {
		case proto.TCP != nil:
			number, m = ProtoTCP, proto.TCP
		case proto.UDP != nil:
			number, m = ProtoUDP, proto.UDP
		case proto.SCTP != nil:
			number, m = ProtoSCTP, proto.SCTP
		case proto.DestinationNamedPort != "":
			for _, pr := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
				byPort := map[int32][]Range{}
				for _, dst := range destinations {
					if n, ok := namedPort(dst.obj, proto.DestinationNamedPort, &pr); ok {
						a := addrValue(dst.addr)
						byPort[n] = append(byPort[n], Range{Lo: a, Hi: a})
					}
				}
				ports := make([]int32, 0, len(byPort))
				for n := range byPort {
					ports = append(ports, n)
				}
				slices.Sort(ports)
				pn := protocolNumber(&pr)
				for _, n := range ports {
					name := fmt.Sprintf("%s-p%d-%s%d", prefix, i, protocolName(pn), n)
					c.addSet(name, AddrSet, byPort[n])
					out = append(out, rule(Match{Field: FieldDstAddr, Set: name}, Match{Field: FieldL4Proto, Value: pn}, Match{Field: FieldDstPort, Value: uint32(n)}))
				}
			}
			continue
		default:
			if v.Kind != Accept {
				return denyAll
			}
			continue
		}
		protoMatch := Match{Field: FieldL4Proto, Value: number}
		port := m.DestinationPort
		switch {
		case port == nil:
			out = append(out, rule(protoMatch))
		case port.Range != nil:
			name := fmt.Sprintf("%s-p%d", prefix, i)
			c.addSet(name, PortSet, []Range{{Lo: uint32(port.Range.Start), Hi: uint32(max(port.Range.Start, port.Range.End))}})
			out = append(out, rule(protoMatch, Match{Field: FieldDstPort, Set: name}))
		case port.Number > 0:
			out = append(out, rule(protoMatch, Match{Field: FieldDstPort, Value: uint32(port.Number)}))
		default:
			if v.Kind != Accept {
				return denyAll
			}
		}
	}
	return out
}
