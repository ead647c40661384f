#!/usr/bin/env bash
# Storage benchmark, on the nspawn lab (test/vm/lab): figures, not assertions.
#
#   PVC -> pod Running   p50/p99 of PVCS PVCs (64Mi, default class "local"),
#                        each with its pod, created back to back on one node:
#                        from the PVC's create request to a watch seeing the pod
#                        Running (hack/bench/pods -pvc)
#   snapshot ready       VolumeSnapshot create -> readyToUse
#   expansion visible    PVC resize request -> the new size in the PVC's
#                        status (the size the pod can write to)
#   write throughput     sequential write (dd, 256 MiB, fsync) inside a volume
#                        vs the same node's own disk, and their ratio (one run)
#
#   flock /tmp/vcs-lab.lock hack/bench-storage.sh     (make bench runs it; needs root)
#
# Uses the lab that is up (with joined nodes), or brings one up and takes down
# only that one. Callers hold /tmp/vcs-lab.lock around this script.
set -euo pipefail

# shellcheck source=hack/bench/lab-bench.sh
. "$(dirname "$0")/bench/lab-bench.sh" bench-storage

pvcs=${PVCS:-20}
node=${POD_NODE:-lab-node1}
ns=bench-storage-$$

pods_tool=$(mktemp /tmp/vcs-bench-pods.XXXXXX)
brought_up=0
kc() { "$host_bin" kubectl --kubeconfig "$kubeconfig" "$@"; }
cleanup() {
	kc delete namespace "$ns" --wait=true >/dev/null 2>&1 || true
	"$lab" exec "$node" rm -f /var/lib/node-agent/bench-dd 2>/dev/null || true
	rm -f "$pods_tool"
	if [ $brought_up = 1 ]; then "$lab" down >/dev/null 2>&1 || echo "bench-storage: lab down failed; run: make lab-down" >&2; fi
}
trap cleanup EXIT
(cd "$repo" && go build -o "$pods_tool" ./hack/bench/pods)

if [ ! -f /run/vcluster-standalone-lab/nodes ]; then
	echo "bench-storage: bringing up a lab (taken down at the end)" >&2
	brought_up=1
	LAB_BIN=$bin "$lab" up >/dev/null
fi
now() { date +%s.%N; }
since() { echo "$(now) $1" | awk '{printf "%.2f", $1 - $2}'; }
wait_for() { # wait_for SECONDS CMD...: until CMD prints "true"
	local deadline=$(( $(date +%s) + $1 )); shift
	until [ "$("$@" 2>/dev/null)" = true ]; do
		[ "$(date +%s)" -lt $deadline ] || { echo "bench-storage: timed out waiting for: $*" >&2; exit 1; }
		sleep 0.1
	done
}

"$lab" exec "$node" node-agent images import /run/lab/bin/images/busybox.tar >/dev/null
echo "== PVC -> pod Running: $pvcs PVCs of 64Mi with a pod each, back to back on $node"
read -r p50 p99 max < <("$pods_tool" -kubeconfig "$kubeconfig" -ns "$ns" -node "$node" -n "$pvcs" -pvc 64Mi latency)
echo "pvc-to-running: p50 ${p50}s p99 ${p99}s max ${max}s"

cat <<YAML | kc apply -n "$ns" -f - >/dev/null
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: bench}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 512Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: bench}
spec:
  nodeSelector: {kubernetes.io/hostname: $node}
  terminationGracePeriodSeconds: 0
  containers:
  - {name: main, image: localhost/busybox:e2e, imagePullPolicy: Never, command: [sleep, "3600"], volumeMounts: [{name: data, mountPath: /data}]}
  volumes: [{name: data, persistentVolumeClaim: {claimName: bench}}]
YAML
kc wait -n "$ns" --for=condition=Ready pod/bench --timeout=120s >/dev/null
kc exec -n "$ns" bench -- dd if=/dev/urandom of=/data/seed bs=1M count=16 2>/dev/null

echo "== snapshot create -> readyToUse"
start=$(now)
cat <<YAML | kc apply -n "$ns" -f - >/dev/null
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: bench}
spec: {source: {persistentVolumeClaimName: bench}}
YAML
wait_for 60 kc get volumesnapshot -n "$ns" bench -o 'jsonpath={.status.readyToUse}'
echo "snapshot-ready: $(since "$start")s"

echo "== expansion request -> new size in the PVC (pod running)"
start=$(now)
kc patch pvc -n "$ns" bench --type=merge -p '{"spec":{"resources":{"requests":{"storage":"1Gi"}}}}' >/dev/null
wait_for 60 sh -c "[ \"\$($host_bin kubectl --kubeconfig $kubeconfig get pvc -n $ns bench -o 'jsonpath={.status.capacity.storage}')\" = 1Gi ] && echo true"
echo "expansion-visible: $(since "$start")s"

echo "== sequential write, 256 MiB with fsync: volume vs the node's own disk"
# The node's GNU dd writes both: into the pod's mount of the volume (the same
# subvolume and quota the pod writes to; busybox dd prints no rate) and into
# the node's own disk. It reports "<bytes> bytes ... copied, <seconds> s, ...".
rate() { awk '/copied,/ { for (i = 1; i < NF; i++) if ($i == "copied,") s = $(i + 1); if (s > 0) printf "%.0f", $1 / s / 1048576 }'; }
uid=$(kc get pod -n "$ns" bench -o 'jsonpath={.metadata.uid}')
vol_out=$("$lab" exec "$node" sh -c "dd if=/dev/zero of=\$(echo /var/lib/node-agent/kubelet/pods/$uid/volumes/kubernetes.io~csi/*/mount)/dd bs=1M count=256 conv=fsync" 2>&1 || true)
disk_out=$("$lab" exec "$node" dd if=/dev/zero of=/var/lib/node-agent/bench-dd bs=1M count=256 conv=fsync 2>&1 || true)
vol=$(echo "$vol_out" | rate); disk=$(echo "$disk_out" | rate)
[ -n "$vol" ] && [ -n "$disk" ] || { echo "bench-storage: could not read dd's rate: volume: $vol_out; disk: $disk_out" >&2; exit 1; }
echo "write-throughput: volume ${vol} MiB/s, node disk ${disk} MiB/s, ratio $(echo "$vol $disk" | awk '{printf "%.2f", $1 / $2}')"
