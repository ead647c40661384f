package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
)

// revisionBump moves etcd's revision far past anything a client saw before
// the restore, and marks the old ones compacted, as etcd advises for
// Kubernetes: watches resumed by kubelets and controllers get "410 Gone" and
// relist instead of waiting for revisions the restored database reuses.
const revisionBump = 1_000_000_000

// RestoreOptions say which snapshot to restore and how.
type RestoreOptions struct {
	File string
	// Passphrase is asked for only when the snapshot is encrypted.
	Passphrase func() ([]byte, error)
	// ConfigFile receives the snapshot's config (if it has one); the file
	// there before, when different, is kept beside it.
	ConfigFile string
	// EtcdMember returns the name and peer URL of the restored etcd member
	// for the snapshot's config.
	EtcdMember func(c *config.ControlPlane) (name, peerURL string)
	// CheckStopped refuses (with an error) when a control plane runs on
	// dataDir or, when c is set, on the ports of c. It runs before anything
	// is written, first with c nil (before the config is read).
	CheckStopped func(dataDir string, c *config.ControlPlane) error
	Progress     io.Writer
}

// restored are the top-level names of the data dir a restore replaces.
func restored(m *Manifest) []string {
	names := []string{"etcd"}
	for _, e := range m.Entries {
		if rest, ok := strings.CutPrefix(e.Name, DataEntries); ok {
			top, _, _ := strings.Cut(rest, "/")
			if !slices.Contains(names, top) {
				names = append(names, top)
			}
		}
	}
	return names
}

// Restore verifies the whole snapshot, then replaces the data dir's etcd
// database and files with the snapshot's and writes its config. Until all
// is verified nothing outside a staging directory is written; what the data
// dir held before is moved to <dataDir>/pre-restore-<time>.
func Restore(o RestoreOptions) (*Manifest, error) {
	begin := time.Now()
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	r, err := openArchive(o.File, o.Passphrase)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	m := r.manifest
	if !filepath.IsAbs(m.DataDir) {
		return nil, corrupt("manifest names no absolute data dir")
	}
	if _, ok := m.Entry(EtcdEntry); !ok {
		return nil, corrupt("no etcd database in it")
	}
	if o.CheckStopped != nil {
		if err := o.CheckStopped(m.DataDir, nil); err != nil {
			return nil, err
		}
	}

	parent := filepath.Dir(m.DataDir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	staging, err := os.MkdirTemp(parent, ".vcs-restore-")
	if err != nil {
		return nil, fmt.Errorf("failed to stage the restore in %s: %w", parent, err)
	}
	defer os.RemoveAll(staging)
	files := filepath.Join(staging, "files")
	if err := r.extract(files, nil); err != nil {
		return nil, err
	}
	c, err := stagedConfig(files, m)
	if err != nil {
		return nil, err
	}
	if o.CheckStopped != nil {
		if err := o.CheckStopped(m.DataDir, c); err != nil {
			return nil, err
		}
	}
	db := filepath.Join(files, filepath.FromSlash(EtcdEntry))
	if err := verifyEtcdTrailer(db); err != nil {
		return nil, corrupt("%v", err)
	}
	if _, err := etcdutl.NewV3(zap.NewNop()).Status(db); err != nil {
		return nil, corrupt("etcd database: %s", firstLine(err))
	}
	// Progress starts once the snapshot is known good: a refusal is one line.
	fmt.Fprintf(progress, "verified the snapshot of %s taken %s (etcd revision %d, %d files) in %.1fs; restoring into %s\n",
		m.Hostname, m.Created.Format(time.RFC3339), m.Revision, len(m.Entries), time.Since(begin).Seconds(), m.DataDir)

	name, peerURL := o.EtcdMember(c)
	etcdDir := filepath.Join(staging, "etcd")
	err = etcdutl.NewV3(zap.NewNop()).Restore(etcdutl.RestoreConfig{
		SnapshotPath: db, Name: name, OutputDataDir: etcdDir, PeerURLs: []string{peerURL},
		InitialCluster: name + "=" + peerURL, InitialClusterToken: "etcd-cluster",
		RevisionBump: revisionBump, MarkCompacted: true,
	})
	if err != nil {
		return nil, fmt.Errorf("failed to rebuild the etcd data dir from the snapshot: %s", firstLine(err))
	}
	fmt.Fprintf(progress, "rebuilt the etcd member %s (revision moved past %d) in %.1fs\n", name, m.Revision+revisionBump, time.Since(begin).Seconds())

	backup, err := swapIn(m, staging, files, begin)
	if err != nil {
		return nil, err
	}
	if backup != "" {
		fmt.Fprintf(progress, "the data dir's previous files are in %s; remove it once the cluster works\n", backup)
	}
	if err := restoreConfig(o.ConfigFile, files, m, begin, progress); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "restored in %.1fs; start the control plane (systemctl start vcluster-standalone)\n", time.Since(begin).Seconds())
	return m, nil
}

