// Package snapshot writes and reads control-plane snapshots: one file that
// holds a consistent copy of the etcd database and the files needed to bring
// the same cluster back on a new host (the PKI with every CA and key, the
// service-account key, the secrets-encryption key and the config).
//
// A snapshot is a gzip-compressed tar, optionally encrypted with a passphrase
// (age, scrypt). Its first entry is manifest.json, which lists every other
// entry with its size, mode and SHA-256; the etcd database keeps the SHA-256
// trailer etcd appends to it. Reading verifies all of it before anything is
// written where it matters.
package snapshot

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"
)

// scryptWorkFactor is age's default (2^18 iterations, about a second);
// tests lower it.
var scryptWorkFactor = 18

// Format is the manifest's format version; Open refuses any other.
const Format = 1

// manifestName and EtcdEntry are the fixed entries of every snapshot.
const (
	manifestName = "manifest.json"
	// EtcdEntry is the etcd database, as Maintenance.Snapshot streams it.
	EtcdEntry = "etcd/db"
	// ConfigEntry is the control-plane config file, when there was one.
	ConfigEntry = "config.yaml"
	// DataEntries is the prefix of files taken from the data dir.
	DataEntries = "data/"
)

// ageHeader starts every age file; gzipMagic every plain snapshot.
var (
	ageHeader = []byte("age-encryption.org/v1\n")
	gzipMagic = []byte{0x1f, 0x8b}
)

// Manifest describes a snapshot.
type Manifest struct {
	Format  int       `json:"format"`
	Created time.Time `json:"created"`
	// Version is the distribution's release that wrote it.
	Version string `json:"version"`
	// EtcdVersion is the server's version; Revision its revision at the snapshot.
	EtcdVersion string `json:"etcdVersion"`
	Revision    int64  `json:"revision"`
	Hostname    string `json:"hostname"`
	// AdvertiseAddress is where nodes reached the cluster: a restore on a host
	// with this address lets them reconnect without re-joining.
	AdvertiseAddress string `json:"advertiseAddress"`
	// DataDir is the control plane's data dir the files came from.
	DataDir string  `json:"dataDir"`
	Entries []Entry `json:"entries"`
}

// Entry is one file of a snapshot.
type Entry struct {
	Name   string      `json:"name"`
	Mode   fs.FileMode `json:"mode"`
	Size   int64       `json:"size"`
	SHA256 string      `json:"sha256"`
}

// Entry returns the named entry, if the snapshot has it.
func (m *Manifest) Entry(name string) (Entry, bool) {
	for _, e := range m.Entries {
		if e.Name == name {
			return e, true
		}
	}
	return Entry{}, false
}

// source is a file to archive: its entry and where its bytes are.
type source struct {
	entry Entry
	path  string
}

