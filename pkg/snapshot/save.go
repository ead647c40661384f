package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// SaveOptions say what a snapshot holds and where it comes from.
type SaveOptions struct {
	// Client is a client of the running etcd; Endpoint the one it reports on.
	Client   *clientv3.Client
	Endpoint string
	// DataDir is the control plane's data dir; DataFiles are paths inside
	// it (directories are taken whole) saved under data/. Missing ones are
	// skipped (e.g. the encryption key with secretsEncryption off).
	DataDir   string
	DataFiles []string
	// ConfigFile is saved as config.yaml when it exists.
	ConfigFile string
	// Passphrase, when set, encrypts the snapshot.
	Passphrase []byte
	// Version, Hostname and AdvertiseAddress go into the manifest.
	Version, Hostname, AdvertiseAddress string
	// Progress receives one line per step; may be nil.
	Progress io.Writer
}

// Save writes a snapshot to file (0600, atomically: a failed save leaves no
// file behind) and returns its manifest.
func Save(ctx context.Context, file string, o SaveOptions) (*Manifest, error) {
	begin := time.Now()
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create %s: %w", dir, err)
	}
	dbFile, err := os.CreateTemp(dir, ".etcd-*.part")
	if err != nil {
		return nil, fmt.Errorf("failed to write in %s: %w", dir, err)
	}
	defer os.Remove(dbFile.Name())
	m := &Manifest{Format: Format, Created: begin.UTC().Truncate(time.Second), Version: o.Version, Hostname: o.Hostname,
		AdvertiseAddress: o.AdvertiseAddress, DataDir: o.DataDir}

	fmt.Fprintf(progress, "streaming the etcd database\n")
	dbEntry, err := streamEtcd(ctx, o, dbFile, m)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "etcd database at revision %d: %s in %.1fs, SHA-256 verified\n", m.Revision, HumanBytes(dbEntry.Size), time.Since(begin).Seconds())

	sources := []source{{entry: dbEntry, path: dbFile.Name()}}
	files, err := dataSources(o.DataDir, o.DataFiles)
	if err != nil {
		return nil, err
	}
	sources = append(sources, files...)
	if st, err := os.Stat(o.ConfigFile); o.ConfigFile != "" && err == nil && st.Mode().IsRegular() {
		s, err := fileSource(ConfigEntry, o.ConfigFile, st.Mode())
		if err != nil {
			return nil, err
		}
		sources = append(sources, s)
	}
	for _, s := range sources {
		m.Entries = append(m.Entries, s.entry)
	}

	err = fsutil.WriteAtomicFrom(file, 0o600, func(w io.Writer) error {
		return writeArchive(w, m, sources, o.Passphrase)
	})
	if err != nil {
		return nil, fmt.Errorf("failed to write snapshot %s: %w", file, err)
	}
	st, _ := os.Stat(file)
	encrypted := ""
	if len(o.Passphrase) > 0 {
		encrypted = ", encrypted"
	}
	fmt.Fprintf(progress, "saved %s (%s, %d files%s) in %.1fs\n", file, HumanBytes(st.Size()), len(m.Entries), encrypted, time.Since(begin).Seconds())
	return m, nil
}

// streamEtcd writes etcd's snapshot stream to f and checks the SHA-256
// trailer etcd appends to it.
func streamEtcd(ctx context.Context, o SaveOptions, f *os.File, m *Manifest) (Entry, error) {
	defer f.Close()
	if o.Client == nil {
		return Entry{}, fmt.Errorf("no etcd client")
	}
	status, err := o.Client.Status(ctx, o.Endpoint)
	if err != nil {
		return Entry{}, fmt.Errorf("etcd does not answer on %s (is the control plane running?): %w", o.Endpoint, err)
	}
	m.EtcdVersion = status.Version
	// The snapshot is at this revision or a later one.
	m.Revision = status.Header.Revision
	resp, err := o.Client.SnapshotWithVersion(ctx)
	if err != nil {
		return Entry{}, fmt.Errorf("failed to start the etcd snapshot: %w", err)
	}
	defer resp.Snapshot.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), resp.Snapshot)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		return Entry{}, fmt.Errorf("failed to receive the etcd snapshot: %w", err)
	}
	if err := verifyEtcdTrailer(f.Name()); err != nil {
		return Entry{}, fmt.Errorf("etcd sent a snapshot that fails its check: %w", err)
	}
	return Entry{Name: EtcdEntry, Mode: 0o600, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// verifyEtcdTrailer checks that the last 32 bytes of an etcd snapshot are
// the SHA-256 of everything before them, as etcd writes it.
func verifyEtcdTrailer(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	// The database is a whole number of 512-byte sectors plus the trailer.
	if size < 512+sha256.Size || size%512 != sha256.Size {
		return fmt.Errorf("etcd database of %d bytes has no SHA-256 trailer", size)
	}
	h := sha256.New()
	if _, err := io.CopyN(h, f, size-sha256.Size); err != nil {
		return err
	}
	trailer := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, trailer); err != nil {
		return err
	}
	if !bytes.Equal(trailer, h.Sum(nil)) {
		return fmt.Errorf("etcd database SHA-256 does not match its trailer")
	}
	return nil
}

// dataSources lists the regular files of each path below dataDir, sorted.
func dataSources(dataDir string, paths []string) ([]source, error) {
	var out []source
	for _, p := range paths {
		root := filepath.Join(dataDir, p)
		if _, err := os.Lstat(root); os.IsNotExist(err) {
			continue
		}
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			if !info.Mode().IsRegular() {
				return fmt.Errorf("%s is not a regular file; a snapshot holds only files", path)
			}
			rel, err := filepath.Rel(dataDir, path)
			if err != nil {
				return err
			}
			s, err := fileSource(DataEntries+filepath.ToSlash(rel), path, info.Mode())
			if err != nil {
				return err
			}
			out = append(out, s)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("failed to read %s: %w", root, err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].entry.Name < out[j].entry.Name })
	return out, nil
}

func fileSource(name, path string, mode fs.FileMode) (source, error) {
	size, sum, err := hashFile(path)
	if err != nil {
		return source{}, err
	}
	return source{entry: Entry{Name: name, Mode: mode.Perm(), Size: size, SHA256: sum}, path: path}, nil
}

// HumanBytes renders a byte count as B, KiB, MiB or GiB.
func HumanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
