package node

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
)

// The name under which containerd runs node-agent as its runc shim
// (multi-call; the CNI plugin's is cni.PluginType): cmd/node-agent dispatches
// on the program name.
const (
	ShimName = "containerd-shim-runc-v2"
)

// embedded holds runc, put there by `make build`.
//
//go:embed embedded
var embedded embed.FS

// Runc returns the embedded runc binary.
func Runc() ([]byte, error) {
	b, err := embedded.ReadFile("embedded/runc")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errors.New("node-agent was built without runc; build it with `make build`")
	}
	return b, err
}

// InstallBinaries fills binDir: runc (rewritten only when it changed, so a
// running container's runc is never replaced under it needlessly) and links
// to self for the containerd shim and the CNI plugin.
func InstallBinaries(binDir, self string) error {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return fmt.Errorf("failed to create %s: %w", binDir, err)
	}
	runc, err := Runc()
	if err != nil {
		return err
	}
	runcPath := filepath.Join(binDir, "runc")
	if current, err := os.ReadFile(runcPath); err != nil || !bytes.Equal(current, runc) {
		if err := fsutil.WriteFileAtomic(runcPath, runc, 0o755); err != nil {
			return fmt.Errorf("failed to install runc: %w", err)
		}
	}
	for _, name := range []string{ShimName, cni.PluginType} {
		if err := ensureSymlink(self, filepath.Join(binDir, name)); err != nil {
			return err
		}
	}
	return nil
}

func ensureSymlink(target, link string) error {
	if current, err := os.Readlink(link); err == nil && current == target {
		return nil
	}
	tmp := link + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("failed to link %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		return fmt.Errorf("failed to link %s: %w", link, err)
	}
	return nil
}
