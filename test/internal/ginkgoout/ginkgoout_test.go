package ginkgoout

import "testing"

func TestSummary(t *testing.T) {
	out := "noise\n\x1b[1mRan 65 of 96 Specs in 120.1 seconds\x1b[0m\n\x1b[32mSUCCESS!\x1b[0m -- 65 Passed | 0 Failed | 1 Pending | 30 Skipped\nPASS\n"
	want := "Ran 65 of 96 Specs in 120.1 seconds; SUCCESS! -- 65 Passed | 0 Failed | 1 Pending | 30 Skipped"
	if got := Summary(out); got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	if got := Summary("no summary here\n"); got != "" {
		t.Errorf("Summary of output without one = %q, want empty", got)
	}
}

func TestTail(t *testing.T) {
	if got := Tail("a\nb\nc\nd", 2); got != "c\nd" {
		t.Errorf("Tail = %q", got)
	}
	if got := Tail("a\nb", 5); got != "a\nb" {
		t.Errorf("Tail of a short text = %q", got)
	}
}
