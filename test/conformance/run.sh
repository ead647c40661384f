#!/bin/bash
# run.sh — the upstream Kubernetes [Conformance] suite (e2e.test v1.36.3) against
# the nspawn lab, offline. Called by `make conformance` / `make conformance-subset`,
# which build e2e.test, ginkgo, kubectl and the images first; see README.md.
#
# Steps: hold /tmp/vcs-lab.lock; bring the lab up unless one is up (and take it
# down again at the end if this run brought it up); import every archive of the
# image list on every node; run the parallel part (ginkgo --procs N, [Conformance]
# minus [Serial]), then the [Serial] part; print one summary line per part and the
# failed specs, from the JUnit reports. Exits non-zero if anything failed.
#
# Environment:
#   CONFORMANCE_FOCUS=REGEXP   only the [Conformance] specs whose full name matches
#   CONFORMANCE_SUBSET=FILE    only the specs named (full names, one a line) in FILE;
#                              fails unless exactly those ran
#   CONFORMANCE_PARTS=parallel,serial   which parts to run, in that order; the
#                              part netpol is the upstream [sig-network] Netpol
#                              specs instead (test/netpol/run.sh, make netpol)
#   CONFORMANCE_PROCS=4        ginkgo processes of the parallel part
#   CONFORMANCE_TIMEOUT=3h     ginkgo's timeout for each part
#   CONFORMANCE_KEEP_LAB=1     leave a lab this run brought up running
#   CONFORMANCE_RESULTS=DIR    where reports go (default bin/conformance/results/<time>)
#   CONFORMANCE_BIN, CONFORMANCE_IMAGES, LAB, LAB_BIN  set by the Makefile
set -euo pipefail

# All of the script is one compound command, which bash parses before it runs
# any of it: editing this file during a run (a 50-minute one) cannot change
# what that run executes.
{
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

LAB=${LAB:-$REPO/test/vm/lab}
LAB_BIN=${LAB_BIN:-$REPO/bin}
LAB_STATE=${LAB_STATE:-/run/vcluster-standalone-lab}
LAB_LOCK=${LAB_LOCK:-/tmp/vcs-lab.lock}
CONFORMANCE_BIN=${CONFORMANCE_BIN:-$REPO/bin/conformance}
CONFORMANCE_IMAGES=${CONFORMANCE_IMAGES:-$REPO/bin/conformance-images}
CONFORMANCE_FOCUS=${CONFORMANCE_FOCUS:-}
CONFORMANCE_SUBSET=${CONFORMANCE_SUBSET:-}
CONFORMANCE_PARTS=${CONFORMANCE_PARTS:-parallel,serial}
CONFORMANCE_PROCS=${CONFORMANCE_PROCS:-4}
CONFORMANCE_TIMEOUT=${CONFORMANCE_TIMEOUT:-3h}
CONFORMANCE_KEEP_LAB=${CONFORMANCE_KEEP_LAB:-0}
KUBECONFIG_LAB=$LAB_STATE/admin.kubeconfig
# The lab's kubelets keep their state here, not in /var/lib/kubelet.
KUBELET_ROOT=/var/lib/node-agent/kubelet

E2E=$CONFORMANCE_BIN/e2e.test
GINKGO=$CONFORMANCE_BIN/ginkgo
KUBECTL=$CONFORMANCE_BIN/kubectl
REPORT=$CONFORMANCE_BIN/report

T0=$(date +%s)
# Messages go to stderr and, once the results dir exists, to its run.log.
RUN_LOG=/dev/null
say() { echo "[conformance $(date +%H:%M:%S)] $*" | tee -a "$RUN_LOG" >&2; }
die() {
	echo "conformance: error: $*" | tee -a "$RUN_LOG" >&2
	exit 1
}
elapsed() {
	local s=$(($(date +%s) - $1))
	printf '%dm%02ds' $((s / 60)) $((s % 60))
}
kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_LAB" "$@"; }

[ "$(id -u)" -eq 0 ] || die "must run as root (the lab needs it)"
for f in "$E2E" "$GINKGO" "$KUBECTL" "$REPORT"; do
	[ -x "$f" ] || die "$f missing; run: make conformance-tools"
done
[ -z "$CONFORMANCE_FOCUS" ] || [ -z "$CONFORMANCE_SUBSET" ] || die "set CONFORMANCE_FOCUS or CONFORMANCE_SUBSET, not both"
[[ $CONFORMANCE_PROCS =~ ^[1-9][0-9]*$ ]] || die "CONFORMANCE_PROCS must be a positive number, not '$CONFORMANCE_PROCS'"
IFS=, read -ra PARTS <<<"$CONFORMANCE_PARTS"
for p in "${PARTS[@]}"; do
	case $p in parallel | serial | netpol) ;; *) die "unknown part '$p' in CONFORMANCE_PARTS (allowed: parallel, serial, netpol)" ;; esac
