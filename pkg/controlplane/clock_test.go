package controlplane

import (
	"strings"
	"testing"
	"time"
)

// TestClockBeforeCA: a clock before the CAs' start of validity is refused in
// one line naming the clock; a right clock and a first start (no CA) pass.
func TestClockBeforeCA(t *testing.T) {
	if err := checkClockAgainstCAs(Paths{DataDir: t.TempDir()}, time.Unix(0, 0)); err != nil {
		t.Fatalf("first start (no CA yet): %v", err)
	}
	l := newTestLocalNode(t)
	if err := checkClockAgainstCAs(l.paths, time.Now()); err != nil {
		t.Fatalf("right clock: %v", err)
	}
	err := checkClockAgainstCAs(l.paths, time.Now().Add(-48*time.Hour))
	if err == nil || !strings.Contains(err.Error(), "clock") || !strings.Contains(err.Error(), "before the start of validity of CA") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("clock two days early: %v, want one line about the clock", err)
	}
}
