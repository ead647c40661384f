package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// testTree makes a small root filesystem: a setuid binary, a hard link,
// a symlink, a sticky /tmp and (as root) a directory owned by 1000:50000.
func testTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "tmp", "home/user"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	nnp := filepath.Join(root, "usr/bin/nnp")
	if err := os.WriteFile(nnp, []byte("setuid"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(nnp, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(nnp, filepath.Join(root, "usr/bin/nnp2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(filepath.Join(root, "home/user"), 1000, 50000); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"", "usr", "usr/bin", "usr/bin/nnp", "tmp", "home", "home/user"} {
		_ = os.Chtimes(filepath.Join(root, p), epoch.AddDate(3, 0, 0), epoch.AddDate(3, 0, 0))
	}
	return root
}

// layers returns the uncompressed layers of an image archive, lowest first.
func layers(t *testing.T, archive []byte) [][]byte {
	t.Helper()
	_, files, _ := readTar(t, bytes.NewReader(archive))
	var idx ocispec.Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(files["blobs/sha256/"+idx.Manifests[0].Digest.Encoded()], &man); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, l := range man.Layers {
		zr, err := gzip.NewReader(bytes.NewReader(files["blobs/sha256/"+l.Digest.Encoded()]))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestTreeLayer(t *testing.T) {
	root := testTree(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf")
	if err := os.WriteFile(conf, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := Spec{Name: "example.test/tree:1", Arch: "amd64", Trees: []string{root},
		Files: []File{{Src: conf, Dest: "/tmp/sub/conf"}, {Src: conf, Dest: "/usr/local/bin/nnp", Mode: 0o4755}}}
	var buf bytes.Buffer
	if _, err := Write(&buf, spec); err != nil {
		t.Fatal(err)
	}
	ls := layers(t, buf.Bytes())
	if len(ls) != 2 {
		t.Fatalf("%d layers, want the tree and the files", len(ls))
	}
	hdrs, data, order := readTar(t, bytes.NewReader(ls[0]))
	wantOrder := []string{"bin", "home/", "home/user/", "tmp/", "usr/", "usr/bin/", "usr/bin/nnp", "usr/bin/nnp2"}
	if !reflect.DeepEqual(order, wantOrder) {
		t.Errorf("tree entries %v, want %v", order, wantOrder)
	}
	for name, h := range hdrs {
		if !h.ModTime.Equal(epoch) || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: mtime %v owner names %q/%q, want the epoch and none", name, h.ModTime, h.Uname, h.Gname)
		}
	}
	if h := hdrs["usr/bin/nnp"]; h.Mode != 0o4755 || string(data["usr/bin/nnp"]) != "setuid" {
		t.Errorf("setuid file: mode %o content %q", h.Mode, data["usr/bin/nnp"])
	}
	if h := hdrs["usr/bin/nnp2"]; h.Typeflag != tar.TypeLink || h.Linkname != "usr/bin/nnp" {
		t.Errorf("hard link = %+v", h)
	}
	if h := hdrs["bin"]; h.Typeflag != tar.TypeSymlink || h.Linkname != "usr/bin" {
		t.Errorf("symlink = %+v", h)
	}
	if h := hdrs["tmp/"]; h.Mode != 0o1777 {
		t.Errorf("/tmp mode %o, want 1777", h.Mode)
	}
	if h := hdrs["home/user/"]; os.Geteuid() == 0 && (h.Uid != 1000 || h.Gid != 50000) {
		t.Errorf("owner %d:%d, want 1000:50000", h.Uid, h.Gid)
	}

	top, _, _ := readTar(t, bytes.NewReader(ls[1]))
	if h := top["tmp/"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("the files layer changed /tmp of the tree: %+v", h)
	}
	if h := top["usr/local/bin/nnp"]; h == nil || h.Mode != 0o4755 {
		t.Errorf("-file mode 4755 lost its setuid bit: %+v", h)
	}

	// The same tree gives the same layer, whatever else the image holds.
	var other bytes.Buffer
	if _, err := Write(&other, Spec{Name: "example.test/other:2", Arch: "amd64", Trees: []string{root}}); err != nil {
		t.Fatal(err)
	}
	ol := layers(t, other.Bytes())
	if len(ol) != 1 || !bytes.Equal(ol[0], ls[0]) {
		t.Error("a tree alone did not give one layer equal to the shared one")
	}
	// Twice the same tree is stored once.
	var twice bytes.Buffer
	if _, err := Write(&twice, Spec{Name: "example.test/twice:1", Arch: "amd64", Trees: []string{root, root}}); err != nil {
		t.Fatal(err)
	}
	readTar(t, bytes.NewReader(twice.Bytes())) // fails on a duplicate entry
	if n := len(layers(t, twice.Bytes())); n != 2 {
		t.Errorf("%d layers, want 2", n)
	}
}

func TestTreeLayerRefusesMissingTree(t *testing.T) {
	root := t.TempDir()
	if _, err := Write(io.Discard, Spec{Name: "x:y", Arch: "amd64", Trees: []string{filepath.Join(root, "missing")}}); err == nil {
		t.Error("a missing tree was accepted")
	}
}
