package cni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	k8stypes "k8s.io/apimachinery/pkg/types"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni/announce"
)

// supportedVersions are the spec versions the plugin speaks (GC and STATUS
// need 1.1.0).
var supportedVersions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

const about = "vcs-cni: vcluster-standalone pod network (bridge, host-local IPAM, hostPort)"

// PluginMain runs the CNI plugin: it reads CNI_COMMAND and the other CNI_*
// variables and the config on stdin, writes the result on stdout, and exits
// the process with status 1 on error (returning normally on success).
// cmd/vcs-cni is nothing else.
func PluginMain() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		GC:     cmdGC,
		Status: cmdStatus,
	}, supportedVersions, about)
}

func cmdAdd(args *skel.CmdArgs) error {
	conf, _, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	res, err := add(args)
	if err != nil {
		return err
	}
	return types.PrintResult(res, conf.CNIVersion)
}

func spec(nw *network, args *skel.CmdArgs, ip net.IP) vethSpec {
	return vethSpec{
		hostName: hostVethName(args.ContainerID, args.IfName),
		ifName:   args.IfName,
		mtu:      nw.mtu,
		addr:     &net.IPNet{IP: ip, Mask: nw.subnet.Mask},
		gateway:  nw.gateway.IP,
	}
}

// add attaches a pod, in the current (host) netns, and returns the result.
func add(args *skel.CmdArgs) (res *current.Result, err error) {
	conf, nw, err := parseConf(args.StdinData)
	if err != nil {
		return nil, err
	}
	if args.Netns == "" {
		return nil, errors.New("CNI_NETNS is required for ADD")
	}
	netns, err := ns.GetNS(args.Netns)
	if err != nil {
		return nil, fmt.Errorf("failed to open pod netns %q: %w", args.Netns, err)
	}
	defer func() { _ = netns.Close() }()

	alloc := newAllocator(nw)
	ip, fresh, err := alloc.Allocate(args.ContainerID, args.IfName)
	if err != nil {
		return nil, fmt.Errorf("failed to allocate an address: %w", err)
	}
	s := spec(nw, args, ip)
	defer func() {
		if err != nil && fresh {
			// Leave nothing half-made behind a first ADD that failed.
			if conf.RuntimeConfig != nil && len(conf.RuntimeConfig.PortMappings) > 0 {
				if ipt, e := newIPTables(); e == nil {
					_ = teardownPodChain(ipt, podChainName(args.ContainerID, args.IfName))
				}
			}
			_ = deleteHostVeth(s.hostName)
			_ = alloc.Release(args.ContainerID, args.IfName)
		}
	}()

	br, err := ensureBridge(nw)
	if err != nil {
		return nil, err
	}
	host, cont, err := setupVeth(netns, br, s)
	if err != nil {
		return nil, err
	}
	if conf.RuntimeConfig != nil && len(conf.RuntimeConfig.PortMappings) > 0 {
		ipt, err := newIPTables()
		if err != nil {
			return nil, err
		}
		if err := setupHostports(ipt, args.ContainerID, args.IfName, ip, nw.subnet, conf.RuntimeConfig.PortMappings); err != nil {
			return nil, err
		}
	}
	if conf.PolicySocket != "" {
		if err := announcePod(conf.PolicySocket, args.Args, ip); err != nil {
			return nil, err
		}
	}
	return &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: br.Attrs().Name, Mac: br.Attrs().HardwareAddr.String()},
			{Name: host.Attrs().Name, Mac: host.Attrs().HardwareAddr.String()},
			{Name: cont.Attrs().Name, Mac: cont.Attrs().HardwareAddr.String(), Mtu: cont.Attrs().MTU, Sandbox: args.Netns},
		},
		IPs: []*current.IPConfig{{
			Interface: current.Int(2),
			Address:   *s.addr,
			Gateway:   nw.gateway.IP,
		}},
		Routes: []*types.Route{{Dst: *defaultDst(), GW: nw.gateway.IP}},
	}, nil
}

