// Package netpol enforces NetworkPolicy on a node: node-agent watches Pods,
// Namespaces and NetworkPolicies, compiles them into one nftables table the
// project owns (TableName) and applies it in one netlink transaction.
//
// The table has two base chains on the forward hook: "egress" judges packets
// whose source is a pod of this node, "ingress" packets whose destination is
// one, so every pod-to-pod packet is checked once for egress (on the source's
// node) and once for ingress (on the destination's node). Traffic from and to
// the node itself never passes the forward hook: it is always allowed, as the
// API says. hostNetwork pods have the node's address and are not affected.
// Services work because kube-proxy's DNAT happens before forward, so the
// chains see the real endpoint.
//
// Each base chain dispatches on the pod address through a verdict map to the
// chain of the pod's combination of policies; an address of this node's pod
// range that the map does not hold is dropped (fail closed): a pod is isolated
// from its first packet until its policies are programmed. IPv6 is not
// enforced (the pod network is IPv4-only). SCTP rules compile, but this
// kernel has no SCTP, so they never match anything.
package netpol

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// TableName is the nftables table (family inet) node-agent owns.
const TableName = "vcs-netpol"

// Field is what a match reads from a packet.
type Field int

const (
	FieldSrcAddr Field = iota
	FieldDstAddr
	FieldL4Proto
	FieldDstPort
)

// Protocol numbers of the transport protocols NetworkPolicy names.
const (
	ProtoTCP  = 6
	ProtoUDP  = 17
	ProtoSCTP = 132
)

// Match is one condition of a rule: the field is in the named set (or not),
// or equals Value (only for FieldL4Proto).
type Match struct {
	Field  Field
	Set    string // set name; empty: compare with Value
	Value  uint32
	Negate bool
}

// VerdictKind is what a rule does when all its matches hold.
type VerdictKind int

const (
	Accept VerdictKind = iota
	Drop
	Return
	Jump
	Goto
)

// Verdict is a verdict with its target chain for Jump and Goto.
type Verdict struct {
	Kind  VerdictKind
	Chain string
}

func (v Verdict) String() string {
	switch v.Kind {
	case Accept:
		return "accept"
	case Drop:
		return "drop"
	case Return:
		return "return"
	case Jump:
		return "jump " + v.Chain
	default:
		return "goto " + v.Chain
	}
}

// Rule is matches, then either a verdict or a verdict-map dispatch on Field.
type Rule struct {
	// Established matches only packets of known connections (ct state
	// established,related).
	Established bool
	Matches     []Match
	// Map, when set, dispatches on MapField through the verdict map Map;
	// a miss continues with the next rule.
	Map      string
	MapField Field
	Verdict  Verdict
	// Counter names the counter object the rule counts in; Log, when not
	// empty, sends the packet to NFLOG with this prefix (rate-limited).
	Counter string
	Log     string
}

// Chain is a chain; a base chain has Hook set and accepts at its end.
type Chain struct {
	Name     string
	Base     bool
	Priority int
	Rules    []Rule
}

// SetKind is the type of a set's keys.
type SetKind int

const (
	AddrSet SetKind = iota // ipv4_addr, interval
	PortSet                // inet_service, interval
	AddrMap                // ipv4_addr -> verdict
)

// Range is an inclusive range of addresses or ports.
type Range struct{ Lo, Hi uint32 }

// Set is a named set: sorted, disjoint ranges, or for AddrMap one address per element.
type Set struct {
	Name   string
	Kind   SetKind
	Ranges []Range
	Map    []MapElement
}

// MapElement is one address of a verdict map.
type MapElement struct {
	Addr    uint32
	Verdict Verdict
}

// Table is the compiled table: what Apply loads and what tests evaluate.
type Table struct {
	Chains   []*Chain
	Sets     []*Set
	Counters []string
}

// Stats are the table's size.
type Stats struct{ Chains, Rules, Sets, Elements int }

// Stats counts the table's chains, rules, sets and set elements.
func (t *Table) Stats() Stats {
	s := Stats{Chains: len(t.Chains), Sets: len(t.Sets)}
	for _, c := range t.Chains {
		s.Rules += len(c.Rules)
	}
	for _, set := range t.Sets {
		s.Elements += len(set.Ranges) + len(set.Map)
	}
	return s
}