done

RESULTS=${CONFORMANCE_RESULTS:-$CONFORMANCE_BIN/results/$(date +%Y%m%d-%H%M%S)${CONFORMANCE_SUBSET:+-subset}}
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
RUN_LOG=$RESULTS/run.log
ln -sfn "$RESULTS" "$(dirname "$RESULTS")/latest" 2>/dev/null || true

# ---- which specs -----------------------------------------------------------------

# The full names of every spec of this e2e.test (no cluster needed).
"$E2E" --list-tests 2>/dev/null | sed -n 's/^ *[^ ]*:[0-9]*: //p' >"$RESULTS/all-specs.txt"
[ -s "$RESULTS/all-specs.txt" ] || die "$E2E --list-tests listed no specs"

# regexp_quote: a spec's full name as a literal RE2 regexp.
regexp_quote() { sed 's/[][\\.*^$+?(){}|]/\\&/g'; }

SUBSET_COUNT=-1
declare -A PART_EXPECT=()
if [ -n "$CONFORMANCE_SUBSET" ]; then
	[ -f "$CONFORMANCE_SUBSET" ] || die "no subset file $CONFORMANCE_SUBSET"
	grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$CONFORMANCE_SUBSET" | sed 's/[[:space:]]*$//' >"$RESULTS/subset.txt"
	SUBSET_COUNT=$(wc -l <"$RESULTS/subset.txt")
	[ "$SUBSET_COUNT" -gt 0 ] || die "$CONFORMANCE_SUBSET names no spec"
	# Every name must be exactly one [Conformance] spec of this e2e.test: a renamed
	# or duplicated spec fails here, before any lab is touched.
	bad=0
	while IFS= read -r name; do
		n=$(grep -cxF -- "$name" "$RESULTS/all-specs.txt" || true)
		if [ "$n" -ne 1 ]; then
			echo "conformance: subset spec matches $n specs of e2e.test (want 1): $name" >&2
			bad=1
		elif [[ ,$CONFORMANCE_PARTS, == *,netpol,* ]]; then
			if [[ $name != "[sig-network] Netpol "* || $name == *SCTPConnectivity* ]]; then
				echo "conformance: subset spec is not one of the netpol part: $name" >&2
				bad=1
			fi
		elif [[ $name != *"[Conformance]"* ]]; then
			echo "conformance: subset spec is not a [Conformance] spec: $name" >&2
			bad=1
		fi
	done <"$RESULTS/subset.txt"
	[ $bad = 0 ] || die "$CONFORMANCE_SUBSET does not match this e2e.test (v1.36.3); fix the names"
	# Ginkgo matches the focus against "<suite description> <full name>".
	CONFORMANCE_FOCUS="^Kubernetes e2e suite ($(regexp_quote <"$RESULTS/subset.txt" | paste -sd'|'))\$"
	PART_EXPECT[serial]=$(grep -cF '[Serial]' "$RESULTS/subset.txt" || true)
	PART_EXPECT[parallel]=$((SUBSET_COUNT - PART_EXPECT[serial]))
	PART_EXPECT[netpol]=$SUBSET_COUNT
	say "subset: $SUBSET_COUNT specs from $CONFORMANCE_SUBSET (${PART_EXPECT[parallel]} parallel, ${PART_EXPECT[serial]} serial)"
fi

