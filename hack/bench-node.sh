#!/usr/bin/env bash
# Node benchmark, on the nspawn lab (test/vm/lab): figures, not assertions.
#
#   join -> Ready      the one-line join `token create` prints, pasted on each
#                      private node, until the API shows the Node Ready
#                      (median of the nodes; a joined node is reset first with
#                      `node-agent reset` and its Node deleted)
#   pod startup        p50/p99 of PODS pods (busybox imported on the node, never
#                      pulled) created back to back on one node: from each
#                      create request to a watch seeing the pod Running with
#                      its container ready, the "observed running" of
#                      Kubernetes' pod startup SLO (see hack/bench/pods); and
#                      of SERIAL_PODS pods created one after another, each
#                      once the previous one runs (an idle node's latency); and
#                      of SPREAD_PODS pods created back to back across both
#                      private nodes, in turn. Each figure is the median over
#                      RUNS runs (the machine is shared: medians, not means),
#                      each started once the nodes have cleaned up the last one
#   shim start         p50/p99 of containerd's runc shim start on the node, as
#                      containerd starts it (`start`, which re-executes the shim
#                      as its daemon) to the daemon's first ttrpc answer
#                      (hack/bench/shimstart; median of RUNS runs of 30 starts)
#   node-agent RSS     VmRSS of node-agent's main process and, separately, of
#                      its containerd child, with RSS_PODS pods running there
#
#   flock /tmp/vcs-lab.lock hack/bench-node.sh     (make bench runs it; needs root)
#
# Uses the lab that is up, or brings one up (LAB_JOIN=0) and takes down only
# that one. The lab is shared: callers hold /tmp/vcs-lab.lock around this
# script (it does not lock itself, so a caller's lock cannot deadlock it).
set -euo pipefail

# shellcheck source=hack/bench/lab-bench.sh
. "$(dirname "$0")/bench/lab-bench.sh" bench-node

pods=${PODS:-30}
rss_pods=${RSS_PODS:-10}
serial_pods=${SERIAL_PODS:-10}
spread_pods=${SPREAD_PODS:-100}
runs=${RUNS:-3}
pod_node=${POD_NODE:-lab-node1}
image_archive=/run/lab/bin/images/busybox.tar
ns=bench-node-$$

pods_tool=$(mktemp /tmp/vcs-bench-pods.XXXXXX)
shim_tool=$(mktemp /tmp/vcs-bench-shimstart.XXXXXX)
brought_up=0
cleanup() {
	"$pods_tool" -kubeconfig "$kubeconfig" -ns "$ns" clean 2>/dev/null || true
	rm -f "$pods_tool" "$shim_tool"
	if [ $brought_up = 1 ]; then "$lab" down >/dev/null 2>&1 || echo "bench-node: lab down failed; run: make lab-down" >&2; fi
}
trap cleanup EXIT
(cd "$repo" && go build -o "$pods_tool" ./hack/bench/pods && CGO_ENABLED=0 go build -o "$shim_tool" ./hack/bench/shimstart)

if [ ! -f /run/vcluster-standalone-lab/nodes ]; then
	echo "bench-node: bringing up a lab (taken down at the end)" >&2
	brought_up=1
	LAB_BIN=$bin LAB_JOIN=0 "$lab" up >/dev/null
