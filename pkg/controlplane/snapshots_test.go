package controlplane

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/snapshot"
)

func TestScheduledSnapshotsFirstDue(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	c := &config.ControlPlane{}
	c.Etcd.Snapshots.Dir = dir
	s := &scheduledSnapshots{c: c, now: func() time.Time { return now }}
	if got := s.firstDue(12 * time.Hour); !got.Equal(now.Add(12 * time.Hour)) {
		t.Errorf("no snapshot yet: first due %s, want an interval after start", got)
	}
	last := now.Add(-5 * time.Hour)
	if err := os.WriteFile(filepath.Join(dir, snapshot.ScheduledName(last)), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := s.firstDue(12 * time.Hour); !got.Equal(last.Add(12 * time.Hour)) {
		t.Errorf("after a restart: first due %s, want an interval after the last one (%s)", got, last)
	}
	if got := s.firstDue(2 * time.Hour); !got.Equal(now.Add(time.Minute)) {
		t.Errorf("one missed while down: due %s, want a minute after start", got)
	}
}
