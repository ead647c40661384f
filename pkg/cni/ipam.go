package cni

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	ipamLockFile   = "lock"
	ipamCursorFile = "last_reserved_ip"
)

// allocator hands out IPv4 addresses of a subnet, one file per address in
// dir holding "<containerID>\n<ifname>\n". Files are created with O_EXCL, so
// two plugin processes never get the same address; a flock on dir/lock also
// makes "look up, else allocate" atomic for one attachment. The last
// reserved address is kept so a released address is not reused at once.
type allocator struct {
	dir     string
	subnet  *net.IPNet
	gateway net.IP
}

// allocation is one reserved address.
type allocation struct {
	IP          net.IP
	ContainerID string
	IfName      string
}

func newAllocator(nw *network) *allocator {
	return &allocator{dir: nw.ipamDir, subnet: nw.subnet, gateway: nw.gateway.IP}
}

// first and last usable addresses (network, gateway and broadcast skipped).
func (a *allocator) bounds() (first, last uint32) {
	base := binary.BigEndian.Uint32(a.subnet.IP.To4())
	ones, bits := a.subnet.Mask.Size()
	size := uint32(1) << uint(bits-ones)
	return base + 2, base + size - 2
}

func ipAdd(ip net.IP, n uint32) net.IP {
	v := binary.BigEndian.Uint32(ip.To4()) + n
	out := make(net.IP, 4)
	binary.BigEndian.PutUint32(out, v)
	return out
}

func ipToU32(ip net.IP) uint32 { return binary.BigEndian.Uint32(ip.To4()) }

func u32ToIP(v uint32) net.IP {
	out := make(net.IP, 4)
	binary.BigEndian.PutUint32(out, v)
	return out
}

// lock takes an exclusive flock on dir/lock, creating dir when needed.
func (a *allocator) lock() (func(), error) {
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create IPAM dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(a.dir, ipamLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("failed to open IPAM lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("failed to lock IPAM dir: %w", err)
	}
	return func() { _ = f.Close() }, nil // closing releases the flock
}

// list returns every allocation of the subnet found in dir.
func (a *allocator) list() ([]allocation, error) {
	entries, err := os.ReadDir(a.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read IPAM dir: %w", err)
	}
	var out []allocation
	for _, e := range entries {
		ip := net.ParseIP(e.Name()).To4()
		if ip == nil || !a.subnet.Contains(ip) || e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(a.dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // released meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("failed to read IPAM allocation: %w", err)
		}
		id, ifname, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
		out = append(out, allocation{IP: ip, ContainerID: strings.TrimSpace(id), IfName: strings.TrimSpace(ifname)})
	}
	return out, nil
}

func findAllocation(all []allocation, id, ifname string) net.IP {
	for _, al := range all {
		if al.ContainerID == id && al.IfName == ifname {
			return al.IP
		}
	}
	return nil
}

// Lookup returns the address held by containerID+ifname, or nil.
func (a *allocator) Lookup(id, ifname string) (net.IP, error) {
	all, err := a.list()
	if err != nil {
		return nil, err
	}
	return findAllocation(all, id, ifname), nil
}

// Allocate reserves an address for containerID+ifname, or returns the one it
// already holds (then fresh is false).
func (a *allocator) Allocate(id, ifname string) (ip net.IP, fresh bool, err error) {
	if id == "" || ifname == "" || strings.ContainsAny(id+ifname, "\n") {
		return nil, false, fmt.Errorf("invalid attachment %q/%q: container ID and interface name are required", id, ifname)
	}
	unlock, err := a.lock()
	if err != nil {
		return nil, false, err
	}
	defer unlock()

	all, err := a.list()
	if err != nil {
		return nil, false, err
	}
	if ip := findAllocation(all, id, ifname); ip != nil {
		return ip, false, nil
	}
	ip, err = a.allocateNew(id, ifname)
	return ip, err == nil, err
}

func (a *allocator) allocateNew(id, ifname string) (net.IP, error) {

	first, last := a.bounds()
	start := first
	if data, err := os.ReadFile(filepath.Join(a.dir, ipamCursorFile)); err == nil {
		if ip := net.ParseIP(strings.TrimSpace(string(data))).To4(); ip != nil {
			if v := ipToU32(ip); v >= first && v < last {
				start = v + 1
			}
		}
	}
	content := []byte(id + "\n" + ifname + "\n")
	n := last - first + 1
	for i := uint32(0); i < n; i++ {
		v := first + (start-first+i)%n
		ip := u32ToIP(v)
		ok, err := a.reserve(ip, content)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		// The cursor is only a hint; a failed write just means earlier reuse.
		_ = writeFileAtomic(filepath.Join(a.dir, ipamCursorFile), []byte(ip.String()+"\n"), 0o600, false)
		return ip, nil
	}
	inUse := 0
	if all, err := a.list(); err == nil {
		inUse = len(all)
	}
	return nil, fmt.Errorf("no free address in %s (%d in use): delete unused pods, or give the node a larger podCIDR", a.subnet, inUse)
}

// reserve creates the file for ip with O_EXCL; false when it is taken.
func (a *allocator) reserve(ip net.IP, content []byte) (bool, error) {
	path := filepath.Join(a.dir, ip.String())
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("failed to reserve %s: %w", ip, err)
	}
	_, werr := f.Write(content)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(path)
		return false, fmt.Errorf("failed to reserve %s: %w", ip, werr)
	}
	return true, nil
}

// Release frees every address held by containerID+ifname; none is success.
func (a *allocator) Release(id, ifname string) error {
	if _, err := os.Stat(a.dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	unlock, err := a.lock()
	if err != nil {
		return err
	}
	defer unlock()
	all, err := a.list()
	if err != nil {
		return err
	}
	var errs []error
	for _, al := range all {
		if al.ContainerID == id && al.IfName == ifname {
			errs = append(errs, a.remove(al.IP))
		}
	}
	return errors.Join(errs...)
}

// ReleaseExcept frees every allocation whose attachment keep rejects, and
// returns the released ones.
func (a *allocator) ReleaseExcept(keep func(id, ifname string) bool) ([]allocation, error) {
	if _, err := os.Stat(a.dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	unlock, err := a.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	all, err := a.list()
	if err != nil {
		return nil, err
	}
	var released []allocation
	var errs []error
	for _, al := range all {
		if keep(al.ContainerID, al.IfName) {
			continue
		}
		if err := a.remove(al.IP); err != nil {
			errs = append(errs, err)
			continue
		}
		released = append(released, al)
	}
	return released, errors.Join(errs...)
}

func (a *allocator) remove(ip net.IP) error {
	err := os.Remove(filepath.Join(a.dir, ip.String()))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("failed to release %s: %w", ip, err)
	}
	return nil
}
