// Package fsutil writes files so that a crash or power cut never leaves a
// half-written one: certificates, keys, kubeconfigs, configs and units.
package fsutil

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteFileAtomic writes data to a temporary file in the same directory and
// renames it into place, so a crash never leaves a half-written file. The
// file and then its directory are synced: without the directory's fsync a
// power cut can undo the rename, losing e.g. a new CA or the encryption key
// while etcd already holds data that depends on it.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return WriteAtomicFrom(path, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteAtomicFrom is WriteFileAtomic for content that is streamed rather
// than held in memory (an embedded binary, a snapshot): write fills the
// temporary file, which then gets mode, is synced and renamed into place,
// and the directory is synced. On any error nothing is left at path.
func WriteAtomicFrom(path string, mode os.FileMode, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	err = write(tmp)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir makes a rename in dir durable; a variable so tests can see it
// happens after the rename.
var SyncDir = func(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("failed to sync directory %s: %w", dir, err)
	}
	return nil
}

// WriteIfChanged writes data atomically unless the file already holds it, so
// restarts do not touch files whose content is unchanged.
func WriteIfChanged(path string, data []byte, mode os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return os.Chmod(path, mode)
	}
	return WriteFileAtomic(path, data, mode)
}
