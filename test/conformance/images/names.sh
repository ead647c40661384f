#!/usr/bin/env bash
# names.sh — print "ID REFERENCE" for every image e2e.test knows (e.g.
# "Agnhost registry.k8s.io/e2e-test-images/agnhost:2.63.0"), read from the
# k8s.io/kubernetes module this directory's go.mod requires
# (test/utils/image/manifest.go), so the archives carry exactly the names
# e2e.test asks for. Run from test/conformance/images.
set -euo pipefail
dir=$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)
manifest=$dir/test/utils/image/manifest.go
[ -f "$manifest" ] || { echo "names.sh: $manifest missing; run go mod download in $PWD" >&2; exit 1; }
declare -A reg
while read -r key val; do
	reg[$key]=$val
done < <(sed -n '/initRegistry = RegistryList{/,/}/s/^[[:space:]]*\([A-Za-z0-9]*\):[[:space:]]*"\([^"]*\)",*$/\1 \2/p' "$manifest")
n=0
while read -r id list name ver; do
	[ -n "${reg[$list]:-}" ] || { echo "names.sh: $id: unknown registry $list" >&2; exit 1; }
	echo "$id ${reg[$list]}/$name:$ver"
	n=$((n + 1))
done < <(sed -n 's/^[[:space:]]*configs\[\([A-Za-z0-9]*\)\] = Config{list\.\([A-Za-z0-9]*\), "\([^"]*\)", "\([^"]*\)"}.*/\1 \2 \3 \4/p' "$manifest")
[ "$n" -gt 0 ] || { echo "names.sh: no image configs found in $manifest" >&2; exit 1; }
