package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// treeLayer returns an uncompressed layer holding every entry under root (a
// whole root filesystem, e.g. a debootstrapped Debian), named relative to it.
// Reproducible: entries in lexical order, every mtime the epoch, numeric
// owners as on disk (no user names), permission bits including setuid,
// setgid and sticky kept, hard links as links, file capabilities kept.
// Sockets and other special files are refused.
func treeLayer(root string) ([]byte, map[string]*tar.Header, error) {
	st, err := os.Stat(root)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to add tree %s: %w", root, err)
	}
	if !st.IsDir() {
		return nil, nil, fmt.Errorf("failed to add tree %s: not a directory", root)
	}
	type inode struct{ dev, ino uint64 }
	firstPath := map[inode]string{}
	dirs := map[string]*tar.Header{}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		sys, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no owner information", p)
		}
		h := &tar.Header{
			Name:    name,
			Mode:    unixMode(fi.Mode()),
			Uid:     int(sys.Uid),
			Gid:     int(sys.Gid),
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		var src string
		switch m := fi.Mode(); {
		case m.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, name+"/"
			dirs["/"+name] = h
		case m&fs.ModeSymlink != 0:
			h.Typeflag = tar.TypeSymlink
			if h.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
		case m.IsRegular():
			id := inode{uint64(sys.Dev), sys.Ino}
			if first, seen := firstPath[id]; seen && sys.Nlink > 1 {
				h.Typeflag, h.Linkname = tar.TypeLink, first
				break
			}
			firstPath[id] = name
			h.Typeflag, h.Size, src = tar.TypeReg, fi.Size(), p
		case m&fs.ModeCharDevice != 0:
			h.Typeflag = tar.TypeChar
			h.Devmajor, h.Devminor = int64(unix.Major(sys.Rdev)), int64(unix.Minor(sys.Rdev))
		case m&fs.ModeDevice != 0:
			h.Typeflag = tar.TypeBlock
			h.Devmajor, h.Devminor = int64(unix.Major(sys.Rdev)), int64(unix.Minor(sys.Rdev))
		case m&fs.ModeNamedPipe != 0:
			h.Typeflag = tar.TypeFifo
		default:
			return fmt.Errorf("%s: cannot put a %v in a layer", p, m.Type())
		}
		if h.Typeflag == tar.TypeReg {
			if c, err := getxattr(p, "security.capability"); err != nil {
				return err
			} else if c != nil {
				h.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": string(c)}
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if src != "" {
			if err := copyFile(tw, src, h.Size); err != nil {
				return fmt.Errorf("failed to add %s: %w", p, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("failed to add tree %s: %w", root, err)
	}
	if err := tw.Close(); err != nil {
		return nil, nil, err
	}
	return buf.Bytes(), dirs, nil
}

// unixMode converts Go's file mode into the permission bits of a tar header.
func unixMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// getxattr returns the value of attribute attr of path, nil if it has none.
func getxattr(path, attr string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := syscall.Getxattr(path, attr, buf)
		switch {
		case errors.Is(err, syscall.ENODATA), errors.Is(err, syscall.ENOTSUP):
			return nil, nil
		case errors.Is(err, syscall.ERANGE):
			buf = make([]byte, 2*len(buf))
			continue
		case err != nil:
			return nil, fmt.Errorf("failed to read %s of %s: %w", attr, path, err)
		}
		return buf[:n], nil
	}
}

// treeDir reports whether name (absolute) is a directory in one of the
// lower layers, returning its header.
func treeDir(lower []map[string]*tar.Header, name string) (*tar.Header, bool) {
	name = "/" + strings.TrimPrefix(name, "/")
	for i := len(lower) - 1; i >= 0; i-- {
		if h, ok := lower[i][name]; ok {
			return h, true
		}
	}
	return nil, false
}
