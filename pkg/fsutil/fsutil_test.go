package fsutil

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWriteFileAtomicSyncsDirAfterRename: the directory is synced once the
// new file is in place under its name, so the rename itself is durable.
func TestWriteFileAtomicSyncsDirAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ca.key")
	var synced []string
	orig := SyncDir
	t.Cleanup(func() { SyncDir = orig })
	SyncDir = func(d string) error {
		if data, err := os.ReadFile(path); err != nil || string(data) != "new" {
			t.Errorf("directory synced before the rename: %q %v", data, err)
		}
		synced = append(synced, d)
		return orig(d)
	}
	if err := WriteFileAtomic(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if len(synced) != 1 || synced[0] != dir {
		t.Fatalf("synced %v, want [%s]", synced, dir)
	}
}

// TestWriteIfChangedLeavesSameContentAlone: an unchanged file keeps its inode
// and modification time (only its mode follows), a changed one is replaced.
func TestWriteIfChangedLeavesSameContentAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := WriteIfChanged(path, []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	if err := WriteIfChanged(path, []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	same, _ := os.Stat(path)
	if !os.SameFile(before, same) || !same.ModTime().Equal(before.ModTime()) || same.Mode().Perm() != 0o644 {
		t.Fatalf("unchanged content rewritten or mode not set: mtime %v -> %v, mode %v", before.ModTime(), same.ModTime(), same.Mode())
	}
	if err := WriteIfChanged(path, []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); string(data) != "b" {
		t.Fatalf("content = %q, want b", data)
	}
}

// TestWriteAtomicFromLeavesNothingOnAFailedStream: a stream that fails part
// way leaves neither the file nor its temporary copy, and an earlier file
// stays as it was.
func TestWriteAtomicFromLeavesNothingOnAFailedStream(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node-binary")
	if err := WriteAtomicFrom(path, 0o755, func(w io.Writer) error { _, err := w.Write([]byte("v1")); return err }); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("written file: %v %v, want mode 0755", err, st)
	}
	broken := errors.New("stream cut")
	err := WriteAtomicFrom(path, 0o755, func(w io.Writer) error {
		_, _ = w.Write([]byte("half of v2"))
		return broken
	})
	if !errors.Is(err, broken) {
		t.Fatalf("err = %v, want the stream's error", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "v1" {
		t.Errorf("file after a failed stream holds %q, want v1", data)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left %d entries in the directory, want only the file", len(entries))
	}
}
