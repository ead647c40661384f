package snapshot

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Extension ends every snapshot file name.
const Extension = ".snap"

// File-name prefixes: scheduled snapshots are pruned to the retention count,
// those saved by hand are never deleted by the control plane.
const (
	scheduledPrefix = "scheduled-"
	manualPrefix    = "snapshot-"
	stampLayout     = "20060102T150405Z"
)

// ScheduledName is the file name of a scheduled snapshot taken at t.
func ScheduledName(t time.Time) string {
	return scheduledPrefix + t.UTC().Format(stampLayout) + Extension
}

// ManualName is the file name `snapshot save` uses when given none.
func ManualName(t time.Time) string {
	return manualPrefix + t.UTC().Format(stampLayout) + Extension
}

// Info is one snapshot file of a directory.
type Info struct {
	Path      string
	Size      int64
	Time      time.Time // from the name, else the file's modification time
	Scheduled bool
	Encrypted bool
}

// List returns the snapshots in dir, oldest first. A missing dir has none.
func List(dir string) ([]Info, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", dir, err)
	}
	var out []Info
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, Extension) || strings.HasPrefix(name, ".") {
			continue
		}
		st, err := e.Info()
		if err != nil {
			continue
		}
		info := Info{Path: filepath.Join(dir, name), Size: st.Size(), Time: st.ModTime(), Scheduled: strings.HasPrefix(name, scheduledPrefix)}
		stamp := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(name, scheduledPrefix), manualPrefix), Extension)
		if t, err := time.Parse(stampLayout, stamp); err == nil {
			info.Time = t
		}
		info.Encrypted, _ = Encrypted(info.Path)
		out = append(out, info)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// LatestScheduled is the time of the newest scheduled snapshot in dir.
func LatestScheduled(dir string) (time.Time, bool) {
	list, _ := List(dir)
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].Scheduled {
			return list[i].Time, true
		}
	}
	return time.Time{}, false
}

// Prune deletes the oldest scheduled snapshots of dir beyond keep and
// returns the paths it deleted. Snapshots saved by hand stay.
func Prune(dir string, keep int) ([]string, error) {
	list, err := List(dir)
	if err != nil {
		return nil, err
	}
	var scheduled []Info
	for _, s := range list {
		if s.Scheduled {
			scheduled = append(scheduled, s)
		}
	}
	var deleted []string
	for i := 0; i < len(scheduled)-keep; i++ {
		if err := os.Remove(scheduled[i].Path); err != nil && !os.IsNotExist(err) {
			return deleted, fmt.Errorf("failed to delete old snapshot: %w", err)
		}
		deleted = append(deleted, scheduled[i].Path)
	}
	return deleted, nil
}
