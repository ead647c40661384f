#!/bin/bash
# cnp-run.sh — the network-policy-api v0.3.0 conformance tests for
# ClusterNetworkPolicy (standard features) against the lab that is up. Called by
# `make netpol-conformance`, which builds the test binary and the agnhost image
# the tests run first. Run it under the lab lock with a lab up, e.g.
#   flock /tmp/vcs-lab.lock bash -c 'make lab && make netpol-conformance; make lab-down'
#
# The kernel has no SCTP: the tests that need SCTP connections are skipped (by
# name, NETPOL_CNP_SKIP), and the summary says so.
#
# Environment:
#   NETPOL_CNP_TEST=FILE    the compiled conformance test binary (set by the Makefile)
#   NETPOL_CNP_IMAGE=FILE   the agnhost archive the tests name (set by the Makefile)
#   NETPOL_CNP_RUN=REGEXP   go test -run selection (default: every test)
#   NETPOL_CNP_SKIP=LIST    ShortNames not to run (default: the SCTP ones)
#   LAB, LAB_BIN            the lab script and the binaries it installed
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LAB=${LAB:-$REPO/test/vm/lab}
LAB_BIN=${LAB_BIN:-$REPO/bin}
LAB_STATE=${LAB_STATE:-/run/vcluster-standalone-lab}
TEST_BIN=${NETPOL_CNP_TEST:?set by make netpol-conformance}
IMAGE=${NETPOL_CNP_IMAGE:?set by make netpol-conformance}
RUN=${NETPOL_CNP_RUN:-^TestConformance\$}
# Each of these sends SCTP: four SCTP tests, the two port-range tests whose
# one subtest mixes SCTP with TCP and UDP, and the four "gress"/inline-CIDR tests
# whose subtests poke SCTP between their TCP and UDP pokes (on this kernel agnhost
# answers "protocol not supported", which fails both an expected connect and an
# expected timeout; in the run that found them every failed poke was SCTP).
SKIP=${NETPOL_CNP_SKIP:-CNPAdminTierEgressSCTP,CNPAdminTierIngressSCTP,CNPBaselineTierEgressSCTP,CNPBaselineTierIngressSCTP,CNPAdminTierPortRange,CNPBaselineTierPortRange,CNPAdminTierGress,CNPBaselineTierGress,CNPAdminTierEgressInlineCIDRPeers,CNPBaselineTierEgressInlineCIDRPeers}
RESULTS=${NETPOL_CNP_RESULTS:-$REPO/bin/netpol/cnp-results/$(date +%Y%m%d-%H%M%S)}

say() { echo "[netpol-conformance $(date +%H:%M:%S)] $*" >&2; }
die() {
	echo "netpol-conformance: error: $*" >&2
	exit 1
}
[ "$(id -u)" -eq 0 ] || die "must run as root (the lab needs it)"
if [ ! -f "$LAB_STATE/nodes" ] || [ ! -f "$LAB_STATE/admin.kubeconfig" ]; then
	die "no lab is up; run it under the lab lock after make lab (see the top of $0)"
fi
mkdir -p "$RESULTS"

# The archive lives below LAB_BIN, which every node sees at /run/lab/bin.
image_in_node=/run/lab/bin/$(realpath --relative-to="$(realpath "$LAB_BIN")" "$(realpath "$IMAGE")")
[[ $image_in_node != /run/lab/bin/../* ]] || die "$IMAGE is not below LAB_BIN ($LAB_BIN)"
say "importing $(basename "$IMAGE") on every node"
for n in $("$LAB" nodes); do
	"$LAB" exec "$n" node-agent images import --pin "$image_in_node" >"$RESULTS/import-$n.log" 2>&1 ||
		die "image import on $n failed; see $RESULTS/import-$n.log"
done

say "running the conformance tests (skipped, no SCTP: $SKIP); log $RESULTS/test.log"
t0=$(date +%s)
rc=0
(cd "$RESULTS" && KUBECONFIG=$LAB_STATE/admin.kubeconfig "$TEST_BIN" -test.v -test.run "$RUN" -test.timeout 40m \
	-supported-features=ClusterNetworkPolicy -skip-tests="$SKIP") >"$RESULTS/test.log" 2>&1 || rc=$?
s=$(($(date +%s) - t0))

# One line per top-level test (TestConformance/<ShortName>); skipped ones log "Skipping".
passed=$(grep -cE '^    --- PASS: TestConformance/[^/ ]+ ' "$RESULTS/test.log" || true)
failed=$(grep -cE '^    --- FAIL: TestConformance/[^/ ]+ ' "$RESULTS/test.log" || true)
# Ours log "Skipping <ShortName>" and pass; experimental ones skip themselves.
skipped=$(grep -cE 'Skipping CNP[A-Za-z]+$' "$RESULTS/test.log" || true)
experimental=$(grep -cE '^    --- SKIP: TestConformance/[^/ ]+ ' "$RESULTS/test.log" || true)
echo
echo "== network-policy-api v0.3.0 conformance ($RESULTS)"
echo "ClusterNetworkPolicy standard: $((passed - skipped)) passed, $failed failed, $skipped skipped (SCTP), $experimental experimental not run ($((s / 60))m$(printf %02d $((s % 60)))s)"
grep -E '^    --- FAIL: TestConformance/[^/ ]+ ' "$RESULTS/test.log" | sed 's/^ *--- FAIL: /FAILED /' || true
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
	grep -E '^\s+[a-z_]+\.go:[0-9]+:' "$RESULTS/test.log" | tail -n 5 >&2 || true
	echo "netpol-conformance: FAILED (test exit $rc; see $RESULTS/test.log)"
	exit 1
fi
[ "$rc" -eq 0 ] || { echo "netpol-conformance: FAILED"; exit 1; }
[ $((passed - skipped)) -gt 0 ] || { echo "netpol-conformance: FAILED (no test ran; selection $RUN)"; exit 1; }
echo "netpol-conformance: passed"