# read_part_args PART: ginkgo's selection of PART into PART_ARGS, its number of
# processes into PART_PROCS. The labels select the same specs as the
# [Conformance]/[Serial] tags in the names (417 + 29 of v1.36.3's 446). The
# netpol part is every Netpol spec but the SCTP-connectivity ones (no SCTP in
# the kernel): 47 of v1.36.3, none of them [Serial].
read_part_args() {
	case $1 in
	netpol)
		PART_PROCS=$CONFORMANCE_PROCS
		PART_ARGS=(--focus="${CONFORMANCE_FOCUS:-\[sig-network\] Netpol}" --skip='SCTPConnectivity')
		;;
	parallel)
		PART_PROCS=$CONFORMANCE_PROCS
		PART_ARGS=(--label-filter='Conformance && !Serial' --focus="${CONFORMANCE_FOCUS:-\[Conformance\]}" --skip='\[Serial\]')
		;;
	serial)
		PART_PROCS=1
		PART_ARGS=(--label-filter='Conformance && Serial' --focus="${CONFORMANCE_FOCUS:-\[Serial\]}")
		;;
	esac
}
# How many specs each part will run, from a dry run (no cluster needed).
declare -A PART_COUNT=()
for p in "${PARTS[@]}"; do
	read_part_args "$p"
	PART_COUNT[$p]=$(cd "$RESULTS" && "$GINKGO" --dry-run --no-color "${PART_ARGS[@]}" "$E2E" -- --provider=skeleton 2>&1 |
		sed -n 's/^Ran \([0-9]*\) of [0-9]* Specs.*/\1/p' | tail -n1)
	[ -n "${PART_COUNT[$p]}" ] || die "ginkgo --dry-run of the $p part failed"
	if [ -n "$CONFORMANCE_SUBSET" ] && [ "${PART_COUNT[$p]}" -ne "${PART_EXPECT[$p]}" ]; then
		die "the $p part would run ${PART_COUNT[$p]} specs, $CONFORMANCE_SUBSET lists ${PART_EXPECT[$p]} of it"
	fi
	say "$p part: ${PART_COUNT[$p]} specs"
done

# ---- the lab ----------------------------------------------------------------------

# hold_lab_lock: hold $LAB_LOCK for as long as this script runs. A caller that
# already holds it (`flock /tmp/vcs-lab.lock make conformance`) must not
# deadlock us: its descriptor, when inherited, locks at once; a lock held by an
# ancestor without one (flock -o) counts as ours too.
hold_lab_lock() {
	local fd target pid ino holder
	touch "$LAB_LOCK"
	target=$(realpath "$LAB_LOCK")
	for fd in "/proc/$$/fd/"*; do
		[ "$(readlink "$fd" 2>/dev/null)" = "$target" ] || continue
		fd=${fd##*/}
		if flock -n "$fd" 2>/dev/null; then
			say "the caller holds $LAB_LOCK"
			return 0
		fi
	done
	ino=$(stat -c %i "$LAB_LOCK")
	while read -r holder; do
		pid=$$
		while [ "$pid" -gt 1 ]; do
			if [ "$pid" = "$holder" ]; then
				say "the caller (pid $holder) holds $LAB_LOCK"
				return 0
			fi
			pid=$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null || echo 1)
		done
	done < <(awk -v ino="$ino" '$2 == "FLOCK" { split($6, a, ":"); if (a[3] == ino) print $5 }' /proc/locks)
	exec {LOCK_FD}>>"$LAB_LOCK"
	if ! flock -n "$LOCK_FD"; then
		say "waiting for $LAB_LOCK (another lab user holds it)"
		flock "$LOCK_FD"
	fi
}
hold_lab_lock

BROUGHT_UP=0
FAILED=0
GINKGO_PID=
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$GINKGO_PID" ]; then
		# Ginkgo interrupts the running specs, runs their cleanup and writes its reports.
		kill -TERM "$GINKGO_PID" 2>/dev/null || true
		wait "$GINKGO_PID" 2>/dev/null || true
	fi
	if [ -f "$LAB_STATE/nodes" ] && { [ "$rc" -ne 0 ] || [ "$FAILED" -ne 0 ]; }; then
		"$LAB" logs "$RESULTS/lab-logs" >/dev/null 2>&1 || true
		say "node logs: $RESULTS/lab-logs"
	fi
	if [ "$BROUGHT_UP" = 1 ] && [ "$CONFORMANCE_KEEP_LAB" != 1 ]; then
		say "taking the lab down"
		"$LAB" down >"$RESULTS/lab-down.log" 2>&1 || { say "lab down failed; see $RESULTS/lab-down.log"; rc=1; }
	elif [ -f "$LAB_STATE/nodes" ]; then
		say "the lab stays up (make lab-down removes it)"
	fi
	say "results: $RESULTS (total $(elapsed "$T0"))"
	exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

