package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/node/images"
)

// newImagesCommand imports image archives into node-agent's containerd and
// lists its images: the offline way to give a node an image.
func newImagesCommand() *cobra.Command {
	var address string
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Import image archives into this node's containerd, or list its images",
		Long: "Import OCI or Docker image archives into the containerd of the running node-agent,\n" +
			"where kubelet can use them without a registry, or list the images it has.\n" +
			"Archives in <data-dir>/images/*.tar are imported at every start; the system images\n" +
			"(pause, CoreDNS) are embedded in node-agent and imported pinned.",
		Example: "  # import an image saved with `docker save` or built as an OCI archive\n" +
			"  node-agent images import ./myapp.tar\n\n" +
			"  # list the node's images\n  node-agent images list",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVar(&address, "address", config.ContainerdSocket(), "containerd socket of node-agent")
	cmd.AddCommand(newImagesImportCommand(&address), newImagesListCommand(&address))
	return cmd
}

func newImagesImportCommand(address *string) *cobra.Command {
	var pin bool
	cmd := &cobra.Command{
		Use:   "import FILE|-",
		Short: "Import an OCI or Docker image archive (a tar file, or - for standard input)",
		Long: "Import every image of an OCI image-layout or docker-archive tar into node-agent's\n" +
			"containerd (namespace k8s.io), unpacked so kubelet can start it at once. Either all\n" +
			"images of the archive are imported or none. Images keep the names the archive gives\n" +
			"them; use a tag other than :latest (or imagePullPolicy: IfNotPresent) so kubelet\n" +
			"does not try to pull them.",
		Example: "  node-agent images import ./myapp.tar\n\n" +
			"  # straight from docker on another machine\n" +
			"  docker save myapp:1.0 | ssh node1 node-agent images import -\n\n" +
			"  # keep the image even when kubelet's image GC frees disk space\n" +
			"  node-agent images import --pin ./tools.tar",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := commandContext(cmd)
			file := args[0]
			var in io.Reader = cmd.InOrStdin()
			if file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return fmt.Errorf("failed to import %s: %w", file, err)
				}
				defer f.Close()
				in = f
			}
			c, err := images.Connect(ctx, *address)
			if err != nil {
				return err
			}
			defer c.Close()
			imported, err := images.Import(ctx, c, in, images.ImportOptions{Source: file, Pinned: pin})
			if err != nil {
				return err
			}
			for _, img := range imported {
				fmt.Fprintf(cmd.OutOrStdout(), "imported %s (%s, %s)\n", img.Name, img.Digest, humanSize(img.Size))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&pin, "pin", false, "pin the images so kubelet's image garbage collection never removes them")
	return cmd
}

func newImagesListCommand(address *string) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List the images in node-agent's containerd",
		Long:    "List the images kubelet can use on this node: name, digest, size and whether\nthe image is pinned (kept by kubelet's image garbage collection).",
		Example: "  node-agent images list",
		Aliases: []string{"ls"},
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := commandContext(cmd)
			c, err := images.Connect(ctx, *address)
			if err != nil {
				return err
			}
			defer c.Close()
			list, err := images.List(ctx, c, "")
			if err != nil {
				return err
			}
			return printImages(cmd.OutOrStdout(), list)
		},
	}
}

func printImages(w io.Writer, list []images.Image) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tDIGEST\tSIZE\tPINNED")
	for _, img := range list {
		d := img.Digest.Encoded()
		if len(d) > 12 {
			d = d[:12]
		}
		pinned := "no"
		if img.Pinned {
			pinned = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", img.Name, d, humanSize(img.Size), pinned)
	}
	return tw.Flush()
}

// humanSize prints bytes in decimal units, as crictl and docker do.
func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	v, i := float64(n), 0
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.3g%s", v, []string{"B", "kB", "MB", "GB", "TB"}[i])
}

func commandContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
