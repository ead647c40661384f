package pool

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const mib = 1 << 20

// openTestPool opens a real pool in a temp dir (an image file loop-mounted
// as btrfs, or loop-ext4) and resets it at the end, checking that nothing is
// left: no mount, no loop device, no image.
func openTestPool(t *testing.T, backend string) Pool {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root: the pool mounts file systems and attaches loop devices")
	}
	if backend == BackendBtrfs {
		if why := btrfsUnavailable(); why != "" {
			t.Skip("btrfs pool unavailable: " + why)
		}
	} else if why := loopExt4Available(); why != "" {
		t.Skip("loop-ext4 pool unavailable: " + why)
	}
	dir := t.TempDir()
	root, image := filepath.Join(dir, "csi"), filepath.Join(dir, "csi.img")
	p, err := Open(Options{Root: root, Image: image, ImageSize: 1024 * mib, Backend: backend})
	if err != nil {
		t.Fatal(err)
	}
	if p.Backend() != backend {
		t.Fatalf("backend %s, want %s", p.Backend(), backend)
	}
	t.Cleanup(func() {
		if err := Reset(root, image); err != nil {
			t.Errorf("reset: %v", err)
		}
		mounts, _ := MountPoints()
		for _, m := range mounts {
			if strings.HasPrefix(m, dir) {
				t.Errorf("still mounted after reset: %s", m)
			}
		}
		if dev, _ := findLoop(image); dev != "" {
			t.Errorf("loop device %s still over the image", dev)
		}
		files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
		for _, f := range files {
			if data, _ := os.ReadFile(f); strings.HasPrefix(string(data), dir) {
				t.Errorf("loop device still over %s", strings.TrimSpace(string(data)))
			}
		}
		if _, err := os.Stat(image); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("image still there: %v", err)
		}
	})
	return p
}

// writeUntilFull writes n bytes of pattern to dir/name and returns how much
// got written and the error that stopped it.
func writeUntilFull(t *testing.T, path string, n int) (int, error) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte("vcs!"), mib/4)
	written := 0
	for written < n {
		k, err := f.Write(chunk)
		written += k
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			return written, err
		}
	}
	return written, f.Sync()
}

func isFull(err error) bool { return errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.ENOSPC) }

func TestBtrfsPool(t *testing.T)    { testPool(t, BackendBtrfs) }
func TestLoopExt4Pool(t *testing.T) { testPool(t, BackendLoopExt4) }

