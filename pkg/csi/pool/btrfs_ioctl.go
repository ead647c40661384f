package pool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The btrfs ioctls the pool uses, from linux/btrfs.h and btrfs_tree.h. They
// are issued with golang.org/x/sys/unix, without cgo or btrfs-progs.
const (
	btrfsIoctlMagic = 0x94

	btrfsSubvolRdonly = 1 << 1

	btrfsQuotaCtlEnable = 1

	btrfsQgroupLimitMaxRfer = 1 << 0

	btrfsQuotaTreeObjectID = 8
	btrfsQgroupInfoKey     = 242
	btrfsQgroupLimitKey    = 244
	btrfsFirstFreeObjectID = 256

	// FS_NOCOW_FL: a file whose writes go in place (block volumes).
	fsNocowFlag = 0x00800000
)

// ioc builds an ioctl request number the way the kernel's _IOC macro does.
func ioc(dir, nr, size uintptr) uintptr {
	return dir<<30 | size<<16 | btrfsIoctlMagic<<8 | nr
}

const (
	iocWrite = 1
	iocRead  = 2
)

type btrfsVolArgsV2 struct {
	Fd      int64
	Transid uint64
	Flags   uint64
	Unused  [4]uint64
	Name    [4040]byte
}

type btrfsVolArgs struct {
	Fd   int64
	Name [4088]byte
}

type btrfsQuotaCtlArgs struct {
	Cmd    uint64
	Status uint64
}

type btrfsQgroupLimit struct {
	Flags   uint64
	MaxRfer uint64
	MaxExcl uint64
	RsvRfer uint64
	RsvExcl uint64
}

type btrfsQgroupLimitArgs struct {
	QgroupID uint64
	Limit    btrfsQgroupLimit
}

type btrfsInoLookupArgs struct {
	TreeID   uint64
	ObjectID uint64
	Name     [4080]byte
}

type btrfsSearchKey struct {
	TreeID      uint64
	MinObjectID uint64
	MaxObjectID uint64
	MinOffset   uint64
	MaxOffset   uint64
	MinTransid  uint64
	MaxTransid  uint64
	MinType     uint32
	MaxType     uint32
	NrItems     uint32
	_           uint32
	_           [4]uint64
}

type btrfsSearchArgs struct {
	Key btrfsSearchKey
	Buf [4096 - unsafe.Sizeof(btrfsSearchKey{})]byte
}

var (
	iocSnapCreateV2   = ioc(iocWrite, 23, unsafe.Sizeof(btrfsVolArgsV2{}))
	iocSubvolCreateV2 = ioc(iocWrite, 24, unsafe.Sizeof(btrfsVolArgsV2{}))
	iocSnapDestroy    = ioc(iocWrite, 15, unsafe.Sizeof(btrfsVolArgs{}))
	iocQuotaCtl       = ioc(iocWrite|iocRead, 40, unsafe.Sizeof(btrfsQuotaCtlArgs{}))
	iocQgroupLimit    = ioc(iocRead, 43, unsafe.Sizeof(btrfsQgroupLimitArgs{}))
	iocInoLookup      = ioc(iocWrite|iocRead, 18, unsafe.Sizeof(btrfsInoLookupArgs{}))
	iocTreeSearch     = ioc(iocWrite|iocRead, 17, unsafe.Sizeof(btrfsSearchArgs{}))
	iocSync           = ioc(0, 8, 0)
)

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}

// withDir runs f on an O_DIRECTORY descriptor of dir.
func withDir(dir string, f func(fd int) error) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	return f(fd)
}

func setName(dst []byte, name string) error {
	if len(name) >= len(dst) || name == "" {
		return fmt.Errorf("invalid subvolume name %q", name)
	}
	copy(dst, name)
	return nil
}

// createSubvolume makes the subvolume path (its parent must exist).
func createSubvolume(path string) error {
	var args btrfsVolArgsV2
	if err := setName(args.Name[:], filepath.Base(path)); err != nil {
		return err
	}
	return withDir(filepath.Dir(path), func(fd int) error {
		if err := ioctl(fd, iocSubvolCreateV2, unsafe.Pointer(&args)); err != nil {
			return fmt.Errorf("create subvolume %s: %w", path, err)
		}
		return nil
	})
}

// snapshotSubvolume makes dst a snapshot of the subvolume src, read-only or writable.
func snapshotSubvolume(src, dst string, readOnly bool) error {
	var args btrfsVolArgsV2
	if err := setName(args.Name[:], filepath.Base(dst)); err != nil {
		return err
	}
	if readOnly {
		args.Flags = btrfsSubvolRdonly
	}
	return withDir(src, func(srcFd int) error {
		args.Fd = int64(srcFd)
		return withDir(filepath.Dir(dst), func(fd int) error {
			if err := ioctl(fd, iocSnapCreateV2, unsafe.Pointer(&args)); err != nil {
				return fmt.Errorf("snapshot %s to %s: %w", src, dst, err)
			}
			return nil
		})
	})
}

// deleteSubvolume removes the subvolume path; a missing one is no error.
func deleteSubvolume(path string) error {
	var args btrfsVolArgs
	if err := setName(args.Name[:], filepath.Base(path)); err != nil {
		return err
	}
	err := withDir(filepath.Dir(path), func(fd int) error {
		return ioctl(fd, iocSnapDestroy, unsafe.Pointer(&args))
	})
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("delete subvolume %s: %w", path, err)
}

