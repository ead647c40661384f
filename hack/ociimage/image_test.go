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
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func readTar(t *testing.T, r io.Reader) (map[string]*tar.Header, map[string][]byte, []string) {
	t.Helper()
	hdrs := map[string]*tar.Header{}
	data := map[string][]byte{}
	var order []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := hdrs[h.Name]; dup {
			t.Fatalf("duplicate entry %s", h.Name)
		}
		hdrs[h.Name], data[h.Name] = h, b
		order = append(order, h.Name)
	}
	return hdrs, data, order
}

func testSpec(t *testing.T) Spec {
	dir := t.TempDir()
	bin := filepath.Join(dir, "tool")
	if err := os.WriteFile(bin, []byte("#!binary"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "conf")
	if err := os.WriteFile(conf, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return Spec{
		Name:     "example.test/team/tool:1.2.3",
		Arch:     "amd64",
		Files:    []File{{Src: bin, Dest: "/bin/tool"}, {Src: conf, Dest: "/etc/tool/conf", Mode: 0o640}},
		Symlinks: []Symlink{{Dest: "/bin/sh", Target: "tool"}},
		Dirs:     []string{"/tmp"},
		Config: ocispec.ImageConfig{
			Entrypoint:   []string{"/bin/tool"},
			Cmd:          []string{"-v"},
			Env:          []string{"PATH=/bin"},
			ExposedPorts: map[string]struct{}{"53/udp": {}},
			User:         "65532",
		},
	}
}

func TestWriteLayout(t *testing.T) {
	spec := testSpec(t)
	var buf bytes.Buffer
	res, err := Write(&buf, spec)
	if err != nil {
		t.Fatal(err)
	}
	hdrs, files, _ := readTar(t, &buf)
	for name, h := range hdrs {
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(epoch) {
			t.Errorf("%s: uid %d gid %d mtime %v, want 0 0 epoch", name, h.Uid, h.Gid, h.ModTime)
		}
	}
	if got := string(files["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %s", got)
	}
	// Every blob is stored under its own digest.
	for name, b := range files {
		if enc, ok := strings.CutPrefix(name, "blobs/sha256/"); ok && enc != "" {
			if got := digest.FromBytes(b).Encoded(); got != enc {
				t.Errorf("blob %s has digest %s", name, got)
			}
		}
	}
	blob := func(d ocispec.Descriptor) []byte {
		t.Helper()
		b, ok := files["blobs/sha256/"+d.Digest.Encoded()]
		if !ok {
			t.Fatalf("blob %s missing", d.Digest)
		}
		if int64(len(b)) != d.Size {
			t.Fatalf("blob %s: size %d, descriptor says %d", d.Digest, len(b), d.Size)
		}
		return b
	}

	var idx ocispec.Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if idx.SchemaVersion != 2 || idx.MediaType != ocispec.MediaTypeImageIndex || len(idx.Manifests) != 1 {
		t.Fatalf("index = %+v", idx)
	}
	md := idx.Manifests[0]
	if md.Digest != res.Manifest || md.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("index manifest %s (%s), Write returned %s", md.Digest, md.MediaType, res.Manifest)
	}
	wantAnn := map[string]string{ocispec.AnnotationRefName: "1.2.3", "io.containerd.image.name": spec.Name}
	if !reflect.DeepEqual(md.Annotations, wantAnn) {
		t.Errorf("annotations = %v, want %v", md.Annotations, wantAnn)
	}
	if md.Platform == nil || md.Platform.OS != "linux" || md.Platform.Architecture != "amd64" {
		t.Errorf("platform = %+v", md.Platform)
	}

	var man ocispec.Manifest
	if err := json.Unmarshal(blob(md), &man); err != nil {
		t.Fatal(err)
	}
	if man.SchemaVersion != 2 || man.Config.MediaType != ocispec.MediaTypeImageConfig || len(man.Layers) != 1 ||
		man.Layers[0].MediaType != ocispec.MediaTypeImageLayerGzip {
		t.Fatalf("manifest = %+v", man)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(blob(man.Config), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" || !reflect.DeepEqual(cfg.Config, spec.Config) {
		t.Errorf("config = %+v", cfg)
	}

	zr, err := gzip.NewReader(bytes.NewReader(blob(man.Layers[0])))
	if err != nil {
		t.Fatal(err)
	}
	layer, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RootFS.Type != "layers" || len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != digest.FromBytes(layer) {
		t.Errorf("rootfs %+v does not name the uncompressed layer %s", cfg.RootFS, digest.FromBytes(layer))
	}
	lh, ld, order := readTar(t, bytes.NewReader(layer))
	wantOrder := []string{"bin/", "bin/sh", "bin/tool", "etc/", "etc/tool/", "etc/tool/conf", "tmp/"}
	if !reflect.DeepEqual(order, wantOrder) {
		t.Errorf("layer entries %v, want %v", order, wantOrder)
	}
	checks := []struct {
		name string
		typ  byte
		mode int64
	}{
		{"bin/", tar.TypeDir, 0o755}, {"bin/tool", tar.TypeReg, 0o755}, {"bin/sh", tar.TypeSymlink, 0o777},
		{"etc/tool/conf", tar.TypeReg, 0o640}, {"tmp/", tar.TypeDir, 0o1777},
	}
	for _, c := range checks {
		h := lh[c.name]
		if h == nil || h.Typeflag != c.typ || h.Mode != c.mode || h.Uid != 0 || !h.ModTime.Equal(epoch) {
			t.Errorf("layer %s = %+v, want type %c mode %o", c.name, h, c.typ, c.mode)
		}
	}
	if lh["bin/sh"].Linkname != "tool" {
		t.Errorf("bin/sh -> %q", lh["bin/sh"].Linkname)
	}
	if string(ld["bin/tool"]) != "#!binary" || string(ld["etc/tool/conf"]) != "hello\n" {
		t.Errorf("file contents differ: %q %q", ld["bin/tool"], ld["etc/tool/conf"])
	}
}

func TestWriteDeterministic(t *testing.T) {
	spec := testSpec(t)
	var a, b bytes.Buffer
	ra, err := Write(&a, spec)
	if err != nil {
		t.Fatal(err)
	}
	// Same inputs, listed in another order, with other mtimes on disk.
	spec.Files[0], spec.Files[1] = spec.Files[1], spec.Files[0]
	if err := os.Chtimes(spec.Files[0].Src, epoch.AddDate(5, 0, 0), epoch.AddDate(5, 0, 0)); err != nil {
		t.Fatal(err)
	}
	rb, err := Write(&b, spec)
	if err != nil {
		t.Fatal(err)
	}
	if ra != rb || !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Errorf("two writes differ: %+v vs %+v", ra, rb)
	}
	// Different content gives a different digest.
	if err := os.WriteFile(spec.Files[1].Src, []byte("#!other"), 0o700); err != nil {
		t.Fatal(err)
	}
	rc, err := Write(io.Discard, spec)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Layer == ra.Layer || rc.Manifest == ra.Manifest {
		t.Error("changed file content kept the same digests")
	}
}

func TestWriteRejectsBadSpecs(t *testing.T) {
	for name, mutate := range map[string]func(*Spec){
		"no name":       func(s *Spec) { s.Name = "" },
		"relative path": func(s *Spec) { s.Files[0].Dest = "bin/tool" },
		"duplicate":     func(s *Spec) { s.Symlinks[0].Dest = "/bin/tool" },
		"missing src":   func(s *Spec) { s.Files[0].Src = "/nonexistent/file" },
		"no target":     func(s *Spec) { s.Symlinks[0].Target = "" },
	} {
		t.Run(name, func(t *testing.T) {
			spec := testSpec(t)
			mutate(&spec)
			var buf bytes.Buffer
			if _, err := Write(&buf, spec); err == nil {
				t.Fatal("no error")
			}
			if buf.Len() != 0 {
				t.Error("wrote output despite the error")
			}
		})
	}
}

func TestTagOf(t *testing.T) {
	for in, want := range map[string]string{
		"registry.k8s.io/pause:3.10.1":            "3.10.1",
		"localhost:5000/busybox":                  "latest",
		"localhost:5000/busybox:e2e":              "e2e",
		"registry.k8s.io/coredns/coredns:v1.14.7": "v1.14.7",
	} {
		if got := tagOf(in); got != want {
			t.Errorf("tagOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRunFlags(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "pause")
	if err := os.WriteFile(bin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.tar")
	err := run([]string{"-o", out, "-name", "registry.k8s.io/pause:3.10.1", "-arch", "arm64",
		"-file", bin + ":/pause:0700", "-link", "/bin/sh=/pause", "-entrypoint", `["/pause"]`,
		"-expose", "53/udp", "-expose", "9153"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, files, _ := readTar(t, f)
	var idx ocispec.Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	var man ocispec.Manifest
	_ = json.Unmarshal(files["blobs/sha256/"+idx.Manifests[0].Digest.Encoded()], &man)
	var cfg ocispec.Image
	_ = json.Unmarshal(files["blobs/sha256/"+man.Config.Digest.Encoded()], &cfg)
	if cfg.Architecture != "arm64" || !reflect.DeepEqual(cfg.Config.Entrypoint, []string{"/pause"}) ||
		len(cfg.Config.ExposedPorts) != 2 {
		t.Errorf("config from flags = %+v", cfg)
	}
	if _, ok := cfg.Config.ExposedPorts["9153/tcp"]; !ok {
		t.Errorf("a port without protocol is not tcp: %v", cfg.Config.ExposedPorts)
	}
	if err := run([]string{"-o", out, "-name", "x:y", "-entrypoint", "/pause"}); err == nil {
		t.Error("a non-JSON entrypoint was accepted")
	}
}
