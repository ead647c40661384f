package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
	cimages "github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

const (
	// Namespace is the containerd namespace the CRI plugin serves kubelet from.
	Namespace = "k8s.io"
	// DefaultSnapshotter is the CRI plugin's snapshotter on a node.
	DefaultSnapshotter = "overlayfs"

	// LabelManaged marks an image as the CRI plugin's own.
	LabelManaged = "io.cri-containerd.image"
	// LabelPinned makes the CRI plugin report an image as pinned, so
	// kubelet's image garbage collection never removes it.
	LabelPinned = "io.cri-containerd.pinned"
)

// Image is an image in the node's containerd.
type Image struct {
	Name     string
	Digest   digest.Digest // of the manifest (or index) the name points to
	Size     int64         // bytes of content for this node's platform
	Pinned   bool
	Unpacked bool // into the snapshotter the lister was asked about
}

// ImportOptions tune Import.
type ImportOptions struct {
	// Source names the archive in messages: a file path, or "-" for stdin.
	Source string
	// Pinned labels the images so kubelet's image GC keeps them.
	Pinned bool
	// Snapshotter to unpack into; DefaultSnapshotter when empty.
	Snapshotter string
}

func (o ImportOptions) snapshotter() string {
	if o.Snapshotter == "" {
		return DefaultSnapshotter
	}
	return o.Snapshotter
}

func (o ImportOptions) source() string {
	switch o.Source {
	case "":
		return "image archive"
	case "-":
		return "standard input"
	}
	return o.Source
}

