package cni

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
)

// Reset removes, in the current netns, everything the plugin made: the
// bridge (named in confDir's conflist, else "vcs0"), every host-side veth
// named vcs<8 hex>, the plugin's iptables chains (VCS-HOSTPORTS,
// VCS-HOSTPORTS-MASQ, VCS-HP-*) and their jumps, the IPAM state in ipamDir
// and confDir/10-vcs.conflist. Running it again, or on a clean machine, is
// success.
func Reset(ipamDir, confDir string) error {
	var errs []error
	if err := deleteVeths(func(string) bool { return true }); err != nil {
		errs = append(errs, err)
	}
	bridge := bridgeFromConfList(confDir)
	if br, err := netlink.LinkByName(bridge); err == nil {
		if _, ok := br.(*netlink.Bridge); ok {
			if err := netlink.LinkDel(br); err != nil {
				errs = append(errs, fmt.Errorf("failed to delete bridge %q: %w", bridge, err))
			}
		}
	}
	if ipt, err := newIPTables(); err != nil {
		errs = append(errs, err)
	} else if err := removeAllHostports(ipt); err != nil {
		errs = append(errs, err)
	}
	if ipamDir != "" {
		if err := os.RemoveAll(ipamDir); err != nil {
			errs = append(errs, fmt.Errorf("failed to remove IPAM state: %w", err))
		}
	}
	if confDir != "" {
		err := os.Remove(filepath.Join(confDir, ConfListFile))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("failed to remove CNI config: %w", err))
		}
	}
	return errors.Join(errs...)
}
