package node

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/node/images"
)

// ImageImport imports the system images embedded in node-agent (pinned) and
// every archive in the node's images directory, before the kubelet starts:
// nothing the node needs comes from a registry.
type ImageImport struct {
	node     *config.Node
	progress io.Writer
}

// NewImageImport returns the image import step.
func NewImageImport(n *config.Node, progress io.Writer) *ImageImport {
	return &ImageImport{node: n, progress: progress}
}

func (i *ImageImport) Name() string               { return "image import" }
func (i *ImageImport) Init(context.Context) error { return nil }
func (i *ImageImport) Stop() error                { return nil }

// Start imports. A bad archive in the images directory is reported and
// skipped, so one broken file never keeps the node from running its pods;
// a broken system image is an error.
func (i *ImageImport) Start(ctx context.Context) error {
	c, err := images.Connect(ctx, config.ContainerdSocket())
	if err != nil {
		return err
	}
	defer c.Close()
	begin := time.Now()
	system, err := images.ImportSystem(ctx, c, images.DefaultSnapshotter)
	if err != nil {
		return err
	}
	extra, err := images.ImportDir(ctx, c, i.node.ImagesDir(), images.ImportOptions{})
	if err != nil {
		fmt.Fprintf(i.progress, "warning: %v\n", err)
	}
	fmt.Fprintf(i.progress, "imported %d system images and %d from %s in %.1fs\n",
		len(system), len(extra), i.node.ImagesDir(), time.Since(begin).Seconds())
	return nil
}