// Connect returns a client of the containerd at address once it answers, or
// an error saying node-agent is not running.
func Connect(ctx context.Context, address string) (*client.Client, error) {
	unreachable := func(err error) error {
		return fmt.Errorf("cannot reach containerd at %s: is node-agent running? (%v)", address, err)
	}
	if _, err := os.Stat(address); err != nil {
		return nil, unreachable(err)
	}
	c, err := client.New(address, client.WithDefaultNamespace(Namespace), client.WithTimeout(5*time.Second))
	if err != nil {
		return nil, unreachable(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if ok, err := c.IsServing(cctx); err != nil || !ok {
		c.Close()
		if err == nil {
			err = errors.New("not serving")
		}
		return nil, unreachable(err)
	}
	return c, nil
}

// Import imports the OCI image-layout or docker-archive tar r into the k8s.io
// namespace, unpacks every image for this node's platform into the
// snapshotter, and labels it for the CRI plugin (pinned when asked). Either
// every image of the archive is imported and unpacked, or the image store is
// left as it was.
func Import(ctx context.Context, c *client.Client, r io.Reader, opts ImportOptions) ([]Image, error) {
	ctx = namespaces.WithNamespace(ctx, Namespace)
	fail := func(format string, args ...any) error {
		return fmt.Errorf("failed to import %s: "+format, append([]any{opts.source()}, args...)...)
	}
	is := c.ImageService()
	existing, err := is.List(ctx)
	if err != nil {
		return nil, fail("%w", unreachableErr(err))
	}
	before := map[string]cimages.Image{}
	for _, img := range existing {
		before[img.Name] = img
	}

	labels := map[string]string{LabelManaged: "managed"}
	if opts.Pinned {
		labels[LabelPinned] = "pinned"
	}
	imported, err := c.Import(ctx, r,
		client.WithImportPlatform(platforms.DefaultStrict()),
		client.WithImageLabels(labels),
		client.WithImageRefTranslator(fullReference),
	)
	if err != nil {
		if isUnavailable(err) {
			return nil, fail("%w", unreachableErr(err))
		}
		if errors.Is(err, cimages.ErrEmptyWalk) {
			return nil, fail("the archive holds no image for %s", platforms.Format(platforms.DefaultSpec()))
		}
		return nil, fail("not an OCI or Docker image archive (%v)", err)
	}
	if len(imported) == 0 {
		return nil, fail("the archive names no image (no io.containerd.image.name or full org.opencontainers.image.ref.name annotation, no RepoTags)")
	}

	out := make([]Image, 0, len(imported))
	for _, img := range imported {
		ci := client.NewImageWithPlatform(c, img, platforms.DefaultStrict())
		if err := ci.Unpack(ctx, opts.snapshotter()); err != nil {
			rollback(context.WithoutCancel(ctx), is, before, imported)
			return nil, fail("failed to unpack %s into %s: %v", img.Name, opts.snapshotter(), err)
		}
		size, err := ci.Size(ctx)
		if err != nil {
			rollback(context.WithoutCancel(ctx), is, before, imported)
			return nil, fail("failed to read %s: %v", img.Name, err)
		}
		out = append(out, Image{Name: img.Name, Digest: img.Target.Digest, Size: size, Pinned: opts.Pinned, Unpacked: true})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ImportFile imports the archive at path ("-" is standard input).
func ImportFile(ctx context.Context, c *client.Client, path string, opts ImportOptions) ([]Image, error) {
	opts.Source = path
	if path == "-" {
		return Import(ctx, c, os.Stdin, opts)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to import %s: %w", path, err)
	}
	defer f.Close()
	return Import(ctx, c, f, opts)
}

// ImportDir imports every *.tar in dir (sorted by name; a missing dir holds
// none). A bad archive is reported in the returned error and skipped; the
// others are still imported.
func ImportDir(ctx context.Context, c *client.Client, dir string, opts ImportOptions) ([]Image, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil {
		return nil, err
	}
	slices.Sort(paths)
	var (
		out  []Image
		errs []error
	)
	for _, p := range paths {
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
			continue
		}
		imgs, err := ImportFile(ctx, c, p, opts)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		out = append(out, imgs...)
	}
	return out, errors.Join(errs...)
}

// ImportSystem imports the system images embedded in node-agent, pinned.
func ImportSystem(ctx context.Context, c *client.Client, snapshotter string) ([]Image, error) {
	archives, err := System()
	if err != nil {
		return nil, err
	}
	var out []Image
	for _, a := range archives {
		imgs, err := Import(ctx, c, bytes.NewReader(a.Data), ImportOptions{Source: "system image " + a.File, Pinned: true, Snapshotter: snapshotter})
		if err != nil {
			return out, err
		}
		out = append(out, imgs...)
	}
	return out, nil
}

// List returns the images in the k8s.io namespace, sorted by name, with
// Unpacked telling whether each is unpacked into snapshotter (DefaultSnapshotter when empty).
func List(ctx context.Context, c *client.Client, snapshotter string) ([]Image, error) {
	ctx = namespaces.WithNamespace(ctx, Namespace)
	if snapshotter == "" {
		snapshotter = DefaultSnapshotter
	}
	imgs, err := c.ImageService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("failed to list images: %w", unreachableErr(err))
	}
	out := make([]Image, 0, len(imgs))
	for _, img := range imgs {
		ci := client.NewImageWithPlatform(c, img, platforms.DefaultStrict())
		im := Image{Name: img.Name, Digest: img.Target.Digest, Pinned: img.Labels[LabelPinned] == "pinned"}
		// Content of another platform, or missing content, is not an error
		// for a listing: such an image shows size 0 and not unpacked.
		if size, err := ci.Size(ctx); err == nil {
			im.Size = size
		}
		if ok, err := ci.IsUnpacked(ctx, snapshotter); err == nil {
			im.Unpacked = ok
		}
		out = append(out, im)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// fullReference keeps an org.opencontainers.image.ref.name that is a full
// image reference and drops a bare tag, which names no image.
func fullReference(name string) string {
	if !strings.ContainsAny(name, "/:@") {
		return ""
	}
	ref, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return ""
	}
	return ref.String()
}

// rollback puts back the image records an import replaced and deletes the
// ones it created.
func rollback(ctx context.Context, is cimages.Store, before map[string]cimages.Image, imported []cimages.Image) {
	for _, img := range imported {
		if prev, ok := before[img.Name]; ok {
			_, _ = is.Update(ctx, prev, "target", "labels")
			continue
		}
		_ = is.Delete(ctx, img.Name)
	}
}

func isUnavailable(err error) bool {
	return errdefs.IsUnavailable(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func unreachableErr(err error) error {
	if errdefs.IsUnavailable(err) {
		return fmt.Errorf("cannot reach containerd: is node-agent running? (%w)", err)
	}
	return err
}
