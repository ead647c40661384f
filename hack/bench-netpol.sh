#!/usr/bin/env bash
# NetworkPolicy benchmark, on the nspawn lab (test/vm/lab): figures, not assertions.
#
#   policy change -> enforcement   per node, from creating (and deleting) an allow
#                                  policy to the first connection it lets through
#                                  (refuses), probes every 20 ms: test/e2e's
#                                  TestNetworkPolicy/PolicyChangeOnEveryNode
#   TCP throughput                 pod -> pod across two nodes with 50 policies in
#                                  force vs none, ratio: TestNetPolFigures
#   compile time, rule and set     pkg/cni/netpol's Go benchmarks (1,000 pods,
#   element counts                 200 policies), when the package has any
#
# Runs against the lab that is up, or brings one up (nodes joined) and takes down
# only that one. Callers hold /tmp/vcs-lab.lock around it:
#
#   flock /tmp/vcs-lab.lock hack/bench-netpol.sh
set -euo pipefail

# shellcheck source=hack/bench/lab-bench.sh
. "$(dirname "$0")/bench/lab-bench.sh" bench-netpol

cd "$repo"

# The compiler's benchmarks need no lab.
if grep -qs '^func Benchmark' pkg/cni/netpol/*_test.go; then
	echo "bench-netpol: go test -bench pkg/cni/netpol" >&2
	go test -run '^$' -bench . -benchmem -count=1 ./pkg/cni/netpol/ | grep -E '^(Benchmark|ok|FAIL)'
else
	echo "bench-netpol: pkg/cni/netpol has no Go benchmark; no compile-time figure" >&2
fi

brought_up=0
out=$(mktemp /tmp/vcs-bench-netpol.XXXXXX)
cleanup() {
	rm -f "$out"
	[ "$brought_up" = 0 ] || "$lab" down >/dev/null 2>&1 || true
}
trap cleanup EXIT
if [ ! -f /run/vcluster-standalone-lab/nodes ]; then
	echo "bench-netpol: bringing a lab up" >&2
	LAB_BIN=$bin "$lab" up >/dev/null
	brought_up=1
fi
if ! VCS_E2E_REUSE_LAB=1 VCS_LAB=$lab VCS_BINARY=$bin/vcluster-standalone \
	go test -tags e2e -count=1 -timeout 20m -run '^(TestNetworkPolicy|TestNetPolFigures)$/^PolicyChangeOnEveryNode$' -v ./test/e2e/ >"$out" 2>&1; then
	cat "$out" >&2
	echo "bench-netpol: the figures' tests failed" >&2
	exit 1
fi
grep -E 'MB/s per round|FIGURE' "$out" | sed 's/^ *[a-z_]*\.go:[0-9]*: //'
