#!/usr/bin/env bash
# Snapshot benchmark, without the lab: a control plane in a temp dir with
# CONFIGMAPS (10,000) ConfigMaps; then, RUNS times (median of 3): `snapshot
# save` (plain and encrypted: time and size), stop, wipe the data dir,
# `snapshot restore` (time), start again (time to /readyz) and check every
# ConfigMap is back.
#
#   hack/bench-snapshot.sh bin/vcluster-standalone        (RUNS=3 CONFIGMAPS=10000)
set -euo pipefail

bin=$(readlink -f "${1:-bin/vcluster-standalone}")
runs=${RUNS:-3}
configmaps=${CONFIGMAPS:-10000}
here=$(cd "$(dirname "$0")" && pwd)

# shellcheck source=hack/bench/controlplane-lib.sh
. "$here/bench/controlplane-lib.sh"

cat >"$work/config.yaml" <<YAML
apiVersion: vcluster-standalone.io/v1alpha1
kind: ControlPlaneConfig
bindAddress: 127.0.0.1
apiPort: $(free_port)
joinPort: $(free_port)
dataDir: $work/data
adminKubeconfig: $work/admin.kubeconfig
ports: {etcdClient: $(free_port), etcdPeer: $(free_port), controllerManager: $(free_port), scheduler: $(free_port)}
# The control plane alone: this host's own node would write /etc/node-agent.
joinNode: false
etcd:
  snapshots: {interval: "0"}
YAML
export VCLUSTER_STANDALONE_CONFIG=$work/config.yaml

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }

count_configmaps() { "$bin" kubectl --kubeconfig "$work/admin.kubeconfig" get configmaps -A --no-headers | wc -l; }

start_and_time "$work"
echo "creating $configmaps ConfigMaps"
go run "$here/bench/configmaps.go" -kubeconfig "$work/admin.kubeconfig" -n "$configmaps" >/dev/null
want=$(count_configmaps)
echo "the cluster holds $want ConfigMaps"
printf 'bench passphrase\n' >"$work/passphrase"
chmod 0600 "$work/passphrase"

save=(); size=(); esave=(); restore=(); ready=()
for i in $(seq 1 "$runs"); do
  [ -n "$pid" ] || start_and_time "$work"
  t0=$(now)
  "$bin" snapshot save "$work/run$i.snap" 2>"$work/save.log" || { cat "$work/save.log" >&2; exit 1; }
  save+=("$(since "$t0")")
  size+=("$(stat -c %s "$work/run$i.snap")")
  db=$(sed -n 's/^etcd database at revision [0-9]*: \(.*\) in .*/\1/p' "$work/save.log" | head -n1)
  t0=$(now)
  "$bin" snapshot save "$work/run$i-encrypted.snap" --passphrase-file "$work/passphrase" 2>>"$work/save.log" || { cat "$work/save.log" >&2; exit 1; }
  esave+=("$(since "$t0")")
  stop
  rm -rf "$work/data"
  t0=$(now)
  "$bin" snapshot restore "$work/run$i.snap" 2>"$work/restore.log" || { cat "$work/restore.log" >&2; exit 1; }
  restore+=("$(since "$t0")")
  start_and_time "$work"
  ready+=("$elapsed")
  got=$(count_configmaps)
  [ "$got" -ge "$want" ] || { echo "after restore $got ConfigMaps, want $want" >&2; exit 1; }
  printf 'run %d: save %.2fs (%s MiB file, etcd database %s), encrypted save %.2fs, restore %.2fs, start to /readyz %.2fs, %s ConfigMaps back\n' \
    "$i" "${save[-1]}" "$(echo "${size[-1]} / 1048576" | bc -l | xargs printf %.1f)" "$db" "${esave[-1]}" "${restore[-1]}" "${ready[-1]}" "$got"
  rm -f "$work/run$i.snap" "$work/run$i-encrypted.snap"
done

printf '\nmedian of %d runs, %d ConfigMaps (%d cores):\n' "$runs" "$configmaps" "$(nproc)"
printf '  snapshot save              %6.2f s\n' "$(printf '%s\n' "${save[@]}" | median)"
printf '  snapshot size              %6.1f MiB\n' "$(echo "$(printf '%s\n' "${size[@]}" | median) / 1048576" | bc -l)"
printf '  snapshot save, encrypted   %6.2f s\n' "$(printf '%s\n' "${esave[@]}" | median)"
printf '  snapshot restore           %6.2f s\n' "$(printf '%s\n' "${restore[@]}" | median)"
printf '  start after restore        %6.2f s   (to /readyz)\n' "$(printf '%s\n' "${ready[@]}" | median)"
