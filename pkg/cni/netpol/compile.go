package netpol

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// AuditAnnotation set to "true" on a NetworkPolicy makes it log-only: the
// pods it selects are not isolated by it, and what it would drop is logged.
const AuditAnnotation = "netpol.vcluster-standalone.io/audit"

// NFLOG groups of the table's log rules; node-agent reads them.
const (
	LogGroupDrop  = 4242
	LogGroupAudit = 4243
)

// Input is everything the table is compiled from.
type Input struct {
	NodeName string
	// NodePodCIDR is this node's pod range: an address in it that no known
	// pod holds is dropped (fail closed).
	NodePodCIDR netip.Prefix
	// ClusterRanges are the cluster's own ranges (pod and service CIDRs,
	// node addresses): what "outside the cluster" is measured against.
	ClusterRanges []netip.Prefix
	// DeniedEgress is denied to every pod of the node, whatever any policy says.
	DeniedEgress []netip.Prefix
	// PublicEgress off: non-isolated pods may not reach outside ClusterRanges;
	// PublicEgressCIDR is what they may reach outside it when on.
	PublicEgress     bool
	PublicEgressCIDR netip.Prefix

	Pods       []*corev1.Pod
	Namespaces []*corev1.Namespace
	Policies   []*networkingv1.NetworkPolicy
	// ClusterPolicies are the ClusterNetworkPolicies, both tiers.
	ClusterPolicies []*ClusterNetworkPolicy
	// Announced are addresses the CNI plugin reported for pods whose status
	// does not show them yet.
	Announced map[types.UID]netip.Addr
}

// Names of the table's fixed chains and sets.
const (
	chainEgress   = "egress"
	chainIngress  = "ingress"
	chainOpenEg   = "egress-open"
	chainBaseEg   = "egress-baseline"
	setLocalRange = "local-pods-range"
	setDenied     = "denied-egress"
	setOutside    = "outside-cluster"
	mapEgress     = "egress-pods"
	mapIngress    = "ingress-pods"
	// CounterDenied counts drops of the admin-tier denied-egress rule;
	// CounterUnknown drops for addresses no known pod holds.
	CounterDenied  = "admin-denied-egress"
	CounterUnknown = "unknown-pod"
	CounterOutside = "baseline-outside-cluster"
)

type pod struct {
	obj  *corev1.Pod
	addr netip.Addr
}

type compiler struct {
	in         Input
	t          *Table
	pods       []pod // every pod with an address, hostNetwork excluded
	local      []pod // pods of this node
	namespaces map[string]labels.Set
	// tiers[j] are the compiled ClusterNetworkPolicies selecting local pod j.
	tiers []podTiers
	// cnpRules are each ClusterNetworkPolicy's compiled rules, by
	// ClusterPolicyID + "-in" / "-eg".
	cnpRules map[string][]Rule
}

// Compile builds the whole table from in. It never fails on a policy: what
// cannot match anything (an empty selector result) compiles to nothing.
func Compile(in Input) *Table {
	c := &compiler{in: in, t: &Table{}, namespaces: map[string]labels.Set{}}
	for _, ns := range in.Namespaces {
		l := labels.Set(ns.Labels)
		if _, ok := l[corev1.LabelMetadataName]; !ok {
			l = labels.Merge(l, labels.Set{corev1.LabelMetadataName: ns.Name})
		}
		c.namespaces[ns.Name] = l
	}
	c.collectPods()
	c.base()
	c.clusterPolicies()
	c.policies()
	return c.t
}

// podAddr is a pod's IPv4 address: from its status, else as announced by CNI.
func podAddr(p *corev1.Pod, announced map[types.UID]netip.Addr) netip.Addr {
	for _, ip := range p.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil && a.Is4() {
			return a
		}
	}
	if a, err := netip.ParseAddr(p.Status.PodIP); err == nil && a.Is4() {
		return a
	}
	return announced[p.UID]
}

func (c *compiler) collectPods() {
	byAddr := map[netip.Addr]int{}
	for _, p := range c.in.Pods {
		if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		a := podAddr(p, c.in.Announced)
		if !a.IsValid() {
			continue
		}
		// An address reused while the old pod's object lingers: the newest
		// (or the one CNI announced) holds it.
		if i, ok := byAddr[a]; ok {
			old := c.pods[i].obj
			if _, announced := c.in.Announced[old.UID]; announced || p.CreationTimestamp.Before(&old.CreationTimestamp) {
				continue
			}
			c.pods[i] = pod{obj: p, addr: a}
			continue
		}
		byAddr[a] = len(c.pods)
		c.pods = append(c.pods, pod{obj: p, addr: a})
	}
	slices.SortFunc(c.pods, func(a, b pod) int { return a.addr.Compare(b.addr) })
	for _, p := range c.pods {
		if p.obj.Spec.NodeName == c.in.NodeName && c.in.NodePodCIDR.Contains(p.addr) {
			c.local = append(c.local, p)
		}
	}
}

