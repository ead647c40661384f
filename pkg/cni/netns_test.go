package cni

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
)

// lab is a throw-away "host" netns (where the plugin runs, its bridge and
// iptables live) plus pod netns made by the test. Nothing touches the
// machine's own network namespace.
type lab struct {
	t       *testing.T
	host    ns.NetNS
	ipamDir string
	confDir string
	subnet  string
}

func newLab(t testing.TB) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	host := newNS(t)
	return &lab{host: host, ipamDir: t.TempDir() + "/ipam", confDir: t.TempDir(), subnet: "10.244.1.0/24"}
}

func newNS(t testing.TB) ns.NetNS {
	t.Helper()
	n, err := testutils.NewNS()
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() {
		_ = n.Close()
		_ = testutils.UnmountNS(n)
	})
	return n
}

func (l *lab) conf(extra string) []byte {
	return []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"vcs","type":"vcs-cni","mtu":1400,`+
		`"subnet":%q,"ipamDir":%q%s}`, l.subnet, l.ipamDir, extra))
}

func (l *lab) args(id string, pod ns.NetNS, extra string) *skel.CmdArgs {
	path := ""
	if pod != nil {
		path = pod.Path()
	}
	return &skel.CmdArgs{ContainerID: id, Netns: path, IfName: "eth0", StdinData: l.conf(extra)}
}

// in runs f in the host netns.
func (l *lab) in(f func() error) error {
	return l.host.Do(func(ns.NetNS) error { return f() })
}

func (l *lab) add(t testing.TB, a *skel.CmdArgs) *current.Result {
	t.Helper()
	var res *current.Result
	err := l.in(func() (err error) { res, err = add(a); return err })
	if err != nil {
		t.Fatalf("ADD %s: %v", a.ContainerID, err)
	}
	return res
}

func (l *lab) del(t testing.TB, a *skel.CmdArgs) {
	t.Helper()
	if err := l.in(func() error { return cmdDel(a) }); err != nil {
		t.Fatalf("DEL %s: %v", a.ContainerID, err)
	}
}

// sh runs a command in netns n and returns its combined output.
func sh(t testing.TB, n ns.NetNS, name string, args ...string) string {
	t.Helper()
	var out []byte
	err := n.Do(func(ns.NetNS) error {
		var err error
		out, err = exec.Command(name, args...).CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ping sends one ICMP echo from netns n to dst and waits for the reply.
func ping(n ns.NetNS, dst net.IP) error {
	return n.Do(func(ns.NetNS) error {
		c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return err
		}
		defer c.Close()
		id := uint16(os.Getpid())
		msg := make([]byte, 16)
		msg[0] = 8 // echo request
		binary.BigEndian.PutUint16(msg[4:], id)
		binary.BigEndian.PutUint16(msg[6:], 1)
		copy(msg[8:], "vcs-ping")
		var sum uint32
		for i := 0; i < len(msg); i += 2 {
			sum += uint32(msg[i])<<8 | uint32(msg[i+1])
		}
		sum = (sum >> 16) + (sum & 0xffff)
		sum += sum >> 16
		binary.BigEndian.PutUint16(msg[2:], ^uint16(sum))
		deadline := time.Now().Add(3 * time.Second)
		_ = c.SetDeadline(deadline)
		for attempt := 0; time.Now().Before(deadline); attempt++ {
			if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst}); err != nil {
				return err
			}
			buf := make([]byte, 1500)
			_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			for {
				n, from, err := c.ReadFrom(buf)
				if err != nil {
					break // resend
				}
				if n >= 8 && buf[0] == 0 && from.(*net.IPAddr).IP.Equal(dst) && binary.BigEndian.Uint16(buf[4:]) == id {
					return nil
				}
			}
		}
		return fmt.Errorf("no echo reply from %s", dst)
	})
}

// serve listens on TCP port in netns n and answers every connection with "hi".
func serve(t testing.TB, n ns.NetNS, port int) {
	t.Helper()
	var ln net.Listener
	err := n.Do(func(ns.NetNS) (err error) {
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hi"))
			_ = c.Close()
		}
	}()
}

// dial connects from netns n to addr and expects "hi".
func dial(n ns.NetNS, addr string) error {
	return n.Do(func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 2)
		if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
			return fmt.Errorf("read %q: %v", buf, err)
		}
		return nil
	})
}

func netParse(s string) (net.IP, *net.IPNet, error) { return net.ParseCIDR(s) }