// writeArchive writes the manifest then every source to w, as a gzip'd tar,
// encrypted when passphrase is set.
func writeArchive(w io.Writer, m *Manifest, sources []source, passphrase []byte) error {
	out := w
	var enc io.WriteCloser
	if len(passphrase) > 0 {
		r, err := age.NewScryptRecipient(string(passphrase))
		if err != nil {
			return fmt.Errorf("failed to use the passphrase: %w", err)
		}
		r.SetWorkFactor(scryptWorkFactor)
		if enc, err = age.Encrypt(w, r); err != nil {
			return fmt.Errorf("failed to encrypt: %w", err)
		}
		out = enc
	}
	gz, err := gzip.NewWriterLevel(out, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := writeEntry(tw, manifestName, 0o600, bytes.NewReader(manifest), int64(len(manifest)), m.Created); err != nil {
		return err
	}
	for _, s := range sources {
		f, err := os.Open(s.path)
		if err != nil {
			return err
		}
		err = writeEntry(tw, s.entry.Name, s.entry.Mode, f, s.entry.Size, m.Created)
		f.Close()
		if err != nil {
			return fmt.Errorf("failed to archive %s: %w", s.entry.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	if enc != nil {
		return enc.Close()
	}
	return nil
}

func writeEntry(tw *tar.Writer, name string, mode fs.FileMode, r io.Reader, size int64, mtime time.Time) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: int64(mode.Perm()), Size: size, ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return err
	}
	n, err := io.Copy(tw, r)
	if err == nil && n != size {
		err = fmt.Errorf("size changed while archiving (%d bytes, expected %d)", n, size)
	}
	return err
}

// ErrPassphrase is returned for an encrypted snapshot and a wrong or missing passphrase.
var ErrPassphrase = errors.New("wrong passphrase")

// ErrNeedPassphrase says a snapshot is encrypted and no passphrase was given.
var ErrNeedPassphrase = errors.New("the snapshot is encrypted: give its passphrase")

// Encrypted reports whether the snapshot file at path is encrypted.
func Encrypted(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, len(ageHeader))
	n, _ := io.ReadFull(f, head)
	return bytes.Equal(head[:n], ageHeader), nil
}

// reader reads a snapshot's entries in order.
type reader struct {
	tr       *tar.Reader
	gz       *gzip.Reader
	closers  []io.Closer
	manifest *Manifest
}

// openArchive opens a snapshot and reads its manifest. passphrase is asked
// for only when the file is encrypted.
func openArchive(file string, passphrase func() ([]byte, error)) (*reader, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	r := &reader{closers: []io.Closer{f}}
	br := bufio.NewReaderSize(f, 1<<20)
	head, _ := br.Peek(len(ageHeader))
	var in io.Reader = br
	switch {
	case bytes.Equal(head, ageHeader):
		if passphrase == nil {
			r.Close()
			return nil, ErrNeedPassphrase
		}
		pass, err := passphrase()
		if err != nil {
			r.Close()
			return nil, err
		}
		if len(pass) == 0 {
			r.Close()
			return nil, ErrNeedPassphrase
		}
		id, err := age.NewScryptIdentity(string(pass))
		if err != nil {
			r.Close()
			return nil, err
		}
		dec, err := age.Decrypt(br, id)
		if err != nil {
			r.Close()
			var noMatch *age.NoIdentityMatchError
			if errors.As(err, &noMatch) {
				return nil, ErrPassphrase
			}
			return nil, corrupt("cannot decrypt: %v", err)
		}
		in = dec
	case bytes.HasPrefix(head, gzipMagic):
	default:
		r.Close()
		return nil, corrupt("neither gzip nor age data: not a snapshot file")
	}
	gz, err := gzip.NewReader(in)
	if err != nil {
		r.Close()
		return nil, corrupt("%v", err)
	}
	r.closers = append(r.closers, gz)
	r.gz = gz
	r.tr = tar.NewReader(gz)
	hdr, err := r.tr.Next()
	if err != nil || hdr.Name != manifestName || hdr.Size > 1<<20 {
		r.Close()
		return nil, corrupt("no manifest first")
	}
	data, err := io.ReadAll(r.tr)
	if err != nil {
		r.Close()
		return nil, corrupt("manifest: %v", readErr(err))
	}
	m := &Manifest{}
	if err := json.Unmarshal(data, m); err != nil {
		r.Close()
		return nil, corrupt("manifest: %v", err)
	}
	if m.Format != Format {
		r.Close()
		return nil, fmt.Errorf("snapshot format %d is not supported by this release (it reads format %d)", m.Format, Format)
	}
	for _, e := range m.Entries {
		if !safeName(e.Name) {
			r.Close()
			return nil, corrupt("entry name %q is not a plain relative path", e.Name)
		}
	}
	r.manifest = m
	return r, nil
}

func (r *reader) Close() error {
	var errs []error
	for i := len(r.closers) - 1; i >= 0; i-- {
		errs = append(errs, r.closers[i].Close())
	}
	return errors.Join(errs...)
}

// extract writes every entry below dir, checking each against the manifest:
// the same names in the same order, sizes and SHA-256 sums, and nothing else.
func (r *reader) extract(dir string, progress func(Entry)) error {
	for _, want := range r.manifest.Entries {
		hdr, err := r.tr.Next()
		if err != nil {
			return corrupt("%s missing: %v", want.Name, readErr(err))
		}
		if hdr.Name != want.Name || hdr.Typeflag != tar.TypeReg || hdr.Size != want.Size {
			return corrupt("entry %q does not match the manifest (expected %q)", hdr.Name, want.Name)
		}
		dest := filepath.Join(dir, filepath.FromSlash(want.Name))
		if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
			return err
		}
		if err := writeVerified(dest, want, r.tr); err != nil {
			return err
		}
		if progress != nil {
			progress(want)
		}
	}
	if _, err := r.tr.Next(); err != io.EOF {
		return corrupt("unexpected data after the last entry: %v", readErr(err))
	}
	// The gzip trailer (CRC and length) is checked at the end of its stream.
	if _, err := io.Copy(io.Discard, r.gz); err != nil {
		return corrupt("%v", readErr(err))
	}
	return nil
}

func writeVerified(dest string, want Entry, in io.Reader) error {
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), in)
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			return err // writing here failed, not reading the snapshot
		}
		return corrupt("%s: %v", want.Name, readErr(err))
	}
	if n != want.Size || hex.EncodeToString(h.Sum(nil)) != want.SHA256 {
		return corrupt("%s: SHA-256 does not match the manifest", want.Name)
	}
	return os.Chmod(dest, want.Mode.Perm())
}

// CorruptError is a snapshot that cannot be read back whole.
type CorruptError struct{ Reason string }

func (e *CorruptError) Error() string { return "corrupt or truncated snapshot: " + e.Reason }

func corrupt(format string, args ...any) error {
	return &CorruptError{Reason: fmt.Sprintf(format, args...)}
}

func readErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errors.New("file ends early")
	}
	return err
}

// safeName accepts clean relative slash paths without "..".
func safeName(name string) bool {
	return name != "" && path.Clean(name) == name && !path.IsAbs(name) && !strings.HasPrefix(name, "../") && name != ".." && !strings.Contains(name, "\\")
}

// hashFile returns the size and SHA-256 of a file.
func hashFile(p string) (int64, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return n, hex.EncodeToString(h.Sum(nil)), err
}
