package pool

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
)

// blockFileName is the file of a Block volume inside its subvolume.
const blockFileName = "disk.img"

// btrfsPool keeps each volume in a subvolume volumes/<id> whose qgroup limit
// is the volume's size, and each snapshot in a read-only subvolume
// snapshots/<id>.
type btrfsPool struct {
	root string
}

func (p *btrfsPool) Backend() string { return BackendBtrfs }
func (p *btrfsPool) Root() string    { return p.root }

func (p *btrfsPool) volumeDir(id string) string   { return filepath.Join(p.root, "volumes", id) }
func (p *btrfsPool) snapshotDir(id string) string { return filepath.Join(p.root, "snapshots", id) }

// snapshotMeta sits beside a snapshot (the snapshot itself is read-only).
type snapshotMeta struct {
	SourceVolume  string    `json:"sourceVolume"`
	CapacityBytes int64     `json:"capacityBytes"`
	CreationTime  time.Time `json:"creationTime"`
}

func (p *btrfsPool) snapshotMetaFile(id string) string { return p.snapshotDir(id) + ".json" }

// btrfsUnavailable says why this host cannot make a btrfs pool, or "".
func btrfsUnavailable() string {
	data, err := os.ReadFile("/proc/filesystems")
	if err != nil || !strings.Contains(string(data), "\tbtrfs\n") {
		return "the kernel has no btrfs"
	}
	if _, err := exec.LookPath("mkfs.btrfs"); err != nil {
		return "mkfs.btrfs is not installed (package btrfs-progs)"
	}
	return ""
}

// isBtrfsMount says whether a btrfs file system is mounted at dir.
func isBtrfsMount(dir string) bool {
	var fs unix.Statfs_t
	if unix.Statfs(dir, &fs) != nil || uint32(fs.Type) != unix.BTRFS_SUPER_MAGIC {
		return false
	}
	var self, parent unix.Stat_t
	if unix.Stat(dir, &self) != nil || unix.Stat(filepath.Dir(dir), &parent) != nil {
		return false
	}
	return self.Dev != parent.Dev
}

