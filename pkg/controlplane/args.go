package controlplane

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// mergeArgs returns the final command line of a component: our defaults,
// overridden key by key by the user's extra args. A user value replaces ours;
// a key the defaults lack is added. Output is sorted so logs are stable.
func mergeArgs(defaults, extra map[string]string) []string {
	merged := maps.Clone(defaults)
	if merged == nil {
		merged = map[string]string{}
	}
	maps.Copy(merged, extra)
	args := make([]string, 0, len(merged))
	for _, k := range slices.Sorted(maps.Keys(merged)) {
		args = append(args, fmt.Sprintf("--%s=%s", k, merged[k]))
	}
	return args
}

// joinSorted renders a feature-gate map as Name=true,Other=false.
func joinSorted(gates map[string]bool) string {
	parts := make([]string, 0, len(gates))
	for _, k := range slices.Sorted(maps.Keys(gates)) {
		parts = append(parts, fmt.Sprintf("%s=%t", k, gates[k]))
	}
	return strings.Join(parts, ",")
}
