package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// systemDirs are directories a data dir must never be: start makes the data
// dir 0700 and uninstall/reset remove it. The top-level directories of the
// file system hierarchy, and the shared ones below /usr and /var that data
// dirs usually live in.
var systemDirs = []string{
	"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt", "/opt", "/proc", "/root", "/run",
	"/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
	"/usr/bin", "/usr/lib", "/usr/local", "/usr/sbin", "/usr/share",
	"/var/cache", "/var/lib", "/var/log", "/var/run", "/var/spool", "/var/tmp",
}

// CheckDataDir refuses, for the config key field, an absolute dir that is
// (or cleans to) / or a system directory such as /var or /lib64.
func CheckDataDir(field, dir string) error {
	if !filepath.IsAbs(dir) {
		return nil // reported as "must be an absolute path"
	}
	if slices.Contains(systemDirs, filepath.Clean(dir)) {
		return fmt.Errorf("%s: invalid value %q: must be a directory of its own such as /var/lib/<name>; / and system directories like /var, /usr or /etc are refused (the data dir is made 0700 and removed on uninstall)", field, dir)
	}
	return nil
}

// DataDirMarker is the file whose presence says a data dir is ours: start and
// join write it into a directory they create (or find empty, or holding
// their own layout), and uninstall and reset remove a data dir only while it
// is there, so a dataDir pointed at someone else's directory is left alone.
const DataDirMarker = ".vcluster-standalone-data-dir"

const markerText = "This directory was made by vcluster-standalone (control plane or node-agent).\n" +
	"Uninstall and `node-agent reset` remove it, and only while this file is here.\n"

// ClaimDataDir creates dir (0700) if missing and marks it ours when it is
// new, empty, already marked, or holds layout (a path inside dir that only
// we make, e.g. "pki": a data dir from a release before the marker). It
// reports whether dir is ours; a directory with other content is not marked.
func ClaimDataDir(dir, layout string) (bool, error) {
	if OwnsDataDir(dir) {
		return true, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	if _, err := os.Stat(filepath.Join(dir, layout)); len(entries) > 0 && err != nil {
		return false, nil
	}
	if err := os.WriteFile(filepath.Join(dir, DataDirMarker), []byte(markerText), 0o600); err != nil {
		return false, err
	}
	return true, nil
}

// OwnsDataDir reports whether dir carries the marker ClaimDataDir writes.
func OwnsDataDir(dir string) bool {
	st, err := os.Lstat(filepath.Join(dir, DataDirMarker))
	return err == nil && st.Mode().IsRegular()
}