// stagedConfig parses the snapshot's config (or, without one, defaults for
// its data dir) with the defaults applied.
func stagedConfig(files string, m *Manifest) (*config.ControlPlane, error) {
	c := &config.ControlPlane{}
	if _, ok := m.Entry(ConfigEntry); ok {
		data, err := os.ReadFile(filepath.Join(files, ConfigEntry))
		if err != nil {
			return nil, err
		}
		if c, err = config.Parse("in the snapshot", data); err != nil {
			return nil, err
		}
	}
	config.SetDefaults(c, nil)
	if c.DataDir != m.DataDir {
		return nil, corrupt("its config names data dir %s, its manifest %s", c.DataDir, m.DataDir)
	}
	return c, nil
}

// swapIn moves the data dir's current etcd and files aside and the staged
// ones in. Re-running a restore that stopped half-way is safe: whatever is
// in place is moved aside again.
func swapIn(m *Manifest, staging, files string, now time.Time) (string, error) {
	if _, err := config.ClaimDataDir(m.DataDir, "pki"); err != nil {
		return "", fmt.Errorf("failed to prepare data dir %s: %w", m.DataDir, err)
	}
	if err := os.Chmod(m.DataDir, 0o700); err != nil {
		return "", err
	}
	backup := filepath.Join(m.DataDir, "pre-restore-"+now.UTC().Format(stampLayout))
	used := false
	for _, name := range restored(m) {
		cur := filepath.Join(m.DataDir, name)
		if _, err := os.Lstat(cur); err == nil {
			if err := os.MkdirAll(backup, 0o700); err != nil {
				return "", err
			}
			if err := os.Rename(cur, filepath.Join(backup, name)); err != nil {
				return "", fmt.Errorf("failed to move %s aside: %w", cur, err)
			}
			used = true
		}
		src := filepath.Join(files, "data", name)
		if name == "etcd" {
			src = filepath.Join(staging, "etcd")
		}
		if err := os.Rename(src, cur); err != nil {
			return "", fmt.Errorf("failed to put %s in place: %w", cur, err)
		}
	}
	_ = fsutil.SyncDir(m.DataDir)
	if !used {
		return "", nil
	}
	return backup, nil
}

// restoreConfig writes the snapshot's config to path, keeping a different
// file that was there as path.pre-restore-<time>.
func restoreConfig(path, files string, m *Manifest, now time.Time, progress io.Writer) error {
	e, ok := m.Entry(ConfigEntry)
	if path == "" || !ok {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(files, ConfigEntry))
	if err != nil {
		return err
	}
	old, err := os.ReadFile(path)
	switch {
	case err == nil && bytes.Equal(old, data):
		return nil
	case err == nil:
		keep := path + ".pre-restore-" + now.UTC().Format(stampLayout)
		if err := os.Rename(path, keep); err != nil {
			return fmt.Errorf("failed to keep the previous config: %w", err)
		}
		fmt.Fprintf(progress, "the previous config is in %s\n", keep)
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(path, data, e.Mode.Perm()); err != nil {
		return fmt.Errorf("failed to write config %s: %w", path, err)
	}
	fmt.Fprintf(progress, "wrote the snapshot's config to %s\n", path)
	return nil
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