fi
mapfile -t nodes < <(tail -n +2 /run/vcluster-standalone-lab/nodes) # private nodes: all but lab-cp
kc() { "$host_bin" kubectl --kubeconfig "$kubeconfig" "$@"; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# ---- join -> Ready ------------------------------------------------------------
# Unjoined nodes join first; nodes already joined (a lab from `make lab`) are
# measured last, after `node-agent reset`, so the pod figures come from a node
# as `make lab` left it.
joined=(); fresh=()
for n in "${nodes[@]}"; do
	if "$lab" exec "$n" test -e /etc/node-agent/config.yaml; then joined+=("$n"); else fresh+=("$n"); fi
done
joins=()
join_nodes() { # NODE...: (reset if joined,) paste the one-line join, time it to Node Ready
	local line token_id n t0
	[ $# -gt 0 ] || return 0
	line=$("$lab" exec lab-cp vcluster-standalone token create --ttl 30m --description "bench-node" | sed -n 's/^ *\(curl .*\)$/\1/p')
	token_id=$(echo "$line" | sed -n 's/.*VCS_TOKEN=\([a-z0-9]*\)\..*/\1/p')
	[ -n "$line" ] || { echo "bench-node: token create printed no one-line join" >&2; exit 1; }
	for n in "$@"; do
		if "$lab" exec "$n" test -e /etc/node-agent/config.yaml; then
			"$lab" exec "$n" node-agent reset --force >/dev/null 2>&1
		fi
		kc delete node "$n" --ignore-not-found --wait=true >/dev/null
		t0=$(now)
		"$lab" exec "$n" sh -c "$line" >/dev/null
		until [ "$(kc get node "$n" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; do
			if [ "$(echo "$(now) - $t0 > 120" | bc -l)" = 1 ]; then echo "bench-node: $n not Ready 120 s after the join" >&2; exit 1; fi
			sleep 0.1
		done
		joins+=("$(echo "$(now) - $t0" | bc -l)")
		printf 'join -> Ready %s: %.2f s\n' "$n" "${joins[-1]}" >&2
	done
	"$lab" exec lab-cp vcluster-standalone token delete "$token_id" >/dev/null || true
}
join_nodes "${fresh[@]}"

# ---- pod startup latency ------------------------------------------------------
for n in "${nodes[@]}"; do "$lab" exec "$n" node-agent images import "$image_archive" >/dev/null; done
spread_nodes=$(IFS=,; echo "${nodes[*]}")
col() { cut -d' ' -f"$1" | median; } # median of column N of "p50 p99 max" lines
# A deleted pod is gone from the API before its node has removed its
# sandbox; each measurement starts once the nodes are back to the shims
# they had before (at most 2 minutes), so no run pays for the last one's cleanup.
shims() { "$lab" exec "$1" sh -c 'ps -eo args= | grep -c -- "^[^ ]* -namespace k8s.io -id"' || true; }
declare -A idle
for n in "${nodes[@]}"; do idle[$n]=$(shims "$n"); done
settle() {
	local n t0
	t0=$(now)
	for n in "${nodes[@]}"; do
		while [ "$(shims "$n")" -gt "${idle[$n]}" ] && [ "$(echo "$(now) - $t0 < 120" | bc -l)" = 1 ]; do sleep 0.5; done
	done
}
burst=(); serial=(); spread=(); shim=()
for ((r = 1; r <= runs; r++)); do
	settle
	burst+=("$("$pods_tool" -kubeconfig "$kubeconfig" -node "$pod_node" -ns "$ns" -n "$pods" latency)")
	settle
	serial+=("$("$pods_tool" -kubeconfig "$kubeconfig" -node "$pod_node" -ns "$ns" -n "$serial_pods" -serial latency)")
	settle
	spread+=("$("$pods_tool" -kubeconfig "$kubeconfig" -node "$spread_nodes" -ns "$ns" -n "$spread_pods" latency)")
	echo "run $r: $pods pods on $pod_node: ${burst[-1]}; one at a time: ${serial[-1]}; $spread_pods on $spread_nodes: ${spread[-1]} (p50 p99 max, s)" >&2
done
p50=$(printf '%s\n' "${burst[@]}" | col 1); p99=$(printf '%s\n' "${burst[@]}" | col 2); pmax=$(printf '%s\n' "${burst[@]}" | col 3)
s50=$(printf '%s\n' "${serial[@]}" | col 1); smax=$(printf '%s\n' "${serial[@]}" | col 3)
w50=$(printf '%s\n' "${spread[@]}" | col 1); w99=$(printf '%s\n' "${spread[@]}" | col 2)

# ---- shim start ------------------------------------------------------------------
"$lab" exec "$pod_node" sh -c 'cat >/tmp/vcs-bench-shimstart && chmod 755 /tmp/vcs-bench-shimstart' <"$shim_tool"
for ((r = 1; r <= runs; r++)); do
	shim+=("$("$lab" exec "$pod_node" /tmp/vcs-bench-shimstart -shim /var/lib/node-agent/bin/containerd-shim-runc-v2 -n 30)")
	echo "run $r: shim start on $pod_node: ${shim[-1]} (p50 p99 max, ms)" >&2
done
"$lab" exec "$pod_node" rm -f /tmp/vcs-bench-shimstart
sh50=$(printf '%s\n' "${shim[@]}" | col 1); sh99=$(printf '%s\n' "${shim[@]}" | col 2)

# ---- RSS with pods running -----------------------------------------------------
"$pods_tool" -kubeconfig "$kubeconfig" -node "$pod_node" -ns "$ns" -n "$rss_pods" run
on_node=$(kc get pods -A --field-selector "spec.nodeName=$pod_node,status.phase=Running" --no-headers | wc -l)
sleep 5 # let the kubelet finish its post-start work before reading memory
# VmRSS counts the shared pages of the node-agent binary in every process that
# runs it; for the shims (the same binary, one per pod) the sum of Pss (shared
# pages split between their users) and the private memory per shim say more.
read -r rss_agent rss_containerd n_shims pss_shims priv_shim < <("$lab" exec "$pod_node" sh -c '
	rss() { awk "/^VmRSS/ {s += \$2} END {printf \"%.0f\", s/1024}" "$@" 2>/dev/null; }
	main=$(systemctl show -p MainPID --value node-agent)
	# containerd: <bin dir>/containerd --config F (node-agent containerd --config F before 0.x)
	ctrd=$(ps -o pid=,args= --ppid "$main" | awk "\$3 == \"containerd\" || (\$2 ~ /\/containerd\$/ && \$3 == \"--config\") {print \$1; exit}")
	shims=$(ps -eo pid=,args= | awk "\$3 == \"-namespace\" && \$5 == \"-id\" {printf \"/proc/%s/smaps_rollup \", \$1}")
	n=$(echo $shims | wc -w)
	pss=$(awk "/^Pss:/ {s += \$2} END {printf \"%.0f\", s/1024}" $shims /dev/null)
	priv=$(awk -v n=$n "/^Private_(Clean|Dirty):/ {s += \$2} END {printf \"%.1f\", n ? s/1024/n : 0}" $shims /dev/null)
	echo "$(rss /proc/$main/status) $(rss /proc/$ctrd/status) $n $pss $priv"')

join_nodes "${joined[@]}"

cores=$(nproc)
printf '\nnode benchmark (%s, %d cores, %d private nodes; pod and shim figures: median of %d runs):\n' "$("$host_bin" version 2>/dev/null | awk '/kube-apiserver/ {print $2}')" "$cores" "${#nodes[@]}" "$runs"
printf '  %-40s %8s   %s\n' "what" "value" "target"
printf '  %-40s %6.2f s   <= 15 s\n' "one-line join -> Node Ready (median)" "$(printf '%s\n' "${joins[@]}" | median)"
printf '  %-40s %6.2f s\n' "pod startup p50 ($pods pods, $pod_node)" "$p50"
printf '  %-40s %6.2f s   <= 3 s\n' "pod startup p99 ($pods pods, $pod_node)" "$p99"
printf '  %-40s %6.2f s\n' "pod startup max" "$pmax"
printf '  %-40s %6.2f s\n' "pod startup p50, one at a time ($serial_pods)" "$s50"
printf '  %-40s %6.2f s   <= 1.5 s\n' "pod startup max, one at a time" "$smax"
printf '  %-40s %6.2f s\n' "pod startup p50 ($spread_pods pods, ${#nodes[@]} nodes)" "$w50"
printf '  %-40s %6.2f s   <= 5 s (SLO)\n' "pod startup p99 ($spread_pods pods, ${#nodes[@]} nodes)" "$w99"
printf '  %-40s %6.1f ms\n' "shim start p50 (30 starts)" "$sh50"
printf '  %-40s %6.1f ms  <= 20 ms\n' "shim start p99" "$sh99"
printf '  %-40s %6s MiB <= 200 MiB\n' "node-agent RSS ($rss_pods pods; $on_node on node)" "$rss_agent"
printf '  %-40s %6s MiB <= 60 MiB\n' "  its containerd child" "$rss_containerd"
printf '  %-40s %6s MiB\n' "  its $n_shims shims: Pss together" "$pss_shims"
printf '  %-40s %6s MiB\n' "  private memory per shim" "$priv_shim"