func openBtrfs(o Options) (Pool, error) {
	if !isBtrfsMount(o.Root) {
		if why := btrfsUnavailable(); why != "" {
			return nil, fmt.Errorf("btrfs pool: %s", why)
		}
		if err := mountImage(o); err != nil {
			return nil, err
		}
	}
	p := &btrfsPool{root: o.Root}
	if err := enableQuota(o.Root); err != nil {
		return nil, err
	}
	for _, d := range []string{"volumes", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(o.Root, d), 0o700); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// mountImage mounts the pool image at o.Root, making and formatting it first
// when it does not exist yet.
func mountImage(o Options) error {
	if o.Image == "" || o.ImageSize <= 0 {
		return fmt.Errorf("no btrfs file system is mounted at %s and no pool image is configured", o.Root)
	}
	if _, err := os.Stat(o.Image); errors.Is(err, os.ErrNotExist) {
		if err := makeImage(o); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	dev, f, err := attachLoop(o.Image, true)
	if err != nil {
		return fmt.Errorf("attach the pool image %s: %w", o.Image, err)
	}
	defer f.Close() // the mount holds the device from here on
	if err := unix.Mount(dev, o.Root, "btrfs", 0, ""); err != nil {
		return fmt.Errorf("mount the pool image %s (%s) at %s: %w", o.Image, dev, o.Root, err)
	}
	return nil
}

// makeImage creates the sparse pool image and formats it as btrfs.
func makeImage(o Options) error {
	dir := filepath.Dir(o.Image)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return err
	}
	if free := int64(fs.Bavail) * fs.Bsize; free < o.ImageSize {
		return fmt.Errorf("the storage pool image %s of %s does not fit: %s has %s free; set storagePoolSize lower, free space, or mount a btrfs file system at %s",
			o.Image, FormatBytes(o.ImageSize), dir, FormatBytes(free), o.Root)
	}
	tmp := o.Image + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(o.ImageSize)
	f.Close()
	if err == nil {
		out, mkfsErr := exec.Command("mkfs.btrfs", "-q", "-f", "-L", "node-agent-csi", tmp).CombinedOutput()
		if mkfsErr != nil {
			err = fmt.Errorf("mkfs.btrfs %s: %v: %s", tmp, mkfsErr, strings.TrimSpace(string(out)))
		}
	}
	if err == nil {
		err = os.Rename(tmp, o.Image)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("make the pool image: %w", err)
	}
	return nil
}

func (p *btrfsPool) CreateVolume(id string, req VolumeRequest) (Volume, error) {
	if err := CheckID(id); err != nil {
		return Volume{}, err
	}
	dir := p.volumeDir(id)
	if _, err := os.Stat(dir); err == nil {
		v, err := p.Volume(id)
		if err != nil {
			return Volume{}, err
		}
		if v.CapacityBytes < req.CapacityBytes {
			return p.ResizeVolume(id, req.CapacityBytes)
		}
		return v, nil
	}
	var src string
	if req.Source != nil {
		src = p.volumeDir(req.Source.ID)
		if req.Source.Snapshot {
			src = p.snapshotDir(req.Source.ID)
		}
		if _, err := os.Stat(src); err != nil {
			return Volume{}, fmt.Errorf("source %s: %w", req.Source.ID, ErrNotFound)
		}
	}
	if err := checkFree(p, id, req.CapacityBytes); err != nil {
		return Volume{}, err
	}
	if err := p.makeVolume(dir, src, req); err != nil {
		_ = deleteSubvolume(dir)
		return Volume{}, err
	}
	return p.Volume(id)
}

func (p *btrfsPool) makeVolume(dir, src string, req VolumeRequest) error {
	if src != "" {
		if err := snapshotSubvolume(src, dir, false); err != nil {
			return err
		}
	} else if err := createSubvolume(dir); err != nil {
		return err
	}
	if !req.Block {
		return setQgroupLimit(dir, uint64(req.CapacityBytes))
	}
	// A Block volume is a nodatacow file as large as the volume; the file's
	// size is the limit.
	file := filepath.Join(dir, blockFileName)
	if src == "" {
		if err := setNoCOW(dir); err != nil {
			return err
		}
		f, err := os.OpenFile(file, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return err
		}
		f.Close()
	}
	return growFile(file, req.CapacityBytes)
}

// growFile makes file at least size bytes long (sparse).
func growFile(file string, size int64) error {
	st, err := os.Stat(file)
	if err != nil {
		return err
	}
	if st.Size() >= size {
		return nil
	}
	return os.Truncate(file, size)
}

func (p *btrfsPool) ResizeVolume(id string, capacity int64) (Volume, error) {
	v, err := p.Volume(id)
	if err != nil {
		return Volume{}, err
	}
	if capacity <= v.CapacityBytes {
		return v, nil
	}
	if err := checkFree(p, id, capacity-v.CapacityBytes); err != nil {
		return Volume{}, err
	}
	if v.Block() {
		if err := growFile(v.BlockFile, capacity); err != nil {
			return Volume{}, err
		}
		if err := refreshLoopSize(v.BlockFile); err != nil {
			return Volume{}, err
		}
	} else if err := setQgroupLimit(v.Dir, uint64(capacity)); err != nil {
		return Volume{}, err
	}
	return p.Volume(id)
}

func (p *btrfsPool) DeleteVolume(id string) error {
	if err := CheckID(id); err != nil {
		return err
	}
	dir := p.volumeDir(id)
	if err := detachLoop(filepath.Join(dir, blockFileName)); err != nil {
		return err
	}
	return deleteSubvolume(dir)
}

func (p *btrfsPool) Volume(id string) (Volume, error) {
	if err := CheckID(id); err != nil {
		return Volume{}, err
	}
	dir := p.volumeDir(id)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return Volume{}, fmt.Errorf("volume %s: %w", id, ErrNotFound)
	}
	_ = syncFS(p.root)
	qs, err := qgroups(p.root)
	if err != nil {
		return Volume{}, err
	}
	return p.volumeFrom(id, qs)
}