func (t *Table) chain(name string) *Chain {
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (t *Table) set(name string) *Set {
	for _, s := range t.Sets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Packet is what the evaluator needs to know of a packet.
type Packet struct {
	Src, Dst    netip.Addr
	Proto       uint32
	DstPort     uint32
	Established bool
}

// Allows evaluates the table as the kernel would for a forwarded packet:
// every base chain in priority order must accept it. It is the compiler's
// test oracle; the netns test checks the kernel agrees.
func (t *Table) Allows(p Packet) (bool, error) {
	bases := slices.DeleteFunc(slices.Clone(t.Chains), func(c *Chain) bool { return !c.Base })
	slices.SortStableFunc(bases, func(a, b *Chain) int { return cmp.Compare(a.Priority, b.Priority) })
	sets := map[string]*Set{}
	for _, s := range t.Sets {
		sets[s.Name] = s
	}
	chains := map[string]*Chain{}
	for _, c := range t.Chains {
		chains[c.Name] = c
	}
	for _, base := range bases {
		v, err := evalBase(base, chains, sets, p)
		if err != nil {
			return false, err
		}
		if v == Drop {
			return false, nil
		}
	}
	return true, nil
}

type frame struct {
	chain *Chain
	next  int
}

func evalBase(base *Chain, chains map[string]*Chain, sets map[string]*Set, p Packet) (VerdictKind, error) {
	stack := []frame{{chain: base}}
	for steps := 0; len(stack) > 0; steps++ {
		if steps > 100000 {
			return Drop, fmt.Errorf("chain %s: evaluation does not end", base.Name)
		}
		top := &stack[len(stack)-1]
		if top.next >= len(top.chain.Rules) {
			stack = stack[:len(stack)-1] // end of chain: return (a base chain accepts)
			continue
		}
		r := top.chain.Rules[top.next]
		top.next++
		ok, err := r.matches(sets, p)
		if err != nil {
			return Drop, fmt.Errorf("chain %s: %w", top.chain.Name, err)
		}
		if !ok {
			continue
		}
		v := r.Verdict
		if r.Map != "" {
			m := sets[r.Map]
			if m == nil {
				return Drop, fmt.Errorf("chain %s: no map %s", top.chain.Name, r.Map)
			}
			found := false
			key := addrKey(p, r.MapField)
			for _, e := range m.Map {
				if e.Addr == key {
					v, found = e.Verdict, true
				}
			}
			if !found {
				continue
			}
		}
		switch v.Kind {
		case Accept, Drop:
			return v.Kind, nil
		case Return:
			stack = stack[:len(stack)-1]
		case Jump, Goto:
			c := chains[v.Chain]
			if c == nil {
				return Drop, fmt.Errorf("chain %s: no chain %s", top.chain.Name, v.Chain)
			}
			if v.Kind == Goto {
				stack = stack[:len(stack)-1]
			}
			stack = append(stack, frame{chain: c})
		}
	}
	return Accept, nil
}

func addrKey(p Packet, f Field) uint32 {
	if f == FieldSrcAddr {
		return addrValue(p.Src)
	}
	return addrValue(p.Dst)
}

func (r Rule) matches(sets map[string]*Set, p Packet) (bool, error) {
	if r.Established && !p.Established {
		return false, nil
	}
	for _, m := range r.Matches {
		var value uint32
		switch m.Field {
		case FieldSrcAddr, FieldDstAddr:
			value = addrKey(p, m.Field)
		case FieldL4Proto:
			value = p.Proto
		case FieldDstPort:
			if p.Proto != ProtoTCP && p.Proto != ProtoUDP && p.Proto != ProtoSCTP {
				return false, nil
			}
			value = p.DstPort
		}
		var hit bool
		if m.Set == "" {
			hit = value == m.Value
		} else {
			s := sets[m.Set]
			if s == nil {
				return false, fmt.Errorf("no set %s", m.Set)
			}
			hit = inRanges(s.Ranges, value)
		}
		if hit == m.Negate {
			return false, nil
		}
	}
	return true, nil
}

func inRanges(rs []Range, v uint32) bool {
	i, _ := slices.BinarySearchFunc(rs, v, func(r Range, v uint32) int {
		if r.Hi < v {
			return -1
		}
		if r.Lo > v {
			return 1
		}
		return 0
	})
	return i < len(rs) && rs[i].Lo <= v && v <= rs[i].Hi
}

func addrValue(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addrOf(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// prefixRange is the addresses of an IPv4 prefix.
func prefixRange(p netip.Prefix) Range {
	p = p.Masked()
	lo := addrValue(p.Addr())
	size := uint64(1) << (32 - p.Bits())
	return Range{Lo: lo, Hi: uint32(uint64(lo) + size - 1)}
}

// normalize sorts ranges and merges the overlapping and adjacent ones: an
// nftables interval set refuses overlapping elements.
func normalize(rs []Range) []Range {
	if len(rs) == 0 {
		return nil
	}
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b Range) int { return cmp.Compare(a.Lo, b.Lo) })
	out := []Range{rs[0]}
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if uint64(r.Lo) <= uint64(last.Hi)+1 {
			last.Hi = max(last.Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// subtract returns the part of a (normalized) not in b (normalized).
func subtract(a, b []Range) []Range {
	var out []Range
	for _, r := range a {
		lo := uint64(r.Lo)
		hi := uint64(r.Hi)
		for _, x := range b {
			if uint64(x.Hi) < lo || uint64(x.Lo) > hi {
				continue
			}
			if uint64(x.Lo) > lo {
				out = append(out, Range{Lo: uint32(lo), Hi: x.Lo - 1})
			}
			lo = uint64(x.Hi) + 1
			if lo > hi {
				break
			}
		}
		if lo <= hi {
			out = append(out, Range{Lo: uint32(lo), Hi: uint32(hi)})
		}
	}
	return out
}
