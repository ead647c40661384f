package node

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/procmem"
)

// The programs node-agent installs in its bin dir, by the names containerd
// runs them: each is a small binary of its own (cmd/containerd,
// cmd/containerd-shim-runc-v2, cmd/vcs-cni, and runc), so a pod's shim and
// CNI calls start in milliseconds and hold only their own memory.
const (
	ContainerdName = "containerd"
	ShimName       = "containerd-shim-runc-v2"
	RuncName       = "runc"
)

// nodeBinaries are the embedded programs InstallBinaries writes.
var nodeBinaries = []string{RuncName, ContainerdName, ShimName, cni.PluginType}

// embedded holds the programs and their SHA256SUMS, put there by `make build`.
//
//go:embed embedded
var embedded embed.FS

const sumsFile = "SHA256SUMS"

// errNotBuilt says how to get a node-agent that carries its programs.
func errNotBuilt(name string) error {
	return fmt.Errorf("node-agent was built without %s; build it with `make build`", name)
}

// readSums reads SHA256SUMS (sha256sum's format) of the programs in src.
func readSums(src fs.FS) (map[string]string, error) {
	data, err := fs.ReadFile(src, sumsFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNotBuilt(sumsFile)
	}
	if err != nil {
		return nil, err
	}
	sums := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if sum, name, ok := strings.Cut(sc.Text(), "  "); ok {
			sums[name] = sum
		}
	}
	return sums, nil
}

// InstallBinaries fills binDir with runc, containerd, the runc shim and the
// CNI plugin. Each is rewritten (atomically) only when the installed file's
// checksum is not the embedded one's: a running shim's or container's
// binary is never replaced needlessly, and a start that finds them in place
// does not read (nor page in) the embedded copies. A link to node-agent that
// an earlier version installed is replaced by the file.
func InstallBinaries(binDir string) error {
	src, err := fs.Sub(embedded, "embedded")
	if err != nil {
		return err
	}
	return installBinaries(binDir, src)
}

// installBinaries installs nodeBinaries from src, which holds them and their SHA256SUMS.
func installBinaries(binDir string, src fs.FS) error {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return fmt.Errorf("failed to create %s: %w", binDir, err)
	}
	sums, err := readSums(src)
	if err != nil {
		return err
	}
	wrote := false
	for _, name := range nodeBinaries {
		want, ok := sums[name]
		if !ok {
			return errNotBuilt(name)
		}
		path := filepath.Join(binDir, name)
		if fileSum(path) == want {
			continue
		}
		if err := installFrom(src, name, path); err != nil {
			return err
		}
		wrote = true
	}
	if wrote {
		// The embedded copies (~70 MB) were read: not node-agent's RSS for good.
		procmem.ReleaseExecutablePages()
	}
	return nil
}

// installFrom copies src's name to path atomically (a temp file renamed
// over it), streaming: the embedded copy is never duplicated on the heap.
func installFrom(src fs.FS, name, path string) error {
	in, err := src.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return errNotBuilt(name)
	}
	if err != nil {
		return err
	}
	defer in.Close()
	err = fsutil.WriteAtomicFrom(path, 0o755, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
	if err != nil {
		return fmt.Errorf("failed to install %s: %w", name, err)
	}
	return nil
}

// fileSum is the hex SHA-256 of the regular file at path ("" if there is none).
func fileSum(path string) string {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}
