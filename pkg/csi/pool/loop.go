package pool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Loop devices, through the loop-control and LOOP_* ioctls.

// attachLoop backs a free loop device with file and returns its path and an
// open descriptor of it. With autoclear the kernel detaches the device when
// its last user goes (a mount holds it); the caller closes the descriptor
// once the device is in use.
func attachLoop(file string, autoclear bool) (string, *os.File, error) {
	if dev, err := findLoop(file); err == nil && dev != "" {
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		return dev, f, err
	}
	backing, err := os.OpenFile(file, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, err
	}
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("loop devices are not available: %w", err)
	}
	defer ctl.Close()
	for range 10 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", nil, fmt.Errorf("find a free loop device: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		if err := ensureLoopNode(dev, n); err != nil {
			return "", nil, err
		}
		f, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", nil, err
		}
		cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_DIRECT_IO
		if autoclear {
			cfg.Info.Flags |= unix.LO_FLAGS_AUTOCLEAR
		}
		copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], file)
		err = unix.IoctlLoopConfigure(int(f.Fd()), &cfg)
		if errors.Is(err, unix.EINVAL) {
			// Direct I/O needs aligned backing storage; go without it.
			cfg.Info.Flags &^= unix.LO_FLAGS_DIRECT_IO
			err = unix.IoctlLoopConfigure(int(f.Fd()), &cfg)
		}
		if errors.Is(err, unix.EBUSY) {
			f.Close() // taken meanwhile by someone else: ask again
			continue
		}
		if err != nil {
			f.Close()
			return "", nil, fmt.Errorf("attach %s to %s: %w", file, dev, err)
		}
		return dev, f, nil
	}
	return "", nil, fmt.Errorf("attach %s: every free loop device was taken meanwhile", file)
}

// ensureLoopNode creates /dev/loopN where /dev is not the kernel's devtmpfs
// (a container's), so a device the control node made can be opened.
func ensureLoopNode(dev string, n int) error {
	if _, err := os.Stat(dev); err == nil {
		return nil
	}
	if err := unix.Mknod(dev, unix.S_IFBLK|0o660, int(unix.Mkdev(7, uint32(n)))); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create %s: %w", dev, err)
	}
	return nil
}

// findLoop is the loop device backed by file, or "" when none is.
func findLoop(file string) (string, error) {
	devs, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, p := range devs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), " (deleted)") == file {
			return "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(p))), nil
		}
	}
	return "", nil
}

// detachLoop detaches every loop device backed by file. The kernel tears a
// device down asynchronously (and an autoclear one after its last close):
// wait until it is gone (seconds on a loaded machine).
func detachLoop(file string) error {
	for i := 0; i < 600; i++ {
		if i > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		dev, _ := findLoop(file)
		if dev == "" {
			return nil
		}
		if err := loopIoctl(dev, unix.LOOP_CLR_FD); err != nil && !errors.Is(err, unix.ENXIO) {
			return fmt.Errorf("detach %s from %s: %w", dev, file, err)
		}
	}
	if dev, _ := findLoop(file); dev != "" {
		return fmt.Errorf("loop device %s over %s would not detach", dev, file)
	}
	return nil
}

// loopIoctl issues an argument-less LOOP_* request on the device dev.
func loopIoctl(dev string, req uint) error {
	f, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.IoctlSetInt(int(f.Fd()), req, 0)
}

// refreshLoopSize makes the loop device over file see the file's new size.
func refreshLoopSize(file string) error {
	dev, _ := findLoop(file)
	if dev == "" {
		return nil
	}
	if err := loopIoctl(dev, unix.LOOP_SET_CAPACITY); err != nil {
		return fmt.Errorf("grow %s: %w", dev, err)
	}
	return nil
}

// LoopDevice attaches a loop device (no autoclear) over a block volume's file
// and returns its path; an existing one is reused.
func LoopDevice(file string) (string, error) {
	dev, f, err := attachLoop(file, false)
	if err != nil {
		return "", err
	}
	f.Close()
	return dev, nil
}

// DetachLoopDevice detaches the loop device over a block volume's file.
func DetachLoopDevice(file string) error { return detachLoop(file) }
