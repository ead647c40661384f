# shellcheck shell=bash
# Sourced by the control-plane benchmarks (bench-controlplane.sh,
# bench-snapshot.sh), which set bin to the vcluster-standalone binary: a work
# dir removed on exit with the control plane started in it, free ports, a
# timed start and a stop, and medians.

work=$(mktemp -d /tmp/vcs-bench.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# start_and_time DIR: starts the control plane of DIR/config.yaml; sets pid
# and elapsed (seconds from exec to /readyz ok)
start_and_time() {
  local dir=$1 t0 port
  port=$(awk '/^apiPort:/ {print $2}' "$dir/config.yaml")
  t0=$(date +%s.%N)
  "$bin" start --config "$dir/config.yaml" >>"$dir/start.log" 2>&1 &
  pid=$!
  until curl -sk --max-time 1 "https://127.0.0.1:$port/readyz" 2>/dev/null | grep -qx ok; do
    kill -0 "$pid" 2>/dev/null || { echo "start failed:" >&2; tail -20 "$dir/start.log" >&2; exit 1; }
    sleep 0.02
  done
  elapsed=$(echo "$(date +%s.%N) - $t0" | bc -l)
}

stop() { kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
