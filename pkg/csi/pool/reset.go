package pool

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Reset removes every volume and snapshot of the pool at root, what is
// mounted below it, the loop devices over its files and, when root is the
// pool image's mount, the mount and the image itself. A btrfs file system
// the admin mounted at root stays mounted (and empty). Nothing that is gone
// already is an error, so a second run does nothing.
func Reset(root, image string) error {
	var errs []error
	mounts, err := MountPoints()
	if err != nil {
		return err
	}
	var below []string
	for _, m := range mounts {
		if strings.HasPrefix(m, root+"/") {
			below = append(below, m)
		}
	}
	slices.SortFunc(below, func(a, b string) int { return len(b) - len(a) })
	for _, m := range slices.Compact(below) {
		if err := unix.Unmount(m, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
			}
		}
	}
	errs = append(errs, DetachLoopsBelow(root))
	if isBtrfsMount(root) {
		for _, kind := range []string{"snapshots", "volumes"} {
			ids, _ := listDir(filepath.Join(root, kind))
			for _, id := range ids {
				errs = append(errs, deleteSubvolume(filepath.Join(root, kind, id)))
			}
		}
		if ours, _ := findLoop(image); ours != "" && image != "" {
			if err := unix.Unmount(root, 0); err != nil {
				errs = append(errs, fmt.Errorf("unmount the pool %s: %w", root, err))
			}
			errs = append(errs, detachLoop(image))
		}
	}
	if image != "" {
		if err := os.Remove(image); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// DetachLoopsBelow detaches the loop devices whose backing file is below dir.
func DetachLoopsBelow(dir string) error {
	var errs []error
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		backing := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), " (deleted)")
		if strings.HasPrefix(backing, dir+"/") {
			errs = append(errs, detachLoop(backing))
		}
	}
	return errors.Join(errs...)
}

// MountPoints lists this mount namespace's mount points.
func MountPoints() ([]string, error) {
	mounts, err := mountInfo()
	var out []string
	for _, m := range mounts {
		out = append(out, m.point)
	}
	return out, err
}

// mountsOf lists the mount points whose source is dev, except except.
func mountsOf(dev, except string) []string {
	mounts, _ := mountInfo()
	var out []string
	for _, m := range mounts {
		if m.source == dev && m.point != except {
			out = append(out, m.point)
		}
	}
	return out
}

type mount struct{ point, source string }

// mountInfo reads /proc/self/mountinfo: each mount's point and source.
func mountInfo() ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	unescape := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	var out []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		m := mount{point: unescape.Replace(fields[4])}
		for i, f := range fields {
			if f == "-" && i+2 < len(fields) {
				m.source = unescape.Replace(fields[i+2])
			}
		}
		out = append(out, m)
	}
	return out, sc.Err()
}
