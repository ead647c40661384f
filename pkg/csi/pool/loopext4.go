package pool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// loopExt4Pool keeps each volume in a sparse file images/<id>.ext4 (Mount,
// formatted ext4 and mounted at volumes/<id>) or images/<id>.raw (Block),
// presented through a loop device. The file's size is the limit; snapshots
// are sparse copies in snapshots/.
type loopExt4Pool struct {
	root string
}

const (
	ext4Suffix = ".ext4"
	rawSuffix  = ".raw"
)

// loopExt4Available says why this host cannot run the loop-ext4 backend, or "".
func loopExt4Available() string {
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return "no /dev/loop-control"
	}
	for _, tool := range []string{"mkfs.ext4", "resize2fs"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is not installed (package e2fsprogs)"
		}
	}
	return ""
}

func hasLoopExt4Volumes(root string) bool {
	entries, _ := os.ReadDir(filepath.Join(root, "images"))
	return len(entries) > 0
}

func openLoopExt4(root string) (Pool, error) {
	if why := loopExt4Available(); why != "" {
		return nil, fmt.Errorf("loop-ext4 pool: %s", why)
	}
	p := &loopExt4Pool{root: root}
	for _, d := range []string{"images", "volumes", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, err
		}
	}
	// After a reboot the loop devices are gone: mount the volumes again.
	ids, err := p.Volumes()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, id := range ids {
		if _, err := os.Stat(p.image(id, ext4Suffix)); err == nil {
			errs = append(errs, p.mount(id))
		}
	}
	return p, errors.Join(errs...)
}

func (p *loopExt4Pool) Backend() string { return BackendLoopExt4 }
func (p *loopExt4Pool) Root() string    { return p.root }

func (p *loopExt4Pool) image(id, suffix string) string {
	return filepath.Join(p.root, "images", id+suffix)
}
func (p *loopExt4Pool) dir(id string) string { return filepath.Join(p.root, "volumes", id) }
func (p *loopExt4Pool) snapshotFile(id, suffix string) string {
	return filepath.Join(p.root, "snapshots", id+suffix)
}

// file is the volume's image and its suffix, or ErrNotFound.
func (p *loopExt4Pool) file(id string) (string, string, error) {
	for _, s := range []string{ext4Suffix, rawSuffix} {
		if _, err := os.Stat(p.image(id, s)); err == nil {
			return p.image(id, s), s, nil
		}
	}
	return "", "", fmt.Errorf("volume %s: %w", id, ErrNotFound)
}

func (p *loopExt4Pool) snapshot(id string) (string, string, error) {
	for _, s := range []string{ext4Suffix, rawSuffix} {
		if _, err := os.Stat(p.snapshotFile(id, s)); err == nil {
			return p.snapshotFile(id, s), s, nil
		}
	}
	return "", "", fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
}

func (p *loopExt4Pool) mount(id string) error {
	dir := p.dir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if isMountPoint(dir) {
		return nil
	}
	dev, f, err := attachLoop(p.image(id, ext4Suffix), true)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Mount(dev, dir, "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount volume %s (%s): %w", id, dev, err)
	}
	return os.MkdirAll(p.dataDir(id), 0o755)
}

// dataDir is what a Mount volume shows its pod: a directory inside the
// file system, not its root. The kubelet counts every other mount of the
// same device and root as a user of the staging mount and would never
// unstage while the pool's own mount at volumes/<id> is there.
func (p *loopExt4Pool) dataDir(id string) string { return filepath.Join(p.dir(id), "data") }

func (p *loopExt4Pool) CreateVolume(id string, req VolumeRequest) (Volume, error) {
	if err := CheckID(id); err != nil {
		return Volume{}, err
	}
	if v, err := p.Volume(id); err == nil {
		if v.CapacityBytes < req.CapacityBytes {
			return p.ResizeVolume(id, req.CapacityBytes)
		}
		return v, nil
	}
	suffix := ext4Suffix
	if req.Block {
		suffix = rawSuffix
	}
	var src string
	if req.Source != nil {
		var err error
		if req.Source.Snapshot {
			src, _, err = p.snapshot(req.Source.ID)
		} else {
			src, _, err = p.file(req.Source.ID)
		}
		if err != nil {
			return Volume{}, fmt.Errorf("source %s: %w", req.Source.ID, ErrNotFound)
		}
	}
	if err := checkFree(p, id, req.CapacityBytes); err != nil {
		return Volume{}, err
	}
	file := p.image(id, suffix)
	tmp := file + ".tmp"
	if err := p.fill(tmp, src, req); err != nil {
		os.Remove(tmp)
		return Volume{}, err
	}
	if err := os.Rename(tmp, file); err != nil {
		return Volume{}, err
	}
	if !req.Block {
		if err := p.mount(id); err != nil {
			return Volume{}, err
		}
	}
	return p.Volume(id)
}