func (c *compiler) addSet(name string, kind SetKind, ranges []Range) {
	c.t.Sets = append(c.t.Sets, &Set{Name: name, Kind: kind, Ranges: normalize(ranges)})
}

func prefixRanges(ps []netip.Prefix) []Range {
	var rs []Range
	for _, p := range ps {
		if p.IsValid() && p.Addr().Is4() {
			rs = append(rs, prefixRange(p))
		}
	}
	return normalize(rs)
}

// base adds the two base chains and the fixed sets.
func (c *compiler) base() {
	c.addSet(setLocalRange, AddrSet, prefixRanges([]netip.Prefix{c.in.NodePodCIDR}))
	established := Rule{Established: true, Verdict: Verdict{Kind: Accept}}
	eg := &Chain{Name: chainEgress, Base: true, Priority: -10}
	eg.Rules = append(eg.Rules, established,
		Rule{Matches: []Match{{Field: FieldSrcAddr, Set: setLocalRange, Negate: true}}, Verdict: Verdict{Kind: Accept}})
	if denied := prefixRanges(c.in.DeniedEgress); len(denied) > 0 {
		c.addSet(setDenied, AddrSet, denied)
		eg.Rules = append(eg.Rules, Rule{Matches: []Match{{Field: FieldDstAddr, Set: setDenied}}, Counter: CounterDenied,
			Log: "vcs-netpol drop admin denied-egress", Verdict: Verdict{Kind: Drop}})
		c.t.Counters = append(c.t.Counters, CounterDenied)
	}
	eg.Rules = append(eg.Rules,
		Rule{Map: mapEgress, MapField: FieldSrcAddr},
		Rule{Counter: CounterUnknown, Log: "vcs-netpol drop unknown-pod", Verdict: Verdict{Kind: Drop}})

	in := &Chain{Name: chainIngress, Base: true, Priority: -9}
	in.Rules = append(in.Rules, established,
		Rule{Matches: []Match{{Field: FieldDstAddr, Set: setLocalRange, Negate: true}}, Verdict: Verdict{Kind: Accept}},
		Rule{Map: mapIngress, MapField: FieldDstAddr},
		Rule{Counter: CounterUnknown, Log: "vcs-netpol drop unknown-pod", Verdict: Verdict{Kind: Drop}})
	c.t.Counters = append(c.t.Counters, CounterUnknown)

	// Baseline for pods no egress policy isolates: egress-baseline drops
	// what the baseline denies and returns; egress-open applies it, then
	// accepts.
	baseline := &Chain{Name: chainBaseEg}
	if !c.in.PublicEgress || c.in.PublicEgressCIDR.Bits() != 0 {
		allowed := prefixRanges(c.in.ClusterRanges)
		if c.in.PublicEgress {
			allowed = normalize(append(allowed, prefixRanges([]netip.Prefix{c.in.PublicEgressCIDR})...))
		}
		if outside := subtract([]Range{{Lo: 0, Hi: ^uint32(0)}}, allowed); len(outside) > 0 {
			c.addSet(setOutside, AddrSet, outside)
			baseline.Rules = append(baseline.Rules, Rule{Matches: []Match{{Field: FieldDstAddr, Set: setOutside}}, Counter: CounterOutside,
				Log: "vcs-netpol drop baseline outside-cluster", Verdict: Verdict{Kind: Drop}})
			c.t.Counters = append(c.t.Counters, CounterOutside)
		}
	}
	open := &Chain{Name: chainOpenEg, Rules: []Rule{{Verdict: Verdict{Kind: Jump, Chain: chainBaseEg}}, {Verdict: Verdict{Kind: Accept}}}}
	c.t.Chains = append(c.t.Chains, eg, in, baseline, open)
}

// IsolationCounterPrefix + namespace counts the packets dropped because
// policies isolate a pod of that namespace and none of them allowed it.
const IsolationCounterPrefix = "isolated/"

// policyCounter counts the packets a policy accepted: "namespace/name".
func policyCounter(p *networkingv1.NetworkPolicy) string { return p.Namespace + "/" + p.Name }

