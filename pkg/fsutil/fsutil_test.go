package fsutil

import (
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
	orig := syncDir
	t.Cleanup(func() { syncDir = orig })
	syncDir = func(d string) error {
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