lab_healthy() {
	local want
	[ -f "$LAB_STATE/nodes" ] && [ -f "$KUBECONFIG_LAB" ] || return 1
	want=$(wc -l <"$LAB_STATE/nodes")
	kc get --raw /readyz >/dev/null 2>&1 || return 1
	[ "$(kc get nodes --no-headers 2>/dev/null | wc -l)" -eq "$want" ]
}

if lab_healthy; then
	say "using the lab that is up ($(paste -sd' ' "$LAB_STATE/nodes")); its binaries may be older than bin/"
else
	if [ -f "$LAB_STATE/nodes" ]; then
		say "a lab is up but not healthy: taking it down first"
		"$LAB" down >"$RESULTS/lab-down-before.log" 2>&1 || die "lab down failed; see $RESULTS/lab-down-before.log"
	fi
	say "bringing the lab up"
	t=$(date +%s)
	BROUGHT_UP=1
	LAB_BIN=$LAB_BIN "$LAB" up >"$RESULTS/lab-up.log" 2>&1 || {
		tail -n 20 "$RESULTS/lab-up.log" >&2
		die "lab up failed; see $RESULTS/lab-up.log"
	}
	say "lab up in $(elapsed "$t")"
fi
kc wait --for=condition=Ready node --all --timeout=5m >/dev/null ||
	die "not every node became Ready: $(kc get nodes --no-headers 2>&1 | paste -sd';')"
mapfile -t NODES < <("$LAB" nodes)

# ---- images -------------------------------------------------------------------------