// announcePod tells node-agent the pod's address and waits until the pod's
// network policies are programmed, so the pod is never reachable before.
// Sandboxes without K8S_POD_* arguments are not pods and are not announced.
func announcePod(socket, cniArgs string, ip net.IP) error {
	a := announce.Attachment{IP: ip.String()}
	for _, kv := range strings.Split(cniArgs, ";") {
		key, value, _ := strings.Cut(kv, "=")
		switch key {
		case "K8S_POD_NAMESPACE":
			a.Namespace = value
		case "K8S_POD_NAME":
			a.Name = value
		case "K8S_POD_UID":
			a.UID = k8stypes.UID(value)
		}
	}
	if a.Namespace == "" || a.Name == "" || a.UID == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), announceTimeout)
	defer cancel()
	return announce.Send(ctx, socket, a)
}

// announceTimeout is how long ADD waits for node-agent to program a pod.
const announceTimeout = 40 * time.Second

// cmdDel detaches a pod. Everything missing is success: the netns may be
// gone and the runtime retries.
func cmdDel(args *skel.CmdArgs) error {
	_, nw, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	var errs []error
	if ipt, err := newIPTables(); err != nil {
		errs = append(errs, err)
	} else if err := teardownPodChain(ipt, podChainName(args.ContainerID, args.IfName)); err != nil {
		errs = append(errs, err)
	}
	if err := deleteHostVeth(hostVethName(args.ContainerID, args.IfName)); err != nil {
		errs = append(errs, err)
	}
	if err := newAllocator(nw).Release(args.ContainerID, args.IfName); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// cmdCheck verifies that the attachment is still as ADD made it.
func cmdCheck(args *skel.CmdArgs) error {
	conf, nw, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	ip, err := newAllocator(nw).Lookup(args.ContainerID, args.IfName)
	if err != nil {
		return err
	}
	if ip == nil {
		return fmt.Errorf("no address is allocated to container %s interface %s", args.ContainerID, args.IfName)
	}
	if conf.RawPrevResult != nil {
		if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
			return fmt.Errorf("failed to parse prevResult: %w", err)
		}
		prev, err := current.NewResultFromResult(conf.PrevResult)
		if err != nil {
			return fmt.Errorf("failed to convert prevResult: %w", err)
		}
		found := false
		for _, c := range prev.IPs {
			if c.Address.IP.Equal(ip) {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("prevResult does not hold the allocated address %s", ip)
		}
	}
	netns, err := ns.GetNS(args.Netns)
	if err != nil {
		return fmt.Errorf("failed to open pod netns %q: %w", args.Netns, err)
	}
	defer func() { _ = netns.Close() }()
	return checkAttachment(netns, nw, spec(nw, args, ip))
}

// cmdGC releases every allocation, hostPort chain and veth whose attachment
// is not in cni.dev/valid-attachments.
func cmdGC(args *skel.CmdArgs) error {
	conf, nw, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	valid := map[string]bool{}
	validChains := map[string]bool{}
	validVeths := map[string]bool{}
	for _, a := range conf.ValidAttachments {
		valid[a.ContainerID+"/"+a.IfName] = true
		validChains[podChainName(a.ContainerID, a.IfName)] = true
		validVeths[hostVethName(a.ContainerID, a.IfName)] = true
	}
	var errs []error
	if ipt, err := newIPTables(); err != nil {
		errs = append(errs, err)
	} else if err := teardownStaleChains(ipt, func(c string) bool { return validChains[c] }); err != nil {
		errs = append(errs, err)
	}
	if err := deleteVeths(func(name string) bool { return !validVeths[name] }); err != nil {
		errs = append(errs, err)
	}
	if _, err := newAllocator(nw).ReleaseExcept(func(id, ifname string) bool { return valid[id+"/"+ifname] }); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// cmdStatus reports whether the plugin can take ADDs: valid config and a
// usable IPAM dir.
func cmdStatus(args *skel.CmdArgs) error {
	_, nw, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(nw.ipamDir, 0o700); err != nil {
		return &types.Error{Code: types.ErrPluginNotAvailable, Msg: "IPAM dir is not usable", Details: err.Error()}
	}
	return nil
}

// deleteVeths deletes the plugin's host-side veths (vcs + 8 hex) that del selects.
func deleteVeths(del func(name string) bool) error {
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		return fmt.Errorf("failed to list links: %w", err)
	}
	var errs []error
	for _, l := range links {
		name := l.Attrs().Name
		if _, ok := l.(*netlink.Veth); !ok || !hostVethRE.MatchString(name) || !del(name) {
			continue
		}
		if err := deleteHostVeth(name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
