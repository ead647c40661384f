package config

import (
	"fmt"
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
