package netpol

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// NFLOG over nfnetlink (linux/netfilter/nfnetlink_log.h): the table's log
// rules send packets to a group; a socket bound to the group receives them.
const (
	nfnlSubsysULOG   = 4
	nfulnlMsgPacket  = 0
	nfulnlMsgConfig  = 1
	nfulaCfgCmd      = 1
	nfulaCfgMode     = 2
	nfulnlCfgCmdBind = 1
	nfulnlCopyPacket = 2
	nfulaPayload     = 9
	nfulaPrefix      = 10
	// copyRange: the IPv4 header and the ports are all a log line needs.
	copyRange = 64
)

// LoggedPacket is one packet the table logged.
type LoggedPacket struct {
	Prefix   string
	Src, Dst netip.Addr
	Proto    uint8
	DstPort  uint16
}

func (p LoggedPacket) String() string {
	if p.DstPort != 0 {
		return fmt.Sprintf("%s %s -> %s:%d proto %s", p.Prefix, p.Src, p.Dst, p.DstPort, protocolName(uint32(p.Proto)))
	}
	return fmt.Sprintf("%s %s -> %s proto %s", p.Prefix, p.Src, p.Dst, protocolName(uint32(p.Proto)))
}

// LogReader receives the packets logged to NFLOG groups.
type LogReader struct{ conn *netlink.Conn }

// OpenLogReader binds a socket to the given NFLOG groups (in the current
// network namespace).
func OpenLogReader(groups ...uint16) (*LogReader, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("failed to open nfnetlink for NFLOG: %w", err)
	}
	for _, g := range groups {
		mode := make([]byte, 6)
		binary.BigEndian.PutUint32(mode, copyRange)
		mode[4] = nfulnlCopyPacket
		for _, attrs := range [][]netlink.Attribute{
			{{Type: nfulaCfgCmd, Data: []byte{nfulnlCfgCmdBind}}},
			{{Type: nfulaCfgMode, Data: mode}},
		} {
			data, err := netlink.MarshalAttributes(attrs)
			if err != nil {
				conn.Close()
				return nil, err
			}
			hdr := []byte{unix.AF_UNSPEC, 0, 0, 0}
			binary.BigEndian.PutUint16(hdr[2:], g)
			msg := netlink.Message{
				Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysULOG<<8 | nfulnlMsgConfig), Flags: netlink.Request | netlink.Acknowledge},
				Data:   append(hdr, data...),
			}
			if _, err := conn.Execute(msg); err != nil {
				conn.Close()
				return nil, fmt.Errorf("failed to bind NFLOG group %d: %w", g, err)
			}
		}
	}
	return &LogReader{conn: conn}, nil
}

// Close ends Read.
func (r *LogReader) Close() error { return r.conn.Close() }

// Read blocks until packets arrive and returns them.
func (r *LogReader) Read() ([]LoggedPacket, error) {
	msgs, err := r.conn.Receive()
	if err != nil {
		return nil, err
	}
	var out []LoggedPacket
	for _, m := range msgs {
		if m.Header.Type != netlink.HeaderType(nfnlSubsysULOG<<8|nfulnlMsgPacket) || len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			continue
		}
		var p LoggedPacket
		for ad.Next() {
			switch ad.Type() {
			case nfulaPrefix:
				p.Prefix = ad.String()
			case nfulaPayload:
				parseIPv4(ad.Bytes(), &p)
			}
		}
		if p.Src.IsValid() {
			out = append(out, p)
		}
	}
	return out, nil
}

func parseIPv4(b []byte, p *LoggedPacket) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return
	}
	p.Proto = b[9]
	p.Src = netip.AddrFrom4([4]byte(b[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	ihl := int(b[0]&0x0f) * 4
	if (p.Proto == ProtoTCP || p.Proto == ProtoUDP || p.Proto == ProtoSCTP) && len(b) >= ihl+4 {
		p.DstPort = binary.BigEndian.Uint16(b[ihl+2 : ihl+4])
	}
}
