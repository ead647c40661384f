package netpol

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Rate limit of the NFLOG rules: a flood of drops must not flood the log.
const logPerSecond = 10

// batchBuffer bounds one transaction: the whole table goes to the kernel in
// one sendmsg, far beyond the default socket buffer for thousands of pods.
const batchBuffer = 64 << 20

// elementsPerMessage keeps each element list well inside a netlink
// attribute's 64 KiB (an even number: interval start/end pairs stay together).
const elementsPerMessage = 512

// newConn is a netlink connection for nftables whose buffers hold a whole table.
func newConn() (*nftables.Conn, error) {
	conn, err := nftables.New(nftables.WithSockOptions(func(c *netlink.Conn) error {
		raw, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, batchBuffer)
			if serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, batchBuffer)
			}
		}); err != nil {
			return err
		}
		return serr
	}))
	if err != nil {
		return nil, fmt.Errorf("failed to open netlink for nftables: %w", err)
	}
	return conn, nil
}

// addElements queues elems for s in messages of elementsPerMessage.
func addElements(conn *nftables.Conn, s *nftables.Set, elems []nftables.SetElement) error {
	for len(elems) > 0 {
		n := min(len(elems), elementsPerMessage)
		if err := conn.SetAddElements(s, elems[:n]); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
		elems = elems[n:]
	}
	return nil
}

func table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
}

// Applier applies tables, remembering the last one it loaded: when only set
// and map elements differ (pod churn), it rewrites just those sets, in one
// transaction, and the counters go on counting.
type Applier struct {
	last *Table
}

// Apply loads t; it reports whether the whole table was rebuilt.
func (a *Applier) Apply(t *Table) (rebuilt bool, err error) {
	if a.last != nil && sameShape(a.last, t) {
		if err := applyElements(a.last, t); err == nil {
			a.last = t
			return false, nil
		}
		// Someone changed the table behind our back: rebuild it whole.
	}
	if err := Apply(t); err != nil {
		a.last = nil
		return true, err
	}
	a.last = t
	return true, nil
}

// sameShape reports whether a and b differ at most in set elements.
func sameShape(a, b *Table) bool {
	if len(a.Chains) != len(b.Chains) || len(a.Sets) != len(b.Sets) || !slices.Equal(a.Counters, b.Counters) {
		return false
	}
	for i := range a.Chains {
		ca, cb := a.Chains[i], b.Chains[i]
		if ca.Name != cb.Name || ca.Base != cb.Base || ca.Priority != cb.Priority || len(ca.Rules) != len(cb.Rules) {
			return false
		}
		for j := range ca.Rules {
			ra, rb := ca.Rules[j], cb.Rules[j]
			if ra.Established != rb.Established || ra.Map != rb.Map || ra.MapField != rb.MapField || ra.Verdict != rb.Verdict ||
				ra.Counter != rb.Counter || ra.Log != rb.Log || !slices.Equal(ra.Matches, rb.Matches) {
				return false
			}
		}
	}
	for i := range a.Sets {
		if a.Sets[i].Name != b.Sets[i].Name || a.Sets[i].Kind != b.Sets[i].Kind {
			return false
		}
	}
	return true
}

// applyElements rewrites the sets whose elements differ, in one transaction.
func applyElements(old, t *Table) error {
	conn, err := newConn()
	if err != nil {
		return err
	}
	tbl := table()
	changed := 0
	for i, s := range t.Sets {
		o := old.Sets[i]
		if slices.Equal(o.Ranges, s.Ranges) && slices.Equal(o.Map, s.Map) {
			continue
		}
		changed++
		ns, elems := nftSet(tbl, s)
		conn.FlushSet(ns)
		if err := addElements(conn, ns, elems); err != nil {
			return err
		}
	}
	if changed == 0 {
		return nil
	}
	return conn.Flush()
}

