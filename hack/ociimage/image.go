package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	_ "crypto/sha256" // registers SHA-256 for go-digest
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// epoch is the modification time of every entry, in the layer and in the
// archive: rebuilding from the same inputs gives the same digests.
var epoch = time.Unix(0, 0).UTC()

// File is a regular file copied into the image.
type File struct {
	Src  string      // path on the build machine
	Dest string      // absolute path in the image
	Mode os.FileMode // unix permission bits (04000 setuid etc. kept); 0 means 0644, or 0755 when Src is executable
}

// Symlink is a symbolic link in the image: Dest -> Target.
type Symlink struct {
	Dest   string
	Target string
}

// Spec describes an image: one layer per tree (in order), then one layer
// with the files, symlinks and directories (left out when a tree is given
// and they are empty).
type Spec struct {
	Name     string   // full reference, e.g. registry.k8s.io/pause:3.10.1
	Arch     string   // GOARCH, e.g. amd64
	Trees    []string // directories on the build machine, each added whole as a layer
	Files    []File
	Symlinks []Symlink
	Dirs     []string // extra empty directories (mode 0755); 1777 for /tmp
	Config   ocispec.ImageConfig
}

// Result names what Write produced.
type Result struct {
	Manifest digest.Digest
	Config   digest.Digest
	Layer    digest.Digest // the top layer
	DiffID   digest.Digest // the top layer, uncompressed
}

type blob struct {
	mediaType string
	data      []byte
}

func (b blob) descriptor() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: b.mediaType, Digest: digest.FromBytes(b.data), Size: int64(len(b.data))}
}

// Write writes spec as an OCI image-layout tar to w.
func Write(w io.Writer, spec Spec) (Result, error) {
	if err := validate(spec); err != nil {
		return Result{}, err
	}
	var layerTars [][]byte
	var lower []map[string]*tar.Header
	for _, t := range spec.Trees {
		lt, dirs, err := treeLayer(t)
		if err != nil {
			return Result{}, err
		}
		layerTars = append(layerTars, lt)
		lower = append(lower, dirs)
	}
	if len(spec.Trees) == 0 || len(spec.Files)+len(spec.Symlinks)+len(spec.Dirs) > 0 {
		lt, err := buildLayer(spec, lower)
		if err != nil {
			return Result{}, err
		}
		layerTars = append(layerTars, lt)
	}
	created := epoch
	var layers []blob
	var diffIDs []digest.Digest
	var history []ocispec.History
	for _, lt := range layerTars {
		var gz bytes.Buffer
		zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		if err != nil {
			return Result{}, err
		}
		if _, err := zw.Write(lt); err != nil {
			return Result{}, err
		}
		if err := zw.Close(); err != nil {
			return Result{}, err
		}
		layers = append(layers, blob{ocispec.MediaTypeImageLayerGzip, gz.Bytes()})
		diffIDs = append(diffIDs, digest.FromBytes(lt))
		history = append(history, ocispec.History{Created: &created, CreatedBy: "vcluster-standalone hack/ociimage"})
	}
	layer, diffID := layers[len(layers)-1], diffIDs[len(diffIDs)-1]

	platform := ocispec.Platform{OS: "linux", Architecture: spec.Arch}
	cfg := ocispec.Image{
		Created:  &created,
		Platform: platform,
		Config:   spec.Config,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
		History:  history,
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return Result{}, err
	}
	config := blob{ocispec.MediaTypeImageConfig, cfgJSON}

	man := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    config.descriptor(),
	}
	for _, l := range layers {
		man.Layers = append(man.Layers, l.descriptor())
	}
	manJSON, err := json.Marshal(man)
	if err != nil {
		return Result{}, err
	}
	manifest := blob{ocispec.MediaTypeImageManifest, manJSON}

	mdesc := manifest.descriptor()
	mdesc.Platform = &platform
	mdesc.Annotations = map[string]string{
		ocispec.AnnotationRefName:  tagOf(spec.Name),
		"io.containerd.image.name": spec.Name,
	}
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{mdesc},
	}
	idxJSON, err := json.Marshal(idx)
	if err != nil {
		return Result{}, err
	}
	layoutJSON, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return Result{}, err
	}

	tw := tar.NewWriter(w)
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(header(tar.TypeDir, d, 0o755, 0)); err != nil {
			return Result{}, err
		}
	}
	type entry struct {
		name string
		data []byte
	}
	entries := []entry{
		{ocispec.ImageLayoutFile, layoutJSON},
		{ocispec.ImageIndexFile, idxJSON},
	}
	written := map[string]bool{}
	for _, b := range append(layers, config, manifest) {
		if p := blobPath(b); !written[p] { // two trees may hold the same content
			written[p] = true
			entries = append(entries, entry{p, b.data})
		}
	}
	for _, e := range entries {
		if err := tw.WriteHeader(header(tar.TypeReg, e.name, 0o644, int64(len(e.data)))); err != nil {
			return Result{}, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return Result{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return Result{}, err
	}
	return Result{Manifest: mdesc.Digest, Config: digest.FromBytes(cfgJSON), Layer: digest.FromBytes(layer.data), DiffID: diffID}, nil
}

func blobPath(b blob) string {
	return "blobs/sha256/" + digest.FromBytes(b.data).Encoded()
}

// tagOf returns the tag of a reference ("3.10.1" of "registry.k8s.io/pause:3.10.1").
func tagOf(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[i+1:]
	}
	return "latest"
}