// PolicyID is the short, stable name of a policy in the table.
func PolicyID(namespace, name string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + name))
	return "np-" + hex.EncodeToString(sum[:5])
}

type direction struct {
	name    string // "in" / "eg"
	peerF   Field  // where the peer's address is
	podF    Field  // where the selected pod's address is
	mapName string
}

var (
	ingress = direction{name: "in", peerF: FieldSrcAddr, podF: FieldDstAddr, mapName: mapIngress}
	egress  = direction{name: "eg", peerF: FieldDstAddr, podF: FieldSrcAddr, mapName: mapEgress}
)

// policies compiles each policy into a chain per direction, and each local
// pod's combination of policies into a dispatch chain.
func (c *compiler) policies() {
	pols := slices.Clone(c.in.Policies)
	slices.SortFunc(pols, func(a, b *networkingv1.NetworkPolicy) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	// perPod[j]: the policies that select local pod j, per direction.
	type sel struct{ in, eg []string }
	perPod := make([]sel, len(c.local))
	auditPerPod := make([]sel, len(c.local))
	for _, p := range pols {
		selector, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		if err != nil {
			continue // the API server refuses invalid selectors
		}
		var selected []pod
		for _, lp := range c.local {
			if lp.obj.Namespace == p.Namespace && selector.Matches(labels.Set(lp.obj.Labels)) {
				selected = append(selected, lp)
			}
		}
		if len(selected) == 0 {
			continue
		}
		id := PolicyID(p.Namespace, p.Name)
		c.t.Counters = append(c.t.Counters, policyCounter(p))
		audit := p.Annotations[AuditAnnotation] == "true"
		hasIn, hasEg := policyTypes(p)
		if hasIn {
			c.policyChain(id, p, ingress, selected)
		}
		if hasEg {
			c.policyChain(id, p, egress, selected)
		}
		for j, lp := range c.local {
			if lp.obj.Namespace != p.Namespace || !selector.Matches(labels.Set(lp.obj.Labels)) {
				continue
			}
			target := &perPod[j]
			if audit {
				target = &auditPerPod[j]
			}
			if hasIn {
				target.in = append(target.in, id)
			}
			if hasEg {
				target.eg = append(target.eg, id)
			}
		}
	}
	inMap := &Set{Name: mapIngress, Kind: AddrMap}
	egMap := &Set{Name: mapEgress, Kind: AddrMap}
	combos := map[string]bool{}
	for j, lp := range c.local {
		addr := addrValue(lp.addr)
		ns := lp.obj.Namespace
		inMap.Map = append(inMap.Map, MapElement{Addr: addr, Verdict: c.combo(ingress, ns, perPod[j].in, auditPerPod[j].in, c.tiers[j].of(ingress), combos)})
		egMap.Map = append(egMap.Map, MapElement{Addr: addr, Verdict: c.combo(egress, ns, perPod[j].eg, auditPerPod[j].eg, c.tiers[j].of(egress), combos)})
	}
	c.t.Sets = append(c.t.Sets, inMap, egMap)
}

// combo returns the dispatch verdict of a pod selected by the given
// enforcing and audit policies and ClusterNetworkPolicies, adding the
// combination's chain once. The chain evaluates the tiers in order: Admin
// (a Pass returns from its chain), NetworkPolicy (final for the pods it
// isolates), Baseline (the built-in egress baseline is its last rule).
func (c *compiler) combo(d direction, namespace string, ids, audit []string, tiers dirTiers, made map[string]bool) Verdict {
	open := Verdict{Kind: Accept}
	if d == egress {
		open = Verdict{Kind: Goto, Chain: chainOpenEg}
	}
	if len(ids) == 0 && len(audit) == 0 && len(tiers.admin) == 0 && len(tiers.baseline) == 0 {
		return open
	}
	key := d.name + "|" + namespace + "|" + strings.Join(ids, ",") + "|" + strings.Join(audit, ",") + "|" + strings.Join(tiers.admin, ",") + "|" + strings.Join(tiers.baseline, ",")
	sum := sha256.Sum256([]byte(key))
	suffix := hex.EncodeToString(sum[:5])
	name := d.name + "-pods-" + suffix
	if !made[name] {
		made[name] = true
		ch := &Chain{Name: name}
		if len(tiers.admin) > 0 {
			ch.Rules = append(ch.Rules, Rule{Verdict: Verdict{Kind: Jump, Chain: c.tierChain(d.name+"-admin-"+suffix, d, tiers.admin, false)}})
		}
		// The baseline tier for pods no NetworkPolicy isolates.
		var baseline []Rule
		if len(tiers.baseline) > 0 {
			baseline = []Rule{{Verdict: Verdict{Kind: Jump, Chain: c.tierChain(d.name+"-baseline-"+suffix, d, tiers.baseline, d == egress)}}}
		} else if d == egress {
			baseline = []Rule{{Verdict: Verdict{Kind: Jump, Chain: chainBaseEg}}}
		}
		for _, id := range ids {
			ch.Rules = append(ch.Rules, Rule{Verdict: Verdict{Kind: Jump, Chain: id + "-" + d.name}})
		}
		switch {
		case len(ids) > 0:
			// Isolated and no policy allowed it: the default deny.
			counter := IsolationCounterPrefix + namespace
			if !slices.Contains(c.t.Counters, counter) {
				c.t.Counters = append(c.t.Counters, counter)
			}
			ch.Rules = append(ch.Rules, Rule{Counter: counter, Log: fmt.Sprintf("vcs-netpol drop %s ns=%s", d.name, namespace), Verdict: Verdict{Kind: Drop}})
		case len(audit) > 0:
			// Only audit policies select the pod: it is not isolated, so the
			// baseline applies first; then log what the audit policies
			// would drop, and let it through.
			ch.Rules = append(ch.Rules, baseline...)
			for _, id := range audit {
				ch.Rules = append(ch.Rules, Rule{Verdict: Verdict{Kind: Jump, Chain: id + "-" + d.name}})
			}
			ch.Rules = append(ch.Rules, Rule{Log: fmt.Sprintf("vcs-netpol audit %s ns=%s", d.name, namespace), Verdict: Verdict{Kind: Accept}})
		default:
			ch.Rules = append(ch.Rules, baseline...)
			ch.Rules = append(ch.Rules, Rule{Verdict: Verdict{Kind: Accept}})
		}
		c.t.Chains = append(c.t.Chains, ch)
	}
	return Verdict{Kind: Goto, Chain: name}
}

func policyTypes(p *networkingv1.NetworkPolicy) (in, eg bool) {
	if len(p.Spec.PolicyTypes) == 0 {
		return true, len(p.Spec.Egress) > 0
	}
	for _, t := range p.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			in = true
		case networkingv1.PolicyTypeEgress:
			eg = true
		}
	}
	return in, eg
}

