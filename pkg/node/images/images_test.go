package images

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

func TestImportPinnedSystemImage(t *testing.T) {
	tc := startContainerd(t)
	ctx := context.Background()
	archive, manifest := writeImage(t, t.TempDir(), "pause.tar", config.PauseImage, "amd64")

	for round := 1; round <= 2; round++ { // importing again changes nothing
		got, err := ImportFile(ctx, tc.client, archive, ImportOptions{Pinned: true})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if len(got) != 1 || got[0].Name != config.PauseImage || got[0].Digest.String() != manifest ||
			!got[0].Pinned || !got[0].Unpacked || got[0].Size <= 0 {
			t.Fatalf("round %d: imported %+v, want %s@%s pinned and unpacked", round, got, config.PauseImage, manifest)
		}
	}
	if names := tc.names(t); !reflect.DeepEqual(names, []string{config.PauseImage + "@" + manifest}) {
		t.Errorf("image store holds %v", names)
	}

	// The record carries the labels the CRI plugin reads.
	rec, err := tc.client.ImageService().Get(namespaces.WithNamespace(ctx, Namespace), config.PauseImage)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Labels[LabelManaged] != "managed" || rec.Labels[LabelPinned] != "pinned" {
		t.Errorf("labels = %v", rec.Labels)
	}

	list, err := List(ctx, tc.client, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != config.PauseImage || !list[0].Pinned || !list[0].Unpacked || list[0].Size <= 0 {
		t.Errorf("List = %+v", list)
	}
	// Not unpacked into a snapshotter it was not asked for.
	if list, err := List(ctx, tc.client, "native"); err != nil || len(list) != 1 || list[0].Unpacked {
		t.Errorf("List(native) = %+v, %v", list, err)
	}

	// What kubelet sees: the CRI image service knows the image, pinned.
	conn, err := grpc.NewClient("unix://"+tc.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cri := runtimeapi.NewImageServiceClient(conn)
	var status *runtimeapi.ImageStatusResponse
	deadline := time.Now().Add(10 * time.Second)
	for { // the CRI plugin learns of new images from events
		status, err = cri.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: config.PauseImage}})
		if err == nil && status.Image != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("CRI ImageStatus: %v", err)
	}
	if status.Image == nil || !status.Image.Pinned || !contains(status.Image.RepoTags, config.PauseImage) {
		t.Errorf("CRI ImageStatus = %+v, want %s pinned", status.Image, config.PauseImage)
	}
}

