package network

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni"
)

// Reset removes what this package set up in the calling thread's network
// namespace: the VXLAN device (with its routes, neighbour and FDB entries),
// every route marked RouteProtocol (host-gw routes), the VCS- chains and the
// jumps to them, in every iptables backend present. IP forwarding stays on:
// other software may rely on it. Reset is idempotent.
func Reset() error {
	errs := []error{removeVXLAN("reset")}
	routes, err := retryDump("routes", func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	})
	errs = append(errs, err)
	for _, r := range routes {
		if err := netlink.RouteDel(&r); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("failed to remove route to %s: %w", r.Dst, err))
		}
	}
	for _, ipt := range iptablesBackends() {
		errs = append(errs, resetIPTables(ipt))
	}
	return errors.Join(errs...)
}

// iptablesBackends returns one handle per distinct iptables binary: the
// default and, when installed, the legacy and nft ones, so chains made
// under either are found.
func iptablesBackends() []*iptables.IPTables {
	var out []*iptables.IPTables
	seen := map[string]bool{}
	for _, name := range []string{"iptables", "iptables-legacy", "iptables-nft"} {
		path, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		ipt, err := iptables.New(iptables.Path(path))
		if err != nil {
			continue
		}
		// The multi-call binaries pick the backend by name, so tell them
		// apart by what they report.
		mode := ""
		if out, err := exec.Command(path, "--version").Output(); err == nil {
			mode = strings.TrimSpace(string(out))
		} else {
			mode, _ = filepath.EvalSymlinks(path)
		}
		if !seen[mode] {
			seen[mode] = true
			out = append(out, ipt)
		}
	}
	return out
}

func resetIPTables(ipt *iptables.IPTables) error {
	var errs []error
	for _, j := range jumps {
		errs = append(errs, cni.RemoveChains(ipt, j.table, func(c string) bool { return c == j.chain }))
	}
	return errors.Join(errs...)
}