// nftSet is s as nftables wants it: the set and its elements.
func nftSet(tbl *nftables.Table, s *Set) (*nftables.Set, []nftables.SetElement) {
	ns := &nftables.Set{Table: tbl, Name: s.Name}
	switch s.Kind {
	case AddrSet:
		ns.KeyType, ns.Interval = nftables.TypeIPAddr, true
		return ns, intervalElements(s.Ranges, 4)
	case PortSet:
		ns.KeyType, ns.Interval = nftables.TypeInetService, true
		return ns, intervalElements(s.Ranges, 2)
	default:
		ns.KeyType, ns.DataType, ns.IsMap = nftables.TypeIPAddr, nftables.TypeVerdict, true
		return ns, mapElements(s.Map)
	}
}

func mapElements(m []MapElement) []nftables.SetElement {
	var elems []nftables.SetElement
	for _, e := range m {
		elems = append(elems, nftables.SetElement{Key: binaryutil.BigEndian.PutUint32(e.Addr), VerdictData: verdict(e.Verdict)})
	}
	return elems
}

// Apply replaces the table with t in one netlink transaction: packets see
// the old table or the new one, never none or half of one.
func Apply(t *Table) error {
	conn, err := newConn()
	if err != nil {
		return err
	}
	tbl := table()
	// add + delete + add: the delete cannot fail on a missing table.
	conn.AddTable(tbl)
	conn.DelTable(tbl)
	tbl = conn.AddTable(table())
	if err := load(conn, tbl, t); err != nil {
		return err
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("failed to load nftables table %s: %w", TableName, err)
	}
	return nil
}

// Remove deletes the table; a missing table is success.
func Remove() error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("failed to open netlink for nftables: %w", err)
	}
	conn.AddTable(table())
	conn.DelTable(table())
	if err := conn.Flush(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("failed to delete nftables table %s: %w", TableName, err)
	}
	return nil
}

// Exists reports whether the table is loaded.
func Exists() (bool, error) {
	conn, err := nftables.New()
	if err != nil {
		return false, err
	}
	_, err = conn.ListTableOfFamily(TableName, nftables.TableFamilyINet)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return err == nil, err
}

// Counters reads the table's named counters: packets per counter name.
func Counters() (map[string]uint64, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, err
	}
	objs, err := conn.GetNamedObjects(table())
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, o := range objs {
		if n, ok := o.(*nftables.NamedObj); ok {
			if c, ok := n.Obj.(*expr.Counter); ok {
				out[n.Name] = c.Packets
			}
		}
	}
	return out, nil
}

func load(conn *nftables.Conn, tbl *nftables.Table, t *Table) error {
	// Chains first: verdict map elements name them; then sets, which rules name.
	chains := map[string]*nftables.Chain{}
	for _, c := range t.Chains {
		nc := &nftables.Chain{Table: tbl, Name: c.Name}
		if c.Base {
			prio := nftables.ChainPriority(c.Priority)
			accept := nftables.ChainPolicyAccept
			nc.Type, nc.Hooknum, nc.Priority, nc.Policy = nftables.ChainTypeFilter, nftables.ChainHookForward, &prio, &accept
		}
		chains[c.Name] = conn.AddChain(nc)
	}
	sets := map[string]*nftables.Set{}
	for _, s := range t.Sets {
		ns, elems := nftSet(tbl, s)
		if err := conn.AddSet(ns, nil); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
		if err := addElements(conn, ns, elems); err != nil {
			return err
		}
		sets[s.Name] = ns
	}
	for _, name := range t.Counters {
		conn.AddObj(&nftables.NamedObj{Table: tbl, Name: name, Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
	}
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			matches, err := matchExprs(r, sets)
			if err != nil {
				return fmt.Errorf("chain %s: %w", c.Name, err)
			}
			if r.Log != "" {
				// limit is a match: the log gets a rule of its own so the
				// rate limit never decides the verdict.
				group := uint16(LogGroupDrop)
				if r.Verdict.Kind != Drop {
					group = LogGroupAudit
				}
				logRule := append(slices.Clone(matches),
					&expr.Limit{Type: expr.LimitTypePkts, Rate: logPerSecond, Unit: expr.LimitTimeSecond, Burst: logPerSecond},
					&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: group, Data: []byte(r.Log)})
				conn.AddRule(&nftables.Rule{Table: tbl, Chain: chains[c.Name], Exprs: logRule})
			}
			tail, err := verdictExprs(r, sets)
			if err != nil {
				return fmt.Errorf("chain %s: %w", c.Name, err)
			}
			conn.AddRule(&nftables.Rule{Table: tbl, Chain: chains[c.Name], Exprs: append(matches, tail...)})
		}
	}
	return nil
}