func (p *btrfsPool) volumeFrom(id string, qs map[uint64]qgroup) (Volume, error) {
	dir := p.volumeDir(id)
	sid, err := subvolumeID(dir)
	if err != nil {
		return Volume{}, err
	}
	q := qs[sid]
	v := Volume{ID: id, Dir: dir, CapacityBytes: int64(q.MaxRfer), UsedBytes: int64(q.Referenced)}
	file := filepath.Join(dir, blockFileName)
	if st, err := os.Stat(file); err == nil {
		v.BlockFile, v.CapacityBytes = file, st.Size()
	}
	return v, nil
}

func (p *btrfsPool) Volumes() ([]string, error) { return listDir(filepath.Join(p.root, "volumes")) }

// listDir lists the entries of dir that are valid ids.
func listDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && CheckID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

func (p *btrfsPool) CreateSnapshot(id, volumeID string) (Snapshot, error) {
	if err := CheckID(id); err != nil {
		return Snapshot{}, err
	}
	if s, err := p.Snapshot(id); err == nil {
		return s, nil
	}
	v, err := p.Volume(volumeID)
	if err != nil {
		return Snapshot{}, err
	}
	meta, _ := json.Marshal(snapshotMeta{SourceVolume: volumeID, CapacityBytes: v.CapacityBytes, CreationTime: time.Now().UTC()})
	if err := fsutil.WriteFileAtomic(p.snapshotMetaFile(id), meta, 0o600); err != nil {
		return Snapshot{}, err
	}
	if err := snapshotSubvolume(v.Dir, p.snapshotDir(id), true); err != nil {
		os.Remove(p.snapshotMetaFile(id))
		return Snapshot{}, err
	}
	return p.Snapshot(id)
}

func (p *btrfsPool) DeleteSnapshot(id string) error {
	if err := CheckID(id); err != nil {
		return err
	}
	if err := deleteSubvolume(p.snapshotDir(id)); err != nil {
		return err
	}
	if err := os.Remove(p.snapshotMetaFile(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (p *btrfsPool) Snapshot(id string) (Snapshot, error) {
	if err := CheckID(id); err != nil {
		return Snapshot{}, err
	}
	if _, err := os.Stat(p.snapshotDir(id)); errors.Is(err, os.ErrNotExist) {
		return Snapshot{}, fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
	}
	s := Snapshot{ID: id}
	if data, err := os.ReadFile(p.snapshotMetaFile(id)); err == nil {
		var m snapshotMeta
		if json.Unmarshal(data, &m) == nil {
			s.SizeBytes, s.CreationTime = m.CapacityBytes, m.CreationTime
		}
	}
	if s.CreationTime.IsZero() {
		if st, err := os.Stat(p.snapshotDir(id)); err == nil {
			s.CreationTime = st.ModTime().UTC()
		}
	}
	return s, nil
}

func (p *btrfsPool) Stats() (Stats, error) {
	ids, err := p.Volumes()
	if err != nil {
		return Stats{}, err
	}
	_ = syncFS(p.root)
	qs, err := qgroups(p.root)
	if err != nil {
		return Stats{}, err
	}
	st := Stats{Backend: BackendBtrfs, Volumes: len(ids)}
	var reserved int64
	for _, id := range ids {
		v, err := p.volumeFrom(id, qs)
		if err != nil {
			continue
		}
		reserved += v.CapacityBytes
		st.UsedBytes += v.UsedBytes
	}
	snaps, _ := listDir(filepath.Join(p.root, "snapshots"))
	st.Snapshots = len(snaps)
	if err := fillSpace(&st, p.root, reserved); err != nil {
		return Stats{}, err
	}
	return st, nil
}

// fillSpace sets the totals from the file system at dir: free is what the
// file system has free less what is promised to volumes (reserved) and not
// written yet, so two volumes are never promised the same bytes.
func fillSpace(st *Stats, dir string, reserved int64) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	st.TotalBytes = int64(fs.Blocks) * fs.Bsize
	st.FreeBytes = min(int64(fs.Bavail)*fs.Bsize-max(reserved-st.UsedBytes, 0), st.TotalBytes-reserved)
	st.FreeBytes = max(st.FreeBytes, 0)
	st.MaxVolumeSizeBytes = st.FreeBytes
	return nil
}

// FormatBytes renders n in binary units (1.5GiB).
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