LIST=$CONFORMANCE_IMAGES/list
[ -f "$LIST" ] || die "no image list $LIST; run: make conformance-images"
ARCHIVES=()
while read -r line; do
	[[ -z $line || $line == \#* ]] && continue
	a=""
	for f in $line; do
		case $f in *.tar | *.tar.gz | *.tgz | *.tar.zst) a=$f ;; esac
	done
	[ -n "$a" ] || die "line of $LIST names no archive: $line"
	[[ $a == /* ]] || a=$CONFORMANCE_IMAGES/$a
	[ -f "$a" ] || die "$LIST names $a, which does not exist; run: make conformance-images"
	ARCHIVES+=("$a")
done <"$LIST"
[ ${#ARCHIVES[@]} -gt 0 ] || die "$LIST names no archive"

# The nodes see LAB_BIN read-only at /run/lab/bin: import from there when the
# archives live below it, else stream them through standard input.
lab_bin_real=$(realpath "$LAB_BIN")
node_path() {
	local r
	r=$(realpath "$1")
	[[ $r == "$lab_bin_real"/* ]] && echo "/run/lab/bin/${r#"$lab_bin_real"/}"
}
# A stamp in each node's /run (gone with the node) records what it imported.
stamp=$(cat "$LIST" <(stat -c '%n %s %Y' "${ARCHIVES[@]}") | sha256sum | cut -c1-16)
import_node() {
	local n=$1 a p
	if [ "$("$LAB" exec "$n" cat /run/conformance-images.stamp 2>/dev/null)" = "$stamp" ]; then
		echo "already imported"
		return 0
	fi
	for a in "${ARCHIVES[@]}"; do
		# Pinned: kubelet's image GC must never remove them, nothing can pull them again.
		if p=$(node_path "$a"); then
			"$LAB" exec "$n" node-agent images import --pin "$p" || return 1
		else
			"$LAB" exec "$n" node-agent images import --pin - <"$a" || return 1
		fi
	done
	"$LAB" exec "$n" sh -c "echo $stamp >/run/conformance-images.stamp"
}
t=$(date +%s)
say "importing ${#ARCHIVES[@]} image archives ($(du -sch "${ARCHIVES[@]}" | tail -n1 | cut -f1)) on ${#NODES[@]} nodes"
declare -A IMPORT_PID=()
for n in "${NODES[@]}"; do
	import_node "$n" >"$RESULTS/import-$n.log" 2>&1 &
	IMPORT_PID[$n]=$!
done
for n in "${NODES[@]}"; do
	wait "${IMPORT_PID[$n]}" || {
		tail -n 5 "$RESULTS/import-$n.log" >&2
		die "image import on $n failed; see $RESULTS/import-$n.log"
	}
done
say "images imported in $(elapsed "$t")"

# ---- the suite --------------------------------------------------------------------

export KUBECONFIG=$KUBECONFIG_LAB
export PATH=$CONFORMANCE_BIN:$PATH
E2E_ARGS=(
	--kubeconfig="$KUBECONFIG_LAB"
	--provider=skeleton
	--kubectl-path="$KUBECTL"
	--non-blocking-taints=node-role.kubernetes.io/control-plane
	--kubelet-root-dir="$KUBELET_ROOT"
	# No cluster/log-dump.sh here: run.sh keeps the nodes' logs itself on failure.
	--disable-log-dump=true
)
GINKGO_ARGS=(
	--no-color --force-newlines --silence-skips
	--timeout="$CONFORMANCE_TIMEOUT"
	--poll-progress-after=15m --poll-progress-interval=5m
)

REPORT_ARGS=()
run_part() {
	local part=$1 t rc=0 args=()
	local dir=$RESULTS/$part log=$RESULTS/$part.log
	if [ "${PART_COUNT[$part]}" -eq 0 ]; then
		say "$part part: no spec to run"
		return 0
	fi
	read_part_args "$part"
	args=(--procs "$PART_PROCS" "${PART_ARGS[@]}")
	mkdir -p "$dir"
	if [ -n "$CONFORMANCE_SUBSET" ]; then
		say "$part part: starting ${PART_COUNT[$part]} specs of the subset, $PART_PROCS processes; log $log"
	else
		say "$part part: starting ${PART_COUNT[$part]} specs (ginkgo --procs ${args[*]:1}); log $log"
	fi
	t=$(date +%s)
	"$GINKGO" "${GINKGO_ARGS[@]}" "${args[@]}" "$E2E" -- "${E2E_ARGS[@]}" \
		--report-dir="$dir" --e2e-output-dir="$dir" > >(tee "$log") 2>&1 &
	GINKGO_PID=$!
	wait "$GINKGO_PID" || rc=$?
	GINKGO_PID=
	say "$part part: done in $(elapsed "$t") (ginkgo exit $rc)"
	[ "$rc" -eq 0 ] || FAILED=1
	REPORT_ARGS+=("$part" "$dir/junit_01.xml" "$(($(date +%s) - t))")
}

for p in "${PARTS[@]}"; do
	run_part "$p"
done

# ---- summary ----------------------------------------------------------------------

# A subset must run exactly its specs of the parts that ran: not one fewer (a
# renamed spec), not one more.
check=()
if [ -n "$CONFORMANCE_SUBSET" ]; then
	: >"$RESULTS/subset-expected.txt"
	for p in "${PARTS[@]}"; do
		case $p in
		parallel) grep -vF '[Serial]' "$RESULTS/subset.txt" >>"$RESULTS/subset-expected.txt" || true ;;
		serial) grep -F '[Serial]' "$RESULTS/subset.txt" >>"$RESULTS/subset-expected.txt" || true ;;
		netpol) cat "$RESULTS/subset.txt" >>"$RESULTS/subset-expected.txt" ;;
		esac
	done
	check=(-expect "$(wc -l <"$RESULTS/subset-expected.txt")" -list "$RESULTS/subset-expected.txt")
fi
echo
echo "== conformance summary ($RESULTS)"
rc=0
if [ ${#REPORT_ARGS[@]} -gt 0 ]; then
	"$REPORT" "${check[@]}" "${REPORT_ARGS[@]}" | tee "$RESULTS/summary.txt" || rc=1
	# Ginkgo's own summary of each part, as it printed it ("Ran 47 of 7579 Specs …").
	for p in "${PARTS[@]}"; do
		[ -f "$RESULTS/$p.log" ] || continue
		grep -E '^(Ran [0-9]+ of [0-9]+ Specs|(SUCCESS|FAIL)! -- )' "$RESULTS/$p.log" | paste -sd' ' | sed "s/^/ginkgo $p: /" | tee -a "$RESULTS/summary.txt"
	done
else
	echo "no part ran" | tee "$RESULTS/summary.txt"
	rc=1
fi
[ "$rc" -eq 0 ] || FAILED=1
if [ "$FAILED" -ne 0 ]; then
	if [[ ,$CONFORMANCE_PARTS, == *,netpol,* ]]; then
		echo "netpol: FAILED (to re-run one spec: NETPOL_FOCUS='<regexp of its name>' make netpol)"
	else
		echo "conformance: FAILED (to re-run one spec: CONFORMANCE_FOCUS='<regexp of its name>' make conformance)"
	fi
	exit 1
fi
echo "conformance: passed"
exit 0
}