// intervalElements encodes disjoint inclusive ranges as nftables interval
// elements: a start, and an end marker one past the range unless it reaches
// the top of the key space.
func intervalElements(rs []Range, size int) []nftables.SetElement {
	top := uint64(1)<<(8*size) - 1
	enc := func(v uint64) []byte {
		if size == 2 {
			return binaryutil.BigEndian.PutUint16(uint16(v))
		}
		return binaryutil.BigEndian.PutUint32(uint32(v))
	}
	var out []nftables.SetElement
	for _, r := range rs {
		out = append(out, nftables.SetElement{Key: enc(uint64(r.Lo))})
		if uint64(r.Hi) < top {
			out = append(out, nftables.SetElement{Key: enc(uint64(r.Hi) + 1), IntervalEnd: true})
		}
	}
	return out
}

func verdict(v Verdict) *expr.Verdict {
	switch v.Kind {
	case Accept:
		return &expr.Verdict{Kind: expr.VerdictAccept}
	case Drop:
		return &expr.Verdict{Kind: expr.VerdictDrop}
	case Return:
		return &expr.Verdict{Kind: expr.VerdictReturn}
	case Jump:
		return &expr.Verdict{Kind: expr.VerdictJump, Chain: v.Chain}
	default:
		return &expr.Verdict{Kind: expr.VerdictGoto, Chain: v.Chain}
	}
}

// load loads a field into register 1.
func loadField(f Field) []expr.Any {
	switch f {
	case FieldSrcAddr:
		return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}}
	case FieldDstAddr:
		return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}}
	case FieldL4Proto:
		return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}}
	default: // FieldDstPort: only after an l4proto match of a protocol with ports
		return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}}
	}
}

// matchExprs are the conditions of r.
func matchExprs(r Rule, sets map[string]*nftables.Set) ([]expr.Any, error) {
	// Every rule is about IPv4: the inet table also sees IPv6, which passes.
	exprs := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
	if r.Established {
		exprs = append(exprs,
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
				Xor:  binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)})
	}
	protoMatched := false
	for _, m := range r.Matches {
		if m.Field == FieldDstPort && !protoMatched {
			return nil, errors.New("a port match needs a protocol match before it")
		}
		exprs = append(exprs, loadField(m.Field)...)
		if m.Set != "" {
			s := sets[m.Set]
			if s == nil {
				return nil, fmt.Errorf("no set %s", m.Set)
			}
			exprs = append(exprs, &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: m.Negate})
			continue
		}
		op := expr.CmpOpEq
		if m.Negate {
			op = expr.CmpOpNeq
		}
		var data []byte
		switch m.Field {
		case FieldL4Proto:
			data = []byte{byte(m.Value)}
			protoMatched = true
		case FieldDstPort:
			data = binaryutil.BigEndian.PutUint16(uint16(m.Value))
		default:
			data = binaryutil.BigEndian.PutUint32(m.Value)
		}
		exprs = append(exprs, &expr.Cmp{Op: op, Register: 1, Data: data})
	}
	return exprs, nil
}

// verdictExprs are what r does once its conditions hold: count, then
// decide or dispatch.
func verdictExprs(r Rule, sets map[string]*nftables.Set) ([]expr.Any, error) {
	var exprs []expr.Any
	if r.Counter != "" {
		exprs = append(exprs, &expr.Objref{Type: int(nftables.ObjTypeCounter), Name: r.Counter})
	}
	if r.Map != "" {
		s := sets[r.Map]
		if s == nil {
			return nil, fmt.Errorf("no map %s", r.Map)
		}
		exprs = append(exprs, loadField(r.MapField)...)
		exprs = append(exprs, &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, IsDestRegSet: true, DestRegister: 0})
		return exprs, nil
	}
	return append(exprs, verdict(r.Verdict)), nil
}
