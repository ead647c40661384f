#!/bin/bash
# run.sh — kube-bench (CIS Kubernetes Benchmark) on the nspawn lab; `make cis`
# builds kube-bench and its config directory first (cis.mk).
#
# Brings a lab up unless one runs (and takes it down again at the end), copies
# kube-bench, the generated config and the tools its audits call (kubectl, jq)
# into lab-cp and lab-node1, runs the control-plane targets on lab-cp and the
# node target on lab-node1, keeps the JSON reports in $CIS_RESULTS and prints a
# PASS/FAIL/WARN/INFO summary per node and every FAIL and WARN. Exits non-zero
# when any check FAILs.
#
# Callers hold /tmp/vcs-lab.lock, as for every lab user:
#   flock /tmp/vcs-lab.lock make cis
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LAB=${LAB:-$REPO/test/vm/lab}
LAB_BIN=${LAB_BIN:-$REPO/bin}
LAB_STATE=${LAB_STATE:-/run/vcluster-standalone-lab}
CIS_BIN=${CIS_BIN:-$LAB_BIN/cis}
CIS_BENCHMARK=${CIS_BENCHMARK:-cis-1.12}
CIS_RESULTS=${CIS_RESULTS:-$CIS_BIN/results}
# Where the tools go inside a node; removed again afterwards.
NODE_DIR=/var/tmp/vcs-cis

say() { echo "[cis] $*" >&2; }
die() {
	echo "cis: error: $*" >&2
	exit 1
}

for f in "$CIS_BIN/kube-bench" "$CIS_BIN/cfg/config.yaml" "$CIS_BIN/tools/kubectl" "$CIS_BIN/tools/jq"; do
	[ -e "$f" ] || die "$f missing: run make cis-tools"
done
command -v jq >/dev/null || die "jq is needed on this host (test/vm/install-deps.sh installs it)"

BROUGHT_UP=0
NODES=()
cleanup() {
	local rc=$? n
	trap - EXIT INT TERM
	for n in "${NODES[@]}"; do "$LAB" exec "$n" rm -rf "$NODE_DIR" >/dev/null 2>&1 || true; done
	if [ "$BROUGHT_UP" = 1 ]; then
		say "taking down the lab this run brought up"
		"$LAB" down >/dev/null || rc=1
	fi
	exit "$rc"
}
trap cleanup EXIT INT TERM

if [ ! -f "$LAB_STATE/nodes" ]; then
	say "no lab running: bringing one up"
	BROUGHT_UP=1
	LAB_BIN=$LAB_BIN "$LAB" up >&2
fi

# bench NODE TARGETS: run kube-bench in NODE, the JSON report to $CIS_RESULTS/NODE.json.
bench() {
	local n=$1 targets=$2
	NODES+=("$n")
	"$LAB" exec "$n" sh -c "rm -rf $NODE_DIR && mkdir -p $NODE_DIR"
	tar -C "$CIS_BIN" -cf - kube-bench cfg tools | "$LAB" exec "$n" tar -C "$NODE_DIR" -xf -
	say "$n: kube-bench --benchmark $CIS_BENCHMARK run --targets $targets"
	"$LAB" exec "$n" env PATH="$NODE_DIR/tools:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
		LD_LIBRARY_PATH="$NODE_DIR/tools/lib" \
		"$NODE_DIR/kube-bench" --config-dir "$NODE_DIR/cfg" --benchmark "$CIS_BENCHMARK" \
		run --targets "$targets" --json >"$CIS_RESULTS/$n.json" 2>"$CIS_RESULTS/$n.log" ||
		die "kube-bench failed in $n (see $CIS_RESULTS/$n.log)"
}

# summary NODE TARGETS: one line of counts, then each FAIL and WARN.
summary() {
	local n=$1 targets=$2
	jq -r --arg n "$n" --arg t "$targets" \
		'"\($n) (\($t)): \(.Totals.total_pass) PASS, \(.Totals.total_fail) FAIL, \(.Totals.total_warn) WARN, \(.Totals.total_info) INFO"' \
		"$CIS_RESULTS/$n.json"
	# A WARN is fine only when overrides.yaml says why (its reason is the remediation).
	jq -r '.Controls[].tests[].results[] | select(.status == "FAIL" or .status == "WARN") |
		"  [\(.status)] \(.test_number) \(.test_desc)" +
		(if .status == "WARN" and (.remediation | startswith("vcluster-standalone:") | not) then "  <- no reason in test/cis/overrides.yaml" else "" end)' \
		"$CIS_RESULTS/$n.json"
}

mkdir -p "$CIS_RESULTS"
bench lab-cp master,controlplane,etcd,policies
bench lab-node1 node
echo "== CIS benchmark $CIS_BENCHMARK (kube-bench), reports in $CIS_RESULTS"
summary lab-cp master,controlplane,etcd,policies
summary lab-node1 node
fails=$(jq -s '[.[].Totals.total_fail] | add' "$CIS_RESULTS/lab-cp.json" "$CIS_RESULTS/lab-node1.json")
[ "$fails" -eq 0 ] || die "$fails check(s) FAIL"
