// Package ginkgoout reads the output of a Ginkgo suite (csi-sanity) for the
// tests that run one: its summary line and the tail worth showing on failure.
package ginkgoout

import (
	"regexp"
	"strings"
)

var colour = regexp.MustCompile("\x1b\\[[0-9;]*m")

// Summary is Ginkgo's "Ran N of M Specs" line and its pass/fail counts, with
// colour codes removed.
func Summary(out string) string {
	var keep []string
	for _, l := range strings.Split(colour.ReplaceAllString(out, ""), "\n") {
		if strings.HasPrefix(l, "Ran ") || strings.Contains(l, " Passed | ") {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	return strings.Join(keep, "; ")
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