// enableQuota turns on qgroup accounting for the file system holding dir;
// it is a no-op when already on.
func enableQuota(dir string) error {
	args := btrfsQuotaCtlArgs{Cmd: btrfsQuotaCtlEnable}
	return withDir(dir, func(fd int) error {
		if err := ioctl(fd, iocQuotaCtl, unsafe.Pointer(&args)); err != nil {
			return fmt.Errorf("enable btrfs quota on %s: %w", dir, err)
		}
		return nil
	})
}

// subvolumeID is the id of the subvolume whose root is dir (its qgroup is 0/id).
func subvolumeID(dir string) (uint64, error) {
	args := btrfsInoLookupArgs{ObjectID: btrfsFirstFreeObjectID}
	err := withDir(dir, func(fd int) error { return ioctl(fd, iocInoLookup, unsafe.Pointer(&args)) })
	if err != nil {
		return 0, fmt.Errorf("look up the subvolume of %s: %w", dir, err)
	}
	return args.TreeID, nil
}

// setQgroupLimit limits the bytes the subvolume at dir refers to; 0 removes the limit.
func setQgroupLimit(dir string, limit uint64) error {
	id, err := subvolumeID(dir)
	if err != nil {
		return err
	}
	args := btrfsQgroupLimitArgs{QgroupID: id}
	if limit > 0 {
		args.Limit = btrfsQgroupLimit{Flags: btrfsQgroupLimitMaxRfer, MaxRfer: limit}
	} else {
		args.Limit = btrfsQgroupLimit{Flags: btrfsQgroupLimitMaxRfer, MaxRfer: ^uint64(0)}
	}
	return withDir(dir, func(fd int) error {
		if err := ioctl(fd, iocQgroupLimit, unsafe.Pointer(&args)); err != nil {
			return fmt.Errorf("set the qgroup limit of %s: %w", dir, err)
		}
		return nil
	})
}

// syncFS commits the file system's transaction, so qgroup figures are current.
func syncFS(dir string) error {
	return withDir(dir, func(fd int) error { return ioctl(fd, iocSync, nil) })
}

// qgroup is what the quota tree says of one level-0 qgroup.
type qgroup struct {
	Referenced uint64
	Exclusive  uint64
	MaxRfer    uint64 // 0: no limit
}

// qgroups reads the level-0 qgroups of the file system holding dir, by subvolume id.
func qgroups(dir string) (map[uint64]qgroup, error) {
	out := map[uint64]qgroup{}
	err := withDir(dir, func(fd int) error {
		var args btrfsSearchArgs
		args.Key = btrfsSearchKey{
			TreeID: btrfsQuotaTreeObjectID, MaxObjectID: 0,
			MaxOffset: ^uint64(0), MaxTransid: ^uint64(0),
			MinType: btrfsQgroupInfoKey, MaxType: btrfsQgroupLimitKey,
		}
		for {
			args.Key.NrItems = 4096
			if err := ioctl(fd, iocTreeSearch, unsafe.Pointer(&args)); err != nil {
				return fmt.Errorf("read the qgroups of %s: %w", dir, err)
			}
			if args.Key.NrItems == 0 {
				return nil
			}
			var lastOffset uint64
			var lastType uint32
			pos := 0
			for i := uint32(0); i < args.Key.NrItems; i++ {
				h := args.Buf[pos : pos+32]
				objectID := binary.LittleEndian.Uint64(h[8:])
				offset := binary.LittleEndian.Uint64(h[16:])
				typ := binary.LittleEndian.Uint32(h[24:])
				length := int(binary.LittleEndian.Uint32(h[28:]))
				item := args.Buf[pos+32 : pos+32+length]
				pos += 32 + length
				lastOffset, lastType = offset, typ
				if objectID != 0 || offset>>48 != 0 { // level-0 qgroups only
					continue
				}
				q := out[offset]
				switch {
				case typ == btrfsQgroupInfoKey && length >= 40:
					q.Referenced = binary.LittleEndian.Uint64(item[8:])
					q.Exclusive = binary.LittleEndian.Uint64(item[24:])
				case typ == btrfsQgroupLimitKey && length >= 16:
					flags := binary.LittleEndian.Uint64(item[0:])
					if flags&btrfsQgroupLimitMaxRfer != 0 {
						if m := binary.LittleEndian.Uint64(item[8:]); m != ^uint64(0) {
							q.MaxRfer = m
						}
					}
				default:
					continue
				}
				out[offset] = q
			}
			// The search range is one composite key range: go on after the last key.
			if lastOffset == ^uint64(0) {
				lastType, lastOffset = lastType+1, 0
			} else {
				lastOffset++
			}
			if lastType > btrfsQgroupLimitKey {
				return nil
			}
			args.Key.MinType, args.Key.MinOffset = lastType, lastOffset
			args.Key.MaxOffset = ^uint64(0)
		}
	})
	return out, err
}

// setNoCOW marks an empty file (or a directory, for files made in it later) nodatacow.
func setNoCOW(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		return fmt.Errorf("read the flags of %s: %w", path, err)
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags|fsNocowFlag); err != nil {
		return fmt.Errorf("set nodatacow on %s: %w", path, err)
	}
	return nil
}
