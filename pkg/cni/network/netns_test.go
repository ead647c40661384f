package network

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni/internal/netnstest"
)

// The tests build "nodes" and "pods" as network namespaces of their own
// (netnstest); the host's own network namespace, routes and iptables are
// never touched.

func requireRoot(t *testing.T) { netnstest.RequireRoot(t, "ip", "iptables") }

func newNS(t *testing.T, name string) string { return netnstest.New(t, "vcst", name) }

func run(t *testing.T, name string, args ...string) string { return netnstest.Run(t, name, args...) }

func inNS(_ *testing.T, name string, fn func() error) error { return netnstest.In(name, fn) }

// mustNS is inNS failing the test on error.
func mustNS(t *testing.T, name string, fn func() error) {
	t.Helper()
	if err := inNS(t, name, fn); err != nil {
		t.Fatalf("in %s: %v", name, err)
	}
}

// lab is two nodes joined by a veth pair "eth0" (10.123.200.1/24 and .2/24),
// each with a pod behind bridge vcs0 (as the CNI plugin sets it up).
type lab struct {
	nodes, pods [2]string
}

var (
	nodeIPs  = [2]string{"10.123.200.1", "10.123.200.2"}
	podCIDRs = [2]string{"10.244.1.0/24", "10.244.2.0/24"}
	podIPs   = [2]string{"10.244.1.2", "10.244.2.2"}
)

func newLab(t *testing.T, podMTU int) *lab {
	t.Helper()
	l := &lab{}
	for i := range 2 {
		l.nodes[i] = newNS(t, fmt.Sprintf("n%d", i))
		l.pods[i] = newNS(t, fmt.Sprintf("p%d", i))
	}
	run(t, "ip", "-n", l.nodes[0], "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", l.nodes[1])
	for i := range 2 {
		n, p := l.nodes[i], l.pods[i]
		run(t, "ip", "-n", n, "addr", "add", nodeIPs[i]+"/24", "dev", "eth0")
		run(t, "ip", "-n", n, "link", "set", "eth0", "up")
		gw := strings.TrimSuffix(podCIDRs[i], "0/24") + "1"
		run(t, "ip", "-n", n, "link", "add", "vcs0", "type", "bridge")
		run(t, "ip", "-n", n, "addr", "add", gw+"/24", "dev", "vcs0")
		run(t, "ip", "-n", n, "link", "set", "vcs0", "up")
		run(t, "ip", "-n", n, "link", "add", "veth0", "mtu", fmt.Sprint(podMTU), "type", "veth", "peer", "name", "eth0", "netns", p)
		run(t, "ip", "-n", n, "link", "set", "veth0", "master", "vcs0", "up")
		run(t, "ip", "-n", p, "link", "set", "eth0", "mtu", fmt.Sprint(podMTU), "up")
		run(t, "ip", "-n", p, "addr", "add", podIPs[i]+"/24", "dev", "eth0")
		run(t, "ip", "-n", p, "route", "add", "default", "via", gw)
	}
	return l
}

// listen opens a TCP listener in namespace ns that reports the source
// address of every connection on the returned channel.
func listen(t *testing.T, ns, addr string) <-chan string {
	t.Helper()
	var ln net.Listener
	mustNS(t, ns, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	t.Cleanup(func() { ln.Close() })
	from := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			from <- host
			c.Close()
		}
	}()
	return from
}

// connect dials addr from namespace ns and returns the source address the
// listener saw.
func connect(t *testing.T, ns, addr string, from <-chan string) (string, error) {
	t.Helper()
	err := inNS(t, ns, func() error {
		c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		return "", err
	}
	select {
	case src := <-from:
		return src, nil
	case <-time.After(2 * time.Second):
		return "", fmt.Errorf("listener saw no connection")
	}
}