// fill writes a new volume file: a copy of src, or a fresh sparse file
// (formatted ext4 for a Mount volume).
func (p *loopExt4Pool) fill(file, src string, req VolumeRequest) error {
	if src != "" {
		if err := p.copyVolume(req.Source.ID, src, file); err != nil {
			return err
		}
		if err := growFile(file, req.CapacityBytes); err != nil || req.Block {
			return err
		}
		// Grown offline, before its first mount: no CAP_SYS_RESOURCE needed.
		// e2fsck exits 1 when it fixed something, which is fine here.
		if out, err := exec.Command("e2fsck", "-f", "-y", file).CombinedOutput(); err != nil {
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
				return fmt.Errorf("e2fsck %s: %v: %s", file, err, strings.TrimSpace(string(out)))
			}
		}
		return run("resize2fs", file)
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(req.CapacityBytes)
	f.Close()
	if err != nil || req.Block {
		return err
	}
	return run("mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", file)
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (p *loopExt4Pool) ResizeVolume(id string, capacity int64) (Volume, error) {
	file, suffix, err := p.file(id)
	if err != nil {
		return Volume{}, err
	}
	st, err := os.Stat(file)
	if err != nil {
		return Volume{}, err
	}
	if capacity > st.Size() {
		if err := checkFree(p, id, capacity-st.Size()); err != nil {
			return Volume{}, err
		}
		if err := os.Truncate(file, capacity); err != nil {
			return Volume{}, err
		}
		if err := refreshLoopSize(file); err != nil {
			return Volume{}, err
		}
	}
	if suffix == ext4Suffix {
		dev, _ := findLoop(file)
		if dev == "" {
			return Volume{}, fmt.Errorf("volume %s is not mounted", id)
		}
		// Online growth; a no-op when already full size.
		if !hasCapSysResource() {
			return Volume{}, fmt.Errorf("volume %s: growing a mounted ext4 file system needs CAP_SYS_RESOURCE, which node-agent lacks here", id)
		}
		if err := run("resize2fs", dev); err != nil {
			return Volume{}, err
		}
	}
	return p.Volume(id)
}

func (p *loopExt4Pool) DeleteVolume(id string) error {
	if err := CheckID(id); err != nil {
		return err
	}
	dir := p.dir(id)
	// Another mount of the volume's file system (a staging mount the
	// kubelet has not undone yet) keeps its loop device: say so and retry
	// later rather than leave the device behind.
	if dev, _ := findLoop(p.image(id, ext4Suffix)); dev != "" {
		if others := mountsOf(dev, dir); len(others) > 0 {
			return fmt.Errorf("volume %s is still mounted at %s", id, strings.Join(others, ", "))
		}
	}
	if isMountPoint(dir) {
		if err := unix.Unmount(dir, 0); err != nil {
			return fmt.Errorf("unmount volume %s: %w", id, err)
		}
	}
	var errs []error
	for _, s := range []string{ext4Suffix, rawSuffix} {
		errs = append(errs, detachLoop(p.image(id, s)))
		if err := os.Remove(p.image(id, s)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (p *loopExt4Pool) Volume(id string) (Volume, error) {
	if err := CheckID(id); err != nil {
		return Volume{}, err
	}
	file, suffix, err := p.file(id)
	if err != nil {
		return Volume{}, err
	}
	st, err := os.Stat(file)
	if err != nil {
		return Volume{}, err
	}
	v := Volume{ID: id, CapacityBytes: st.Size(), UsedBytes: st.Sys().(*syscall.Stat_t).Blocks * 512}
	if suffix == rawSuffix {
		v.BlockFile = file
		return v, nil
	}
	v.Dir = p.dataDir(id)
	var fs unix.Statfs_t
	if isMountPoint(p.dir(id)) && unix.Statfs(v.Dir, &fs) == nil {
		v.UsedBytes = int64(fs.Blocks-fs.Bfree) * fs.Bsize
	}
	return v, nil
}

func (p *loopExt4Pool) Volumes() ([]string, error) {
	return listImages(filepath.Join(p.root, "images"))
}

// listImages lists the ids of the volume files in dir.
func listImages(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		for _, s := range []string{ext4Suffix, rawSuffix} {
			if id, ok := strings.CutSuffix(e.Name(), s); ok && CheckID(id) == nil {
				ids = append(ids, id)
			}
		}
	}
	return ids, nil
}

func (p *loopExt4Pool) CreateSnapshot(id, volumeID string) (Snapshot, error) {
	if err := CheckID(id); err != nil {
		return Snapshot{}, err
	}
	if s, err := p.Snapshot(id); err == nil {
		return s, nil
	}
	file, suffix, err := p.file(volumeID)
	if err != nil {
		return Snapshot{}, err
	}
	dst := p.snapshotFile(id, suffix)
	if err := p.copyVolume(volumeID, file, dst+".tmp"); err != nil {
		os.Remove(dst + ".tmp")
		return Snapshot{}, err
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		return Snapshot{}, err
	}
	return p.Snapshot(id)
}

// FIFREEZE and FITHAW from linux/fs.h.
const (
	fiFreeze = 0xc0045877
	fiThaw   = 0xc0045878
)

// copyVolume copies the file of volume id; a mounted file system is frozen
// meanwhile, so the copy is consistent.
func (p *loopExt4Pool) copyVolume(id, file, dst string) error {
	if file == p.image(id, ext4Suffix) && isMountPoint(p.dir(id)) {
		thaw, err := freeze(p.dir(id))
		if err != nil {
			return err
		}
		defer thaw()
	}
	return copySparse(file, dst)
}

func freeze(dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := ioctl(int(f.Fd()), fiFreeze, nil); err != nil {
		f.Close()
		return nil, fmt.Errorf("freeze %s: %w", dir, err)
	}
	return func() {
		_ = ioctl(int(f.Fd()), fiThaw, nil)
		f.Close()
	}, nil
}

func (p *loopExt4Pool) DeleteSnapshot(id string) error {
	if err := CheckID(id); err != nil {
		return err
	}
	var errs []error
	for _, s := range []string{ext4Suffix, rawSuffix} {
		if err := os.Remove(p.snapshotFile(id, s)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (p *loopExt4Pool) Snapshot(id string) (Snapshot, error) {
	if err := CheckID(id); err != nil {
		return Snapshot{}, err
	}
	file, _, err := p.snapshot(id)
	if err != nil {
		return Snapshot{}, err
	}
	st, err := os.Stat(file)
	if err != nil {
		return Snapshot{}, err
	}
	return Snapshot{ID: id, SizeBytes: st.Size(), CreationTime: st.ModTime().UTC()}, nil
}

func (p *loopExt4Pool) Stats() (Stats, error) {
	ids, err := p.Volumes()
	if err != nil {
		return Stats{}, err
	}
	st := Stats{Backend: BackendLoopExt4, Volumes: len(ids)}
	var reserved int64
	for _, id := range ids {
		if v, err := p.Volume(id); err == nil {
			reserved += v.CapacityBytes
			st.UsedBytes += v.UsedBytes
		}
	}
	snaps, _ := listImages(filepath.Join(p.root, "snapshots"))
	st.Snapshots = len(snaps)
	return st, fillSpace(&st, p.root, reserved)
}

// copySparse copies src to dst keeping holes (SEEK_DATA/SEEK_HOLE).
func copySparse(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := out.Truncate(st.Size()); err != nil {
		return err
	}
	var off int64
	for off < st.Size() {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			return err
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		if _, err := in.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyN(out, in, hole-data); err != nil {
			return err
		}
		off = hole
	}
	return out.Sync()
}

// isMountPoint says whether something is mounted at dir.
func isMountPoint(dir string) bool {
	var self, parent unix.Stat_t
	if unix.Stat(dir, &self) != nil || unix.Stat(filepath.Dir(dir), &parent) != nil {
		return false
	}
	return self.Dev != parent.Dev
}

// hasCapSysResource says whether this process may exceed ext4's reserved
// limits, which online resize2fs needs.
func hasCapSysResource() bool {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if hex, ok := strings.CutPrefix(line, "CapEff:\t"); ok {
			var caps uint64
			fmt.Sscanf(hex, "%x", &caps)
			return caps&(1<<unix.CAP_SYS_RESOURCE) != 0
		}
	}
	return false
}