func TestImportBadArchiveChangesNothing(t *testing.T) {
	tc := startContainerd(t)
	ctx := context.Background()
	dir := t.TempDir()
	good, _ := writeImage(t, dir, "good.tar", "example.test/good:1", "amd64")
	if _, err := ImportFile(ctx, tc.client, good, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	before := tc.names(t)

	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := writeImage(t, dir, "other.tar", "example.test/other:1", "amd64")
	otherData, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{
		"garbage.tar":   []byte("this is not a tar archive at all, just some text that is long enough to be read"),
		"truncated.tar": otherData[:len(otherData)/2],
		"empty.tar":     {},
		"plain.tar":     tarOf(t, map[string]string{"hello.txt": "hi"}),
		"noindex.tar":   tarOf(t, map[string]string{"oci-layout": `{"imageLayoutVersion":"1.0.0"}`}),
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, content, 0o644); err != nil {
				t.Fatal(err)
			}
			imgs, err := ImportFile(ctx, tc.client, p, ImportOptions{Pinned: true})
			if err == nil {
				t.Fatalf("imported %+v", imgs)
			}
			want := "failed to import " + p + ": not an OCI or Docker image archive ("
			if !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error = %q, want one line starting %q", err, want)
			}
			if got := tc.names(t); !reflect.DeepEqual(got, before) {
				t.Errorf("image store changed: %v, was %v", got, before)
			}
		})
	}

	t.Run("wrong platform", func(t *testing.T) {
		arm, _ := writeImage(t, dir, "arm.tar", "example.test/good:1", "arm64")
		_, err := ImportFile(ctx, tc.client, arm, ImportOptions{})
		if err == nil || err.Error() != "failed to import "+arm+": the archive holds no image for linux/amd64" {
			t.Fatalf("error = %v", err)
		}
		if got := tc.names(t); !reflect.DeepEqual(got, before) {
			t.Errorf("image store changed: %v, was %v", got, before)
		}
	})

	// Well-formed archive, digests right, but the layer is not gzip: the
	// import goes through and the unpack fails. The images it created are
	// removed and the one it replaced is back as it was.
	t.Run("layer does not unpack", func(t *testing.T) {
		p := filepath.Join(dir, "badlayer.tar")
		if err := os.WriteFile(p, ociArchive(t, []byte("not gzip"), "example.test/good:1", "example.test/new:1"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ImportFile(ctx, tc.client, p, ImportOptions{})
		if err == nil || !strings.HasPrefix(err.Error(), "failed to import "+p+": failed to unpack example.test/") {
			t.Fatalf("error = %v", err)
		}
		if got := tc.names(t); !reflect.DeepEqual(got, before) {
			t.Errorf("image store changed: %v, was %v", got, before)
		}
		rec, err := tc.client.ImageService().Get(namespaces.WithNamespace(ctx, Namespace), "example.test/good:1")
		if err != nil || rec.Labels[LabelManaged] != "managed" {
			t.Errorf("example.test/good:1 after the failed import: %+v, %v", rec, err)
		}
	})

	// From a reader, the error names the source.
	_, err = Import(ctx, tc.client, bytes.NewReader(data[:100]), ImportOptions{Source: "-"})
	if err == nil || !strings.HasPrefix(err.Error(), "failed to import standard input: not an OCI or Docker image archive") {
		t.Errorf("error = %v", err)
	}
}

func TestImportDirImportsGoodAndReportsBad(t *testing.T) {
	tc := startContainerd(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "images")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, a := writeImage(t, dir, "a.tar", "example.test/a:1", "amd64")
	_, c := writeImage(t, dir, "c.tar", "example.test/c:1", "amd64")
	if err := os.WriteFile(filepath.Join(dir, "b.tar"), []byte("corrupt"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not an archive, not a .tar"), 0o644); err != nil {
		t.Fatal(err)
	}

	imgs, err := ImportDir(ctx, tc.client, dir, ImportOptions{})
	if err == nil || !strings.Contains(err.Error(), "failed to import "+filepath.Join(dir, "b.tar")+": not an OCI or Docker image archive") {
		t.Errorf("error = %v, want b.tar reported", err)
	}
	if err != nil && (strings.Contains(err.Error(), "a.tar") || strings.Contains(err.Error(), "c.tar") || strings.Contains(err.Error(), "notes.txt")) {
		t.Errorf("error names more than b.tar: %v", err)
	}
	var got []string
	for _, img := range imgs {
		got = append(got, img.Name+"@"+img.Digest.String())
		if img.Pinned {
			t.Errorf("%s pinned without being asked", img.Name)
		}
	}
	want := []string{"example.test/a:1@" + a, "example.test/c:1@" + c}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ImportDir returned %v, want %v", got, want)
	}
	if names := tc.names(t); !reflect.DeepEqual(names, want) {
		t.Errorf("image store holds %v, want %v", names, want)
	}

	// A node without an images dir imports nothing and is fine.
	if imgs, err := ImportDir(ctx, tc.client, filepath.Join(dir, "missing"), ImportOptions{}); err != nil || len(imgs) != 0 {
		t.Errorf("ImportDir(missing) = %v, %v", imgs, err)
	}
}

func TestConnectWithoutContainerd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "containerd.sock")
	_, err := Connect(context.Background(), sock)
	want := "cannot reach containerd at " + sock + ": is node-agent running?"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %v, want %q", err, want)
	}
}

func TestSystem(t *testing.T) {
	_, err := systemFrom(fstest.MapFS{"embedded/README.md": {Data: []byte("x")}})
	if !errors.Is(err, ErrNoSystemImages) || err.Error() != "node-agent was built without system images; build it with make" {
		t.Errorf("without archives: %v", err)
	}
	_, err = systemFrom(fstest.MapFS{"embedded/pause.tar": {Data: []byte("p")}})
	if !errors.Is(err, ErrNoSystemImages) {
		t.Errorf("with only pause.tar: %v", err)
	}
	got, err := systemFrom(fstest.MapFS{"embedded/pause.tar": {Data: []byte("p")}, "embedded/coredns.tar": {Data: []byte("c")}})
	if err != nil {
		t.Fatal(err)
	}
	want := []Archive{{config.PauseImage, "pause.tar", []byte("p")}, {config.CoreDNSImage, "coredns.tar", []byte("c")}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("System = %+v", got)
	}
	// What this test binary embeds: either both archives or the clear error.
	if arch, err := System(); err != nil && !errors.Is(err, ErrNoSystemImages) || err == nil && len(arch) != 2 {
		t.Errorf("System() = %d archives, %v", len(arch), err)
	}
}