func testPool(t *testing.T, backend string) {
	p := openTestPool(t, backend)
	before, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.CreateVolume("vol-a", VolumeRequest{CapacityBytes: 64 * mib})
	if err != nil {
		t.Fatal(err)
	}
	if v.CapacityBytes != 64*mib || v.Block() {
		t.Fatalf("volume %+v, want a 64MiB Mount volume", v)
	}
	again, err := p.CreateVolume("vol-a", VolumeRequest{CapacityBytes: 64 * mib})
	if err != nil || again.Dir != v.Dir {
		t.Fatalf("second create: %+v, %v", again, err)
	}
	after, _ := p.Stats()
	if after.Volumes != before.Volumes+1 || after.FreeBytes > before.FreeBytes-64*mib+after.UsedBytes {
		t.Fatalf("stats after create %+v, before %+v: want one more volume and 64MiB less free", after, before)
	}

	// The limit holds: writing 100MiB into 64MiB stops near 64MiB.
	n, err := writeUntilFull(t, filepath.Join(v.Dir, "data"), 100*mib)
	if !isFull(err) {
		t.Fatalf("wrote %d bytes into a 64MiB volume, err %v; want EDQUOT/ENOSPC", n, err)
	}
	if n > 64*mib || n < 40*mib {
		t.Fatalf("wrote %dMiB before the limit, want 40-64MiB", n/mib)
	}
	used, _ := p.Volume("vol-a")
	if used.UsedBytes < int64(n)*9/10 || used.UsedBytes > 70*mib {
		t.Fatalf("used %d after writing %d", used.UsedBytes, n)
	}

	// Online raise: the new room is usable at once.
	os.Remove(filepath.Join(v.Dir, "data"))
	resized, err := p.ResizeVolume("vol-a", 128*mib)
	switch {
	case backend == BackendLoopExt4 && !hasCapSysResource():
		if err == nil || !strings.Contains(err.Error(), "CAP_SYS_RESOURCE") {
			t.Fatalf("online ext4 growth without CAP_SYS_RESOURCE: %v, want an error naming it", err)
		}
		t.Log("no CAP_SYS_RESOURCE here: online ext4 growth refused as expected, not exercised")
	case err != nil || resized.CapacityBytes != 128*mib:
		t.Fatalf("resize: %+v, %v", resized, err)
	default:
		if n, err := writeUntilFull(t, filepath.Join(v.Dir, "data"), 90*mib); err != nil {
			t.Fatalf("after raising the limit to 128MiB, writing 90MiB failed after %dMiB: %v", n/mib, err)
		}
	}
	if err := os.WriteFile(filepath.Join(v.Dir, "mark"), []byte("before snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Snapshot, then restore and clone: same bytes, independent copies.
	s, err := p.CreateSnapshot("snap-a", "vol-a")
	if err != nil {
		t.Fatal(err)
	}
	if s.SizeBytes < 64*mib || s.CreationTime.IsZero() {
		t.Fatalf("snapshot %+v, want the volume's size and a creation time", s)
	}
	os.WriteFile(filepath.Join(v.Dir, "mark"), []byte("after snapshot"), 0o600)
	r, err := p.CreateVolume("vol-r", VolumeRequest{CapacityBytes: 256 * mib, Source: &Source{Snapshot: true, ID: "snap-a"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(r.Dir, "mark")); string(got) != "before snapshot" {
		t.Fatalf("restored volume holds %q", got)
	}
	if r.CapacityBytes != 256*mib {
		t.Fatalf("restored capacity %d, want 256MiB", r.CapacityBytes)
	}
	c, err := p.CreateVolume("vol-c", VolumeRequest{CapacityBytes: 128 * mib, Source: &Source{ID: "vol-a"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(c.Dir, "mark")); string(got) != "after snapshot" {
		t.Fatalf("cloned volume holds %q", got)
	}
	if _, err := p.CreateVolume("vol-x", VolumeRequest{CapacityBytes: mib, Source: &Source{Snapshot: true, ID: "nope"}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("restore from a missing snapshot: %v, want ErrNotFound", err)
	}
	if _, err := p.CreateVolume("vol-big", VolumeRequest{CapacityBytes: 1 << 40}); !errors.Is(err, ErrOutOfSpace) {
		t.Fatalf("1TiB volume in a small pool: %v, want ErrOutOfSpace", err)
	}

	// Block: a file of the volume's size behind a loop device, growable.
	b, err := p.CreateVolume("vol-b", VolumeRequest{CapacityBytes: 32 * mib, Block: true})
	if err != nil {
		t.Fatal(err)
	}
	if !b.Block() || b.CapacityBytes != 32*mib {
		t.Fatalf("block volume %+v", b)
	}
	dev, err := LoopDevice(b.BlockFile)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := LoopDevice(b.BlockFile); again != dev {
		t.Fatalf("second attach gave %s, want the same %s", again, dev)
	}
	if _, err := p.ResizeVolume("vol-b", 48*mib); err != nil {
		t.Fatal(err)
	}
	if size := deviceSize(t, dev); size != 48*mib {
		t.Fatalf("loop device size %d after growing to 48MiB", size)
	}
	if err := DetachLoopDevice(b.BlockFile); err != nil {
		t.Fatal(err)
	}

	// A volume mounted elsewhere too (a staging mount) is not deleted half-way.
	other := filepath.Join(t.TempDir(), "staged")
	os.MkdirAll(other, 0o700)
	if err := syscall.Mount(c.Dir, other, "", syscall.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	err = p.DeleteVolume("vol-c")
	syscall.Unmount(other, 0)
	if backend == BackendLoopExt4 && (err == nil || !strings.Contains(err.Error(), "still mounted at "+other)) {
		t.Fatalf("delete of a volume mounted at %s: %v, want an error naming it", other, err)
	}

	ids, _ := p.Volumes()
	if backend == BackendBtrfs {
		ids = append(ids, "vol-c") // btrfs deleted it despite the bind mount (the mount keeps its data)
	}
	if len(ids) != 4 {
		t.Fatalf("volumes %v, want 4", ids)
	}
	for _, id := range []string{"vol-a", "vol-r", "vol-c", "vol-b"} {
		if err := p.DeleteVolume(id); err != nil {
			t.Fatal(err)
		}
		if err := p.DeleteVolume(id); err != nil {
			t.Fatalf("second delete of %s: %v", id, err)
		}
	}
	if err := p.DeleteSnapshot("snap-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Snapshot("snap-a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted snapshot: %v", err)
	}
	if ids, _ := p.Volumes(); len(ids) != 0 {
		t.Fatalf("volumes left %v", ids)
	}
	if err := CheckID("../x"); err == nil {
		t.Fatal("CheckID accepted ../x")
	}
}

func deviceSize(t *testing.T, dev string) int64 {
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := f.Seek(0, 2)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The pool left mounted by an earlier start (kill -9, restart) is reused as
// it is, with its volumes.
func TestBtrfsPoolReopen(t *testing.T) {
	p := openTestPool(t, BackendBtrfs)
	if _, err := p.CreateVolume("keep", VolumeRequest{CapacityBytes: 16 * mib}); err != nil {
		t.Fatal(err)
	}
	again, err := Open(Options{Root: p.Root(), Image: "/nonexistent/should-not-be-made", ImageSize: mib})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := again.Volume("keep"); err != nil || v.CapacityBytes != 16*mib {
		t.Fatalf("volume after reopening: %+v, %v", v, err)
	}
}

func TestImageTooLarge(t *testing.T) {
	if os.Getuid() != 0 || btrfsUnavailable() != "" {
		t.Skip("needs root and btrfs")
	}
	dir := t.TempDir()
	_, err := Open(Options{Root: filepath.Join(dir, "csi"), Image: filepath.Join(dir, "csi.img"), ImageSize: 1 << 60})
	if err == nil || !strings.Contains(err.Error(), "does not fit") || !strings.Contains(err.Error(), "storagePoolSize") {
		t.Fatalf("err %v, want a 'does not fit ... storagePoolSize' error", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "csi.img")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("an image was left behind")
	}
}
