// Package pool is a node's storage pool: where CSI volumes and snapshots live
// and how their size is enforced. Two backends sit behind Pool: btrfs (a
// subvolume per volume with a qgroup limit, snapshots as subvolume snapshots)
// and, where btrfs is not available, loop-ext4 (a sparse file with ext4 on a
// loop device per volume).
package pool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// Backend names, as the Pool object and `node-agent status` report them.
const (
	BackendBtrfs    = "btrfs"
	BackendLoopExt4 = "loop-ext4"
)

var (
	// ErrNotFound: no such volume or snapshot.
	ErrNotFound = errors.New("not found")
	// ErrOutOfSpace: the pool cannot hold the requested size.
	ErrOutOfSpace = errors.New("out of space")
)

// Pool holds a node's volumes and snapshots. Every method is idempotent.
type Pool interface {
	Backend() string
	// Root is the pool's directory; volumes/<id> and snapshots/<id> are in it.
	Root() string
	// CreateVolume makes volume id (or returns it when it exists), filled
	// from req.Source when set.
	CreateVolume(id string, req VolumeRequest) (Volume, error)
	// ResizeVolume raises the volume's limit; it never shrinks.
	ResizeVolume(id string, capacity int64) (Volume, error)
	DeleteVolume(id string) error
	// Volume returns a volume with its current usage, or ErrNotFound.
	Volume(id string) (Volume, error)
	Volumes() ([]string, error)
	// CreateSnapshot makes a read-only copy of a volume.
	CreateSnapshot(id, volumeID string) (Snapshot, error)
	DeleteSnapshot(id string) error
	Snapshot(id string) (Snapshot, error)
	Stats() (Stats, error)
}

// VolumeRequest says what CreateVolume makes.
type VolumeRequest struct {
	CapacityBytes int64
	Block         bool
	Source        *Source
}

// Source is a snapshot or volume a new volume is filled from.
type Source struct {
	Snapshot bool // else a volume
	ID       string
}

// Volume is one volume of the pool.
type Volume struct {
	ID string
	// Dir is the directory a Mount volume is bind-mounted from.
	Dir string
	// BlockFile, for a Block volume, is the file a loop device presents.
	BlockFile     string
	CapacityBytes int64
	UsedBytes     int64
}

// Block says whether the volume is a raw block volume.
func (v Volume) Block() bool { return v.BlockFile != "" }

// Snapshot is one read-only snapshot.
type Snapshot struct {
	ID           string
	SizeBytes    int64
	CreationTime time.Time
}

// Stats is the pool as a whole. FreeBytes is what new volumes may still
// reserve: the space not promised to existing volumes, and never more than
// the file system has free.
type Stats struct {
	Backend    string
	TotalBytes int64
	// UsedBytes is what the volumes use now.
	UsedBytes          int64
	FreeBytes          int64
	MaxVolumeSizeBytes int64
	Volumes            int
	Snapshots          int
}

// Options tell Open where the pool lives.
type Options struct {
	// Root is the pool directory (/var/lib/node-agent/csi).
	Root string
	// Image is the image file made when no btrfs is mounted at Root.
	Image string
	// ImageSize is the image file's size in bytes.
	ImageSize int64
	// Backend forces a backend ("" chooses).
	Backend string
}

var validID = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,252}$`)

// CheckID refuses ids that are not one safe path element.
func CheckID(id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("invalid id %q: must be 1-253 letters, digits, '.', '_' or '-', starting with a letter or digit", id)
	}
	return nil
}

// Open opens the pool at o.Root: a btrfs file system mounted there (by the
// admin, or from an earlier start) is used as it is; otherwise, where the
// kernel and mkfs.btrfs allow, an image file is made and mounted there; where
// they do not, the loop-ext4 backend is used.
func Open(o Options) (Pool, error) {
	if err := os.MkdirAll(o.Root, 0o700); err != nil {
		return nil, fmt.Errorf("create the pool directory: %w", err)
	}
	switch o.Backend {
	case BackendBtrfs:
		return openBtrfs(o)
	case BackendLoopExt4:
		return openLoopExt4(o.Root)
	case "":
	default:
		return nil, fmt.Errorf("unknown pool backend %q (allowed: %s, %s)", o.Backend, BackendBtrfs, BackendLoopExt4)
	}
	if isBtrfsMount(o.Root) {
		return openBtrfs(o)
	}
	if why := btrfsUnavailable(); why == "" {
		return openBtrfs(o)
	} else if hasLoopExt4Volumes(o.Root) || loopExt4Available() == "" {
		return openLoopExt4(o.Root)
	} else {
		return nil, fmt.Errorf("no storage backend on this host: btrfs: %s; loop-ext4: %s", why, loopExt4Available())
	}
}

// Inspect opens the pool at root only if it exists already (a btrfs mount,
// or loop-ext4 volume files); it makes, mounts and formats nothing.
func Inspect(root string) (Pool, error) {
	if isBtrfsMount(root) {
		return &btrfsPool{root: root}, nil
	}
	if _, err := os.Stat(filepath.Join(root, "images")); err == nil {
		return &loopExt4Pool{root: root}, nil
	}
	return nil, fmt.Errorf("no pool at %s yet (node-agent makes it at start)", root)
}

// checkFree refuses to promise need more bytes to volume id than the pool has free.
func checkFree(p Pool, id string, need int64) error {
	st, err := p.Stats()
	if err != nil {
		return err
	}
	if need > st.FreeBytes {
		return fmt.Errorf("volume %s needs %s more, the pool has %s free: %w", id, FormatBytes(need), FormatBytes(st.FreeBytes), ErrOutOfSpace)
	}
	return nil
}
