#!/bin/bash
# run.sh — the upstream `[sig-network] Netpol` specs of e2e.test v1.36.3 against
# the nspawn lab, offline. Called by `make netpol` / `make netpol-subset`, which
# build e2e.test, ginkgo, kubectl and the images first (test/conformance builds
# them; this is the netpol part of test/conformance/run.sh, which owns the lab
# lock, the image import and the summary). See README.md.
#
# Environment:
#   NETPOL_PROCS=6        ginkgo processes: the fastest measured on 2 cores
#                         (4: 6m59s, 6: 4m55s, 8: 5m29s; all 47 passed each time)
#   NETPOL_FOCUS=REGEXP   only the Netpol specs whose full name matches
#   NETPOL_SUBSET=FILE    only the specs named (full names, one a line) in FILE
#   NETPOL_KEEP_LAB=1     leave a lab this run brought up running
#   NETPOL_RESULTS=DIR    where reports go (default bin/netpol/results/<time>)
#   CONFORMANCE_BIN, CONFORMANCE_IMAGES, LAB, LAB_BIN  set by the Makefile
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

results=${NETPOL_RESULTS:-$REPO/bin/netpol/results/$(date +%Y%m%d-%H%M%S)${NETPOL_SUBSET:+-subset}}
mkdir -p "$results"
ln -sfn "$(cd "$results" && pwd)" "$(dirname "$results")/latest" 2>/dev/null || true

CONFORMANCE_PARTS=netpol \
	CONFORMANCE_PROCS=${NETPOL_PROCS:-6} \
	CONFORMANCE_FOCUS=${NETPOL_FOCUS:-} \
	CONFORMANCE_SUBSET=${NETPOL_SUBSET:-} \
	CONFORMANCE_KEEP_LAB=${NETPOL_KEEP_LAB:-${CONFORMANCE_KEEP_LAB:-0}} \
	CONFORMANCE_RESULTS=$results \
	exec "$REPO/test/conformance/run.sh"
