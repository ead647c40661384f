#!/usr/bin/env bash
# Control-plane benchmark: cold start to /readyz (fresh data dir, PKI
# generated), warm start (restart on the same data dir), process RSS 60 s after
# ready, and p50/p99 of 500 sequential ConfigMap creates. Median of RUNS runs.
#
#   hack/bench-controlplane.sh bin/vcluster-standalone        (RUNS=3 by default)
set -euo pipefail

bin=$(readlink -f "${1:-bin/vcluster-standalone}")
runs=${RUNS:-3}
creates=${CREATES:-500}
rss_wait=${RSS_WAIT:-60}
here=$(cd "$(dirname "$0")" && pwd)

# shellcheck source=hack/bench/controlplane-lib.sh
. "$here/bench/controlplane-lib.sh"

write_config() { # $1 = dir
  cat >"$1/config.yaml" <<YAML
apiVersion: vcluster-standalone.io/v1alpha1
kind: ControlPlaneConfig
bindAddress: 127.0.0.1
apiPort: $(free_port)
joinPort: $(free_port)
dataDir: $1/data
adminKubeconfig: $1/admin.kubeconfig
ports: {etcdClient: $(free_port), etcdPeer: $(free_port), controllerManager: $(free_port), scheduler: $(free_port)}
# The control plane alone: this host's own node would write /etc/node-agent.
joinNode: false
YAML
}

cold=(); warm=(); rss=(); p50=(); p99=()
for i in $(seq 1 "$runs"); do
  dir="$work/run$i"; mkdir -p "$dir"; write_config "$dir"
  start_and_time "$dir"; cold+=("$elapsed")
  # Let the controllers settle, then measure creates and RSS.
  read -r a b < <(go run "$here/bench/configmaps.go" -kubeconfig "$dir/admin.kubeconfig" -n "$creates")
  p50+=("$a"); p99+=("$b")
  sleep "$rss_wait"
  rss+=("$(awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/$pid/status)")
  stop
  start_and_time "$dir"; warm+=("$elapsed")
  stop
  printf 'run %d: cold %.2fs warm %.2fs rss %s MiB create p50 %s ms p99 %s ms\n' "$i" "${cold[-1]}" "${warm[-1]}" "${rss[-1]}" "${p50[-1]}" "${p99[-1]}"
done

printf '\nmedian of %d runs (%s, %d cores):\n' "$runs" "$("$bin" version | awk '/kube-apiserver/ {print $2}')" "$(nproc)"
printf '  cold start to /readyz   %6.2f s   (target <= 4 s)\n' "$(printf '%s\n' "${cold[@]}" | median)"
printf '  warm start to /readyz   %6.2f s   (target <= 2.5 s)\n' "$(printf '%s\n' "${warm[@]}" | median)"
printf '  RSS %ds after ready     %6s MiB (target <= 300 MiB)\n' "$rss_wait" "$(printf '%s\n' "${rss[@]}" | median)"
printf '  ConfigMap create p50    %6s ms\n' "$(printf '%s\n' "${p50[@]}" | median)"
printf '  ConfigMap create p99    %6s ms  (target <= 6 ms)\n' "$(printf '%s\n' "${p99[@]}" | median)"