func validate(spec Spec) error {
	if spec.Name == "" {
		return fmt.Errorf("image name is required")
	}
	if spec.Arch == "" {
		return fmt.Errorf("architecture is required")
	}
	seen := map[string]bool{}
	check := func(p string) error {
		if !path.IsAbs(p) {
			return fmt.Errorf("image path %q must be absolute", p)
		}
		if clean := path.Clean(p); clean == "/" || seen[clean] {
			return fmt.Errorf("image path %q is given twice or is the root", p)
		}
		seen[path.Clean(p)] = true
		return nil
	}
	for _, f := range spec.Files {
		if err := check(f.Dest); err != nil {
			return err
		}
	}
	for _, l := range spec.Symlinks {
		if err := check(l.Dest); err != nil {
			return err
		}
		if l.Target == "" {
			return fmt.Errorf("symlink %q has no target", l.Dest)
		}
	}
	for _, d := range spec.Dirs {
		if err := check(d); err != nil {
			return err
		}
	}
	return nil
}

// buildLayer returns the uncompressed layer: every entry sorted by path,
// parent directories created, owned by 0:0, with a fixed mtime. A parent
// directory that a lower layer (a tree) holds keeps that layer's owner and
// mode, so adding /tmp/x does not change /tmp.
func buildLayer(spec Spec, lower []map[string]*tar.Header) ([]byte, error) {
	type entry struct {
		hdr *tar.Header
		src string
	}
	entries := map[string]entry{}
	var addParents func(p string)
	addParents = func(p string) {
		dir := path.Dir(p)
		if dir == "/" {
			return
		}
		name := strings.TrimPrefix(dir, "/") + "/"
		if _, ok := entries[name]; !ok {
			h := header(tar.TypeDir, name, 0o755, 0)
			if l, ok := treeDir(lower, dir); ok {
				h.Mode, h.Uid, h.Gid = l.Mode, l.Uid, l.Gid
			}
			entries[name] = entry{hdr: h}
		}
		addParents(dir)
	}
	for _, d := range spec.Dirs {
		d = path.Clean(d)
		mode := int64(0o755)
		if d == "/tmp" {
			mode = 0o1777
		}
		entries[strings.TrimPrefix(d, "/")+"/"] = entry{hdr: header(tar.TypeDir, strings.TrimPrefix(d, "/")+"/", mode, 0)}
		addParents(d)
	}
	for _, f := range spec.Files {
		st, err := os.Stat(f.Src)
		if err != nil {
			return nil, fmt.Errorf("failed to add %s: %w", f.Dest, err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("failed to add %s: %s is not a regular file", f.Dest, f.Src)
		}
		mode := f.Mode & 0o7777 // setuid, setgid and sticky bits as given
		if mode == 0 {
			mode = 0o644
			if st.Mode().Perm()&0o111 != 0 {
				mode = 0o755
			}
		}
		name := strings.TrimPrefix(path.Clean(f.Dest), "/")
		entries[name] = entry{hdr: header(tar.TypeReg, name, int64(mode), st.Size()), src: f.Src}
		addParents(f.Dest)
	}
	for _, l := range spec.Symlinks {
		name := strings.TrimPrefix(path.Clean(l.Dest), "/")
		h := header(tar.TypeSymlink, name, 0o777, 0)
		h.Linkname = l.Target
		entries[name] = entry{hdr: h}
		addParents(l.Dest)
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := entries[n]
		if err := tw.WriteHeader(e.hdr); err != nil {
			return nil, err
		}
		if e.src == "" {
			continue
		}
		if err := copyFile(tw, e.src, e.hdr.Size); err != nil {
			return nil, fmt.Errorf("failed to add /%s: %w", n, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func copyFile(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s changed while being read", src)
	}
	return nil
}

func header(typ byte, name string, mode, size int64) *tar.Header {
	return &tar.Header{
		Typeflag: typ,
		Name:     name,
		Mode:     mode,
		Size:     size,
		ModTime:  epoch,
	}
}
