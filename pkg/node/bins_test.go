package node

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func binariesFS(content string) fstest.MapFS {
	src := fstest.MapFS{}
	var sums strings.Builder
	for _, name := range nodeBinaries {
		body := []byte(name + " " + content)
		src[name] = &fstest.MapFile{Data: body, Mode: 0o755}
		sum := sha256.Sum256(body)
		sums.WriteString(hex.EncodeToString(sum[:]) + "  " + name + "\n")
	}
	src[sumsFile] = &fstest.MapFile{Data: []byte(sums.String())}
	return src
}

func TestInstallBinariesWritesOnlyWhatChanged(t *testing.T) {
	dir := t.TempDir()
	// An earlier node-agent linked the shim and the CNI plugin to itself.
	self := filepath.Join(t.TempDir(), "node-agent")
	if err := os.WriteFile(self, []byte("old node-agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ShimName, "vcs-cni"} {
		if err := os.Symlink(self, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := installBinaries(dir, binariesFS("v1")); err != nil {
		t.Fatal(err)
	}
	for _, name := range nodeBinaries {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o755 {
			t.Fatalf("%s: %v, %v: want a 0755 regular file", name, fi, err)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, name)); string(got) != name+" v1" {
			t.Fatalf("%s holds %q", name, got)
		}
	}
	if got, _ := os.ReadFile(self); string(got) != "old node-agent" {
		t.Fatalf("the old link's target was written through: %q", got)
	}

	// Unchanged programs are not rewritten (a running shim keeps its file);
	// a changed or damaged one is.
	old := time.Now().Add(-time.Hour)
	for _, name := range nodeBinaries {
		_ = os.Chtimes(filepath.Join(dir, name), old, old)
	}
	if err := os.WriteFile(filepath.Join(dir, RuncName), []byte("damaged"), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(filepath.Join(dir, RuncName), old, old)
	if err := installBinaries(dir, binariesFS("v1")); err != nil {
		t.Fatal(err)
	}
	for _, name := range nodeBinaries {
		fi, _ := os.Stat(filepath.Join(dir, name))
		rewritten := fi.ModTime().After(old.Add(time.Minute))
		if rewritten != (name == RuncName) {
			t.Errorf("%s rewritten: %v", name, rewritten)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(dir, RuncName)); string(got) != RuncName+" v1" {
		t.Fatalf("damaged runc not repaired: %q", got)
	}
}

func TestInstallBinariesNeedsABuiltNodeAgent(t *testing.T) {
	src := binariesFS("v1")
	delete(src, ShimName)
	err := installBinaries(t.TempDir(), src)
	if err == nil || !strings.Contains(err.Error(), "built without "+ShimName) || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("missing shim: %v", err)
	}
	delete(src, sumsFile)
	if err := installBinaries(t.TempDir(), src); err == nil || !strings.Contains(err.Error(), "built without "+sumsFile) {
		t.Fatalf("missing sums: %v", err)
	}
}
