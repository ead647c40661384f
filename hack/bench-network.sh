#!/usr/bin/env bash
# Pod network benchmark, on the nspawn lab (test/vm/lab): figures, not assertions.
#
#   TCP throughput     pod -> pod across two nodes (VXLAN) against node -> node on
#                      the same lab link, measured in one run, interleaved, median
#                      of 3; senders busybox `dd | nc` (the same binary in the pod
#                      image and on the node) and netprobe (Go, 256 KiB writes)
#   CNI ADD / DEL      p50/p99/max of 100 sequential runs of the node's vcs-cni,
#                      invoked as containerd does (CNI_* environment, the node's
#                      conflist entry on stdin) on throw-away network namespaces
#
# Both are test/e2e's TestNetFigures (network_figures_test.go); this script runs
# it against the lab that is up, or brings one up (nodes joined) and takes down
# only that one. Callers hold /tmp/vcs-lab.lock around it:
#
#   flock /tmp/vcs-lab.lock hack/bench-network.sh
set -euo pipefail

# shellcheck source=hack/bench/lab-bench.sh
. "$(dirname "$0")/bench/lab-bench.sh" bench-network

brought_up=0
cleanup() { [ "$brought_up" = 0 ] || "$lab" down >/dev/null 2>&1 || true; }
trap cleanup EXIT
if [ ! -f /run/vcluster-standalone-lab/nodes ]; then
	echo "bench-network: bringing a lab up" >&2
	LAB_BIN=$bin "$lab" up >/dev/null
	brought_up=1
fi

out=$(mktemp /tmp/vcs-bench-network.XXXXXX)
trap 'rm -f "$out"; cleanup' EXIT
cd "$repo"
if ! VCS_E2E_REUSE_LAB=1 VCS_LAB=$lab VCS_BINARY=$bin/vcluster-standalone \
	go test -tags e2e -count=1 -timeout 15m -run '^TestNetFigures$' -v ./test/e2e/ >"$out" 2>&1; then
	cat "$out" >&2
	echo "bench-network: TestNetFigures failed" >&2
	exit 1
fi
grep -E 'MB/s per round|FIGURE' "$out" | sed 's/^ *[a-z_]*\.go:[0-9]*: //'
