package config

import (
	"fmt"
	"path/filepath"
	"time"
)

// Defaults of the etcd section.
const (
	// DefaultQuotaBackendBytes is etcd's own default (2 GiB), set explicitly
	// so `status` can show the database against it.
	DefaultQuotaBackendBytes = 2 << 30
	// MaxQuotaBackendBytes is etcd's suggested maximum (8 GiB).
	MaxQuotaBackendBytes     = 8 << 30
	minQuotaBackendBytes     = 64 << 20
	DefaultDefragInterval    = "1h"
	DefaultDefragThreshold   = 50
	DefaultSnapshotInterval  = "12h"
	DefaultSnapshotRetention = 5
	// SnapshotDirName is the default snapshot directory, inside the data dir.
	SnapshotDirName = "snapshots"
	// minSnapshotInterval keeps scheduled snapshots from running back to back.
	minSnapshotInterval = 10 * time.Second
	minDefragInterval   = time.Minute
)

// EtcdConfig holds the embedded etcd's limits and maintenance.
type EtcdConfig struct {
	// QuotaBackendBytes is the database size at which etcd raises its
	// NOSPACE alarm and accepts only reads and deletes (default 2 GiB).
	QuotaBackendBytes int             `json:"quotaBackendBytes,omitempty"`
	Defrag            DefragConfig    `json:"defrag,omitempty"`
	Snapshots         SnapshotsConfig `json:"snapshots,omitempty"`
}

// DefragConfig says when the control plane defragments etcd. kube-apiserver
// compacts old revisions every 5 minutes; the space they held stays in the
// database file until a defragmentation returns it.
type DefragConfig struct {
	// Interval between checks (default 1h; "0" checks only at start).
	Interval string `json:"interval,omitempty"`
	// Threshold is the share of the database file, in percent, that must be
	// free before a check defragments (default 50).
	Threshold int `json:"threshold,omitempty"`
}

// SnapshotsConfig schedules snapshots of the control plane (etcd plus the
// files needed to bring the cluster back).
type SnapshotsConfig struct {
	// Interval between scheduled snapshots (default 12h; "0" turns them off).
	Interval string `json:"interval,omitempty"`
	// Retention is how many scheduled snapshots are kept (default 5); the
	// oldest beyond it is deleted. Snapshots saved by hand are never deleted.
	Retention int `json:"retention,omitempty"`
	// Dir holds the snapshots (default <dataDir>/snapshots).
	Dir string `json:"dir,omitempty"`
	// PassphraseFile, when set, holds the passphrase scheduled snapshots are
	// encrypted with (age, scrypt).
	PassphraseFile string `json:"passphraseFile,omitempty"`
}

func setEtcdDefaults(c *ControlPlane) {
	e := &c.Etcd
	setInt(&e.QuotaBackendBytes, DefaultQuotaBackendBytes)
	setString(&e.Defrag.Interval, DefaultDefragInterval)
	setInt(&e.Defrag.Threshold, DefaultDefragThreshold)
	setString(&e.Snapshots.Interval, DefaultSnapshotInterval)
	setInt(&e.Snapshots.Retention, DefaultSnapshotRetention)
	if e.Snapshots.Dir == "" && filepath.IsAbs(c.DataDir) {
		e.Snapshots.Dir = filepath.Join(c.DataDir, SnapshotDirName)
	}
}

// SnapshotInterval is the parsed etcd.snapshots.interval (0: off).
func (e *EtcdConfig) SnapshotInterval() time.Duration {
	d, _ := time.ParseDuration(e.Snapshots.Interval)
	return d
}

// DefragInterval is the parsed etcd.defrag.interval (0: at start only).
func (e *EtcdConfig) DefragInterval() time.Duration {
	d, _ := time.ParseDuration(e.Defrag.Interval)
	return d
}

func validateEtcd(e *EtcdConfig) []error {
	var errs []error
	add := func(field string, value any, allowed string) {
		errs = append(errs, fmt.Errorf("etcd.%s: invalid value %q: %s", field, fmt.Sprint(value), allowed))
	}
	if e.QuotaBackendBytes < minQuotaBackendBytes || e.QuotaBackendBytes > MaxQuotaBackendBytes {
		add("quotaBackendBytes", e.QuotaBackendBytes, fmt.Sprintf("must be between %d (64 MiB) and %d (8 GiB, etcd's suggested maximum)", minQuotaBackendBytes, MaxQuotaBackendBytes))
	}
	if err := checkInterval(e.Defrag.Interval, minDefragInterval); err != nil {
		add("defrag.interval", e.Defrag.Interval, err.Error()+" such as 1h, or 0 to check only at start")
	}
	if e.Defrag.Threshold < 1 || e.Defrag.Threshold > 100 {
		add("defrag.threshold", e.Defrag.Threshold, "must be a percentage between 1 and 100")
	}
	if err := checkInterval(e.Snapshots.Interval, minSnapshotInterval); err != nil {
		add("snapshots.interval", e.Snapshots.Interval, err.Error()+" such as 12h, or 0 to turn scheduled snapshots off")
	}
	if e.Snapshots.Retention < 1 {
		add("snapshots.retention", e.Snapshots.Retention, "must be at least 1")
	}
	if !filepath.IsAbs(e.Snapshots.Dir) {
		add("snapshots.dir", e.Snapshots.Dir, "must be an absolute path")
	} else if err := CheckDataDir("etcd.snapshots.dir", e.Snapshots.Dir); err != nil {
		errs = append(errs, err)
	}
	if e.Snapshots.PassphraseFile != "" && !filepath.IsAbs(e.Snapshots.PassphraseFile) {
		add("snapshots.passphraseFile", e.Snapshots.PassphraseFile, "must be an absolute path")
	}
	return errs
}

// checkInterval accepts "0" or a Go duration of at least min.
func checkInterval(s string, min time.Duration) error {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || (d > 0 && d < min) {
		return fmt.Errorf("must be 0 or a duration of at least %s", min)
	}
	return nil
}
