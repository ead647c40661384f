# Sourced by the lab benchmarks (hack/bench-*.sh) with the script's name:
# where the lab, the binaries and the kubeconfig are, and the two checks each
# of them makes before touching the lab.
bench_name=$1
here=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
repo=$(cd "$here/.." && pwd)
lab=$repo/test/vm/lab
bin=${LAB_BIN:-$repo/bin}
host_bin=$bin/vcluster-standalone
kubeconfig=/run/vcluster-standalone-lab/admin.kubeconfig
[ "$(id -u)" -eq 0 ] || { echo "$bench_name: must run as root (the lab needs it)" >&2; exit 1; }
[ -f "$bin/images/busybox.tar" ] || { echo "$bench_name: no $bin/images/busybox.tar; run make images" >&2; exit 1; }
