package controlplane

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/component"
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
	return component.FormatFlags(merged)
}

// joinSorted renders a feature-gate map as Name=true,Other=false.
func joinSorted(gates map[string]bool) string {
	parts := make([]string, 0, len(gates))
	for _, k := range slices.Sorted(maps.Keys(gates)) {
		parts = append(parts, fmt.Sprintf("%s=%t", k, gates[k]))
	}
	return strings.Join(parts, ",")
}