// policyChain compiles the rules of one direction of p: each rule that
// matches accepts; falling off the end returns to the pod's combination.
func (c *compiler) policyChain(id string, p *networkingv1.NetworkPolicy, d direction, selected []pod) {
	ch := &Chain{Name: id + "-" + d.name}
	type rule struct {
		peers []networkingv1.NetworkPolicyPeer
		ports []networkingv1.NetworkPolicyPort
	}
	var rules []rule
	if d == ingress {
		for _, r := range p.Spec.Ingress {
			rules = append(rules, rule{r.From, r.Ports})
		}
	} else {
		for _, r := range p.Spec.Egress {
			rules = append(rules, rule{r.To, r.Ports})
		}
	}
	for i, r := range rules {
		prefix := fmt.Sprintf("%s-%s%d", id, d.name, i)
		var peerMatch []Match
		var peerRanges []Range
		if len(r.peers) > 0 {
			peerRanges = c.peerRanges(p.Namespace, r.peers)
			if len(peerRanges) == 0 {
				continue
			}
			c.addSet(prefix+"-peers", AddrSet, peerRanges)
			peerMatch = []Match{{Field: d.peerF, Set: prefix + "-peers"}}
		}
		accept := func(ms ...Match) {
			ch.Rules = append(ch.Rules, Rule{Matches: append(slices.Clone(peerMatch), ms...), Counter: policyCounter(p), Verdict: Verdict{Kind: Accept}})
		}
		if len(r.ports) == 0 {
			accept()
			continue
		}
		numbered := map[uint32][]Range{} // protocol -> port ranges
		allPorts := map[uint32]bool{}
		named := map[[2]uint32][]Range{} // (protocol, port) -> addresses of the pods it resolves to
		for _, port := range r.ports {
			proto := protocolNumber(port.Protocol)
			switch {
			case port.Port == nil:
				allPorts[proto] = true
			case port.Port.Type == 0: // int
				hi := port.Port.IntVal
				if port.EndPort != nil && *port.EndPort >= hi {
					hi = *port.EndPort
				}
				numbered[proto] = append(numbered[proto], Range{Lo: uint32(port.Port.IntVal), Hi: uint32(hi)})
			default:
				// A named port resolves on the pod that holds it: the
				// selected pod for ingress, the peer for egress.
				candidates := selected
				if d == egress {
					candidates = c.pods
				}
				for _, cand := range candidates {
					if d == egress && len(r.peers) > 0 && !inRanges(peerRanges, addrValue(cand.addr)) {
						continue
					}
					if n, ok := namedPort(cand.obj, port.Port.StrVal, port.Protocol); ok {
						key := [2]uint32{proto, uint32(n)}
						named[key] = append(named[key], Range{Lo: addrValue(cand.addr), Hi: addrValue(cand.addr)})
					}
				}
			}
		}
		for _, proto := range sortedKeys(allPorts) {
			accept(Match{Field: FieldL4Proto, Value: proto})
		}
		for _, proto := range sortedKeys(numbered) {
			if allPorts[proto] {
				continue
			}
			name := fmt.Sprintf("%s-%s", prefix, protocolName(proto))
			c.addSet(name, PortSet, numbered[proto])
			accept(Match{Field: FieldL4Proto, Value: proto}, Match{Field: FieldDstPort, Set: name})
		}
		keys := make([][2]uint32, 0, len(named))
		for k := range named {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(a, b int) bool {
			return keys[a][0] < keys[b][0] || keys[a][0] == keys[b][0] && keys[a][1] < keys[b][1]
		})
		for _, k := range keys {
			if allPorts[k[0]] {
				continue
			}
			name := fmt.Sprintf("%s-%s%d", prefix, protocolName(k[0]), k[1])
			c.addSet(name, AddrSet, named[k])
			// The set holds the pods the name resolved on, the destinations
			// in both directions.
			accept(Match{Field: FieldDstAddr, Set: name}, Match{Field: FieldL4Proto, Value: k[0]}, Match{Field: FieldDstPort, Value: k[1]})
		}
	}
	c.t.Chains = append(c.t.Chains, ch)
}

