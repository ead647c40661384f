package controlplane

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMountPointOf(t *testing.T) {
	if got := mountPointOf("/proc/self/status"); got != "/proc" {
		t.Errorf("mount point of /proc/self/status: %q, want /proc", got)
	}
	if got := mountPointOf("/"); got != "/" {
		t.Errorf("mount point of /: %q", got)
	}
}

func TestNoSpaceErrorIsOneLine(t *testing.T) {
	msg := (&noSpaceError{dir: "/var/lib/vcluster-standalone", mount: "/var", free: 3 << 20}).Error()
	for _, want := range []string{"/var/lib/vcluster-standalone", "mounted at /var", "3.0 MiB free", "128.0 MiB", "free space"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("not one line: %q", msg)
	}
}

// TestFailureRecord: the repeat count behind the start-up backoff; an old
// record is a new incident.
func TestFailureRecord(t *testing.T) {
	record := filepath.Join(t.TempDir(), "no-space-x")
	if n := failuresBefore(record); n != 0 {
		t.Fatalf("no record: %d", n)
	}
	os.WriteFile(record, []byte("3"), 0o600)
	if n := failuresBefore(record); n != 3 {
		t.Fatalf("record 3: %d", n)
	}
	old := time.Now().Add(-backoffReset - time.Minute)
	os.Chtimes(record, old, old)
	if n := failuresBefore(record); n != 0 {
		t.Fatalf("old record: %d, want 0", n)
	}
}
