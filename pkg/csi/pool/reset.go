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
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 {
			out = append(out, strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(fields[4]))
		}
	}
	return out, sc.Err()
}

// mountsOf lists the mount points whose source is dev, except except.
func mountsOf(dev, except string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if f == "-" && i+2 < len(fields) && fields[i+2] == dev && len(fields) > 4 && fields[4] != except {
				out = append(out, fields[4])
			}
		}
	}
	return out
}