func sortedKeys[V any](m map[uint32]V) []uint32 {
	keys := make([]uint32, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// peerRanges are the addresses the peers of one rule select.
func (c *compiler) peerRanges(namespace string, peers []networkingv1.NetworkPolicyPeer) []Range {
	var rs []Range
	for _, peer := range peers {
		if peer.IPBlock != nil {
			block, err := netip.ParsePrefix(peer.IPBlock.CIDR)
			if err != nil || !block.Addr().Is4() {
				continue // IPv6 blocks: the pod network is IPv4-only
			}
			var except []netip.Prefix
			for _, e := range peer.IPBlock.Except {
				if ep, err := netip.ParsePrefix(e); err == nil {
					except = append(except, ep)
				}
			}
			rs = append(rs, subtract([]Range{prefixRange(block)}, prefixRanges(except))...)
			continue
		}
		podSel := labels.Everything()
		if peer.PodSelector != nil {
			s, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
			if err != nil {
				continue
			}
			podSel = s
		}
		var nsSel labels.Selector
		if peer.NamespaceSelector != nil {
			s, err := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
			if err != nil {
				continue
			}
			nsSel = s
		}
		for _, p := range c.pods {
			if nsSel == nil {
				if p.obj.Namespace != namespace {
					continue
				}
			} else if nsLabels, ok := c.namespaces[p.obj.Namespace]; !ok || !nsSel.Matches(nsLabels) {
				continue
			}
			if podSel.Matches(labels.Set(p.obj.Labels)) {
				v := addrValue(p.addr)
				rs = append(rs, Range{Lo: v, Hi: v})
			}
		}
	}
	return normalize(rs)
}

func protocolNumber(p *corev1.Protocol) uint32 {
	if p == nil {
		return ProtoTCP
	}
	switch *p {
	case corev1.ProtocolUDP:
		return ProtoUDP
	case corev1.ProtocolSCTP:
		return ProtoSCTP
	default:
		return ProtoTCP
	}
}

func protocolName(n uint32) string {
	switch n {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoSCTP:
		return "sctp"
	}
	return strconv.Itoa(int(n))
}

// namedPort resolves a container port name of p for protocol proto.
func namedPort(p *corev1.Pod, name string, proto *corev1.Protocol) (int32, bool) {
	want := corev1.ProtocolTCP
	if proto != nil {
		want = *proto
	}
	for _, ctr := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
		for _, port := range ctr.Ports {
			pp := port.Protocol
			if pp == "" {
				pp = corev1.ProtocolTCP
			}
			if port.Name == name && pp == want {
				return port.ContainerPort, true
			}
		}
	}
	return 0, false
}