// The image names in pkg/config match what the sources build.
func TestSystemImageVersionsMatchSources(t *testing.T) {
	gomod, err := os.ReadFile("../../../images/coredns/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	tag := config.CoreDNSImage[strings.LastIndex(config.CoreDNSImage, ":")+1:]
	if !strings.Contains(string(gomod), "github.com/coredns/coredns "+tag+"\n") {
		t.Errorf("images/coredns/go.mod does not require github.com/coredns/coredns %s (config.CoreDNSImage)", tag)
	}
	pause, err := os.ReadFile("../../../images/pause/main.go")
	if err != nil {
		t.Fatal(err)
	}
	tag = config.PauseImage[strings.LastIndex(config.PauseImage, ":")+1:]
	if !strings.Contains(string(pause), `const version = "`+tag+`"`) {
		t.Errorf("images/pause/main.go does not say version %s (config.PauseImage)", tag)
	}
}

func TestFullReference(t *testing.T) {
	for in, want := range map[string]string{
		"3.10.1":                       "",
		"latest":                       "",
		"busybox:1":                    "docker.io/library/busybox:1",
		"registry.k8s.io/pause:3.10.1": "registry.k8s.io/pause:3.10.1",
		"Not A Ref:/":                  "",
	} {
		if got := fullReference(in); got != want {
			t.Errorf("fullReference(%q) = %q, want %q", in, got, want)
		}
	}
}

func tarOf(t *testing.T, files map[string]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, content); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ociArchive builds an OCI layout by hand, with layer as its only layer
// (declared gzip) and one index entry per name.
func ociArchive(t *testing.T, layer []byte, names ...string) []byte {
	t.Helper()
	blobs := map[string]string{}
	add := func(mediaType string, data []byte) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
		blobs["blobs/sha256/"+d.Digest.Encoded()] = string(data)
		return d
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cfg := add(ocispec.MediaTypeImageConfig, mustJSON(ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layer)}},
	}))
	l := add(ocispec.MediaTypeImageLayerGzip, layer)
	man := add(ocispec.MediaTypeImageManifest, mustJSON(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: cfg, Layers: []ocispec.Descriptor{l},
	}))
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	for _, n := range names {
		m := man
		m.Annotations = map[string]string{"io.containerd.image.name": n}
		idx.Manifests = append(idx.Manifests, m)
	}
	blobs["index.json"] = string(mustJSON(idx))
	blobs["oci-layout"] = `{"imageLayoutVersion":"1.0.0"}`
	return tarOf(t, blobs)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// The archives `make images` builds import and unpack (skipped before make).
func TestImportBuiltArchives(t *testing.T) {
	dir := "../../../bin/images"
	want := map[string]string{"pause.tar": config.PauseImage, "coredns.tar": config.CoreDNSImage, "busybox.tar": "localhost/busybox:e2e"}
	for f := range want {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Skipf("run make images first: %v", err)
		}
	}
	tc := startContainerd(t)
	imgs, err := ImportDir(context.Background(), tc.client, dir, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, img := range imgs {
		got[img.Name] = img.Unpacked && img.Size > 0
	}
	for f, name := range want {
		if !got[name] {
			t.Errorf("%s: %s not imported and unpacked (got %+v)", f, name, imgs)
		}
	}
}

// A `docker save` archive (manifest.json, RepoTags) imports too.
func TestImportDockerArchive(t *testing.T) {
	tc := startContainerd(t)
	layer := tarOf(t, map[string]string{"hello.txt": "hello"})
	cfg, err := json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config:   ocispec.ImageConfig{Cmd: []string{"/hello"}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layer)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfgName := digest.FromBytes(cfg).Encoded() + ".json"
	manifest := `[{"Config":"` + cfgName + `","RepoTags":["example.test/docker:1"],"Layers":["l1/layer.tar"]}]`
	archive := tarOf(t, map[string]string{"manifest.json": manifest, cfgName: string(cfg), "l1/layer.tar": string(layer)})

	imgs, err := Import(context.Background(), tc.client, bytes.NewReader(archive), ImportOptions{Source: "docker.tar"})
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].Name != "example.test/docker:1" || !imgs[0].Unpacked {
		t.Fatalf("imported %+v", imgs)
	}
	if names := tc.names(t); len(names) != 1 || !strings.HasPrefix(names[0], "example.test/docker:1@") {
		t.Errorf("image store holds %v", names)
	}
}

// The system images embedded in this binary import pinned (skipped when the
// binary was built without them, e.g. by plain go test before make).
func TestImportSystem(t *testing.T) {
	if _, err := System(); err != nil {
		t.Skip(err)
	}
	tc := startContainerd(t)
	imgs, err := ImportSystem(context.Background(), tc.client, "")
	if err != nil {
		t.Fatal(err)
	}
	list, err := List(context.Background(), tc.client, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 || len(list) != 2 {
		t.Fatalf("imported %+v, listed %+v", imgs, list)
	}
	for i, name := range []string{config.CoreDNSImage, config.PauseImage} { // List sorts by name
		if list[i].Name != name || !list[i].Pinned || !list[i].Unpacked {
			t.Errorf("listed %+v, want %s pinned and unpacked", list[i], name)
		}
	}
}
