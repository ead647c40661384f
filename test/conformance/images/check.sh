#!/usr/bin/env bash
# check.sh DIR — prove the conformance image archives in DIR (from
# `make conformance-images`) work, without a container runtime: every
# archive's layers are unpacked into a temporary root, and its entrypoint and
# the tools the specs run are started there with chroot, inside private
# mount, network and PID namespaces (unshare), so servers listen only on a
# loopback of their own and every mount and process goes away with them.
# Needs root, jq, curl, ip, unshare, chroot and setpriv (util-linux).
# shellcheck disable=SC2015,SC2016 # pass/fail always succeed; sandbox scripts expand inside
set -euo pipefail

dir=${1:?usage: check.sh DIR (bin/conformance-images)}
[ "$(id -u)" = 0 ] || { echo "check.sh: needs root (chroot, unshare)" >&2; exit 1; }
for t in jq unshare chroot setpriv tar curl ip; do
	command -v "$t" >/dev/null || { echo "check.sh: $t not found" >&2; exit 1; }
done

work=$(mktemp -d /tmp/conformance-images-check.XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

failed=0
pass() { echo "  ok   $*"; }
fail() { echo "  FAIL $*"; failed=1; }

# unpack ARCHIVE ROOT: extract the image's layers, lowest first.
unpack() {
	local archive=$1 root=$2 oci=$2.oci man layer
	mkdir -p "$oci" "$root"
	tar -xf "$archive" -C "$oci"
	man=$(jq -r '.manifests[0].digest' "$oci/index.json")
	for layer in $(jq -r '.layers[].digest' "$oci/blobs/sha256/${man#sha256:}"); do
		tar -xzpf "$oci/blobs/sha256/${layer#sha256:}" --numeric-owner -C "$root"
	done
}

# imagejq ARCHIVE FILTER: FILTER applied to the image's config.
imagejq() {
	local oci man cfg
	oci=$work/$(basename "$1" .tar).oci
	man=$(jq -r '.manifests[0].digest' "$oci/index.json")
	cfg=$(jq -r '.config.digest' "$oci/blobs/sha256/${man#sha256:}")
	jq -r "$2" "$oci/blobs/sha256/${cfg#sha256:}"
}

# argv ARCHIVE: the command the image runs by default (entrypoint + cmd),
# one word per line.
argv() { imagejq "$1" '((.config.Entrypoint // []) + (.config.Cmd // []))[]'; }

# sandbox ROOT SCRIPT: run bash SCRIPT (with $R = ROOT) in new mount, network,
# UTS and PID namespaces with loopback up and ROOT given /proc, a minimal /dev
# and a writable /tmp. Everything started inside dies with the PID namespace.
# In SCRIPT, `ch CMD...` runs CMD in ROOT and `image` runs the image's own
# entrypoint and cmd.
sandbox() {
	R=$1 unshare --mount --net --uts --pid --fork --propagation private bash -euo pipefail -c '
		ip link set lo up
		mkdir -p "$R/proc" "$R/dev"
		mount -t proc proc "$R/proc"
		mount -t tmpfs -o mode=755 dev "$R/dev"
		mknod -m 666 "$R/dev/null" c 1 3; mknod -m 666 "$R/dev/zero" c 1 5
		mknod -m 666 "$R/dev/random" c 1 8; mknod -m 666 "$R/dev/urandom" c 1 9
		mknod -m 666 "$R/dev/tty" c 5 0
		ln -s /proc/self/fd "$R/dev/fd"; ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
		mkdir -p "$R/run" "$R/tmp"; chmod 1777 "$R/tmp"
		ch() { chroot "$R" "$@"; }
		image() { local a; mapfile -t a <"$R.argv"; ch "${a[@]}"; }
		# wait_port PORT: until something listens on 127.0.0.1:PORT (10 s).
		wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
		'"$2"
}

# expect NAME WANT COMMAND...: COMMAND's output contains WANT.
expect() {
	local name=$1 want=$2 out
	shift 2
	if out=$("$@" 2>&1) && [[ $out == *"$want"* ]]; then
		pass "$name"
	else
		fail "$name: wanted \"$want\", got: $(echo "$out" | tail -n 5)"
	fi
}

names=$dir/build/names
ref_of() { awk -v id="$1" '$1 == id { print $2 }' "$names"; }
declare -A ids=(
	[agnhost]=Agnhost [agnhost-prev]=AgnhostPrev [busybox]=BusyBox [etcd]=Etcd
	[glibc-dns-testing]=GlibcDnsTesting [kitten]=Kitten [nautilus]=Nautilus [nginx]=Nginx
	[nonewprivs]=Nonewprivs [pause]=Pause [sample-apiserver]=APIServer
)

[ -f "$dir/list" ] || { echo "check.sh: $dir/list missing; run make conformance-images" >&2; exit 1; }
for img in "${!ids[@]}"; do
	grep -qx "$(cd "$dir" && pwd)/$img.tar" "$dir/list" || fail "list does not name $img.tar"
done

for img in $(printf '%s\n' "${!ids[@]}" | sort); do
	archive=$dir/$img.tar
	R=$work/$img
	echo "== $img ($(du -h "$archive" | cut -f1))"
	unpack "$archive" "$R"
	want=$(ref_of "${ids[$img]}")
	got=$(jq -r '.manifests[0].annotations["io.containerd.image.name"]' "$R.oci/index.json")
	[ -n "$want" ] && [ "$got" = "$want" ] && pass "named $got" || fail "named $got, e2e.test wants $want"
	argv "$archive" >"$R.argv"
	cmd=$(paste -sd' ' "$R.argv")

	case $img in
	agnhost | agnhost-prev)
		[ "$cmd" = "/agnhost pause" ] && pass "runs: $cmd" || fail "runs \"$cmd\", want /agnhost pause"
		expect "agnhost --help" "netexec" chroot "$R" /agnhost --help
		expect "agnhost-2 links to agnhost" "agnhost" readlink "$R/agnhost-2"
		[ -s "$R/localhost.crt" ] && [ -s "$R/localhost.key" ] && [ -d "$R/uploads" ] && pass "porter certs, /uploads" || fail "porter certs or /uploads missing"
		for t in nc getent curl dig nslookup ip sh bash iperf; do
			p=$(chroot "$R" sh -c "command -v $t") || { fail "$t not on PATH"; continue; }
			real=$(chroot "$R" readlink -f "$p")
			[[ $real == *busybox* ]] && fail "$t is busybox ($real)" || pass "$t is $real"
		done
		expect "getent hosts localhost" "localhost" chroot "$R" getent hosts localhost
		expect "getent passwd user-defined-in-image" "1000" chroot "$R" getent passwd user-defined-in-image
		expect "dig -v" "DiG 9" chroot "$R" dig -v
		expect "nc -h is OpenBSD netcat" "OpenBSD netcat" chroot "$R" nc -h
		expect "curl --version" "curl" chroot "$R" curl --version
		expect "netexec answers nc -v -z, curl and nc -u" "tcp:succeeded http:curl-ok udp:$img-check" sandbox "$R" '
			hostname '"$img"'-check
			ch /agnhost netexec --http-port 8080 --udp-port 8081 >/dev/null 2>&1 &
			wait_port 8080
			tcp=$(ch nc -v -z -w 2 127.0.0.1 8080 2>&1 | grep -o succeeded)
			http=$(ch curl -fsS "http://127.0.0.1:8080/echo?msg=curl-ok")
			udp=$(echo hostname | ch nc -u -w 1 127.0.0.1 8081)
			echo "tcp:$tcp http:$http udp:$udp"'
		;;
	glibc-dns-testing)
		expect "dig -v" "DiG 9" chroot "$R" dig -v
		expect "getent hosts localhost" "localhost" chroot "$R" getent hosts localhost
		expect "the DNS spec's probe shell" "OK" chroot "$R" sh -c 'check="$(getent hosts localhost)" && test -n "$check" && echo OK'
		expect "dig +tcp reports an absent server" "127.0.0.1#53" sandbox "$R" 'ch dig +tcp +tries=1 +time=1 @127.0.0.1 kubernetes.default A || true'
		;;
	nginx)
		expect "nginx -t" "successful" chroot "$R" nginx -t
		expect "nginx answers on port 80 ($cmd)" "Welcome to nginx" sandbox "$R" '
			image &
			wait_port 80
			ch curl -fsS http://127.0.0.1:80/'
		;;
	kitten | nautilus)
		[ "$cmd" = "/agnhost test-webserver" ] && pass "runs: $cmd" || fail "runs \"$cmd\", want /agnhost test-webserver"
		expect "test-webserver serves data.json" "$img" sandbox "$R" '
			image >/dev/null 2>&1 &
			wait_port 80
			ch curl -fsS http://127.0.0.1:80/data.json'
		expect "test-webserver serves $img.jpg" "200 $(stat -c %s "$R/$img.jpg")" sandbox "$R" '
			image >/dev/null 2>&1 &
			wait_port 80
			ch curl -fsS -o /dev/null -w "%{http_code} %{size_download}" http://127.0.0.1:80/'"$img"'.jpg'
		;;
	busybox)
		[ "$cmd" = "sh" ] && pass "runs: sh" || fail "runs \"$cmd\", want sh"
		expect "sh -c env keeps data-1 (ConfigMap/Secret env specs)" "data-1=value-1" chroot "$R" env -i 'data-1=value-1' PATH=/bin sh -c env
		expect "sh is busybox ash (the read-only rootfs spec wants its message)" "busybox" readlink "$R/bin/sh"
		expect "ash's \"can't create\" message" "sh: can't create /no/such/file: nonexistent directory" chroot "$R" sh -c 'sh -c "echo t >/no/such/file" 2>&1; true'
		expect "env is busybox" "busybox" readlink "$R/bin/env"
		for t in wget nslookup sleep cat ls id mount hostname nc; do
			[ "$(readlink "$R/bin/$t")" = busybox ] && pass "$t is busybox" || fail "$t is not busybox"
		done
		expect "shell basics" "3 ok" chroot "$R" sh -c 'x=$((1+2)); for i in 1; do echo "$x ok"; done'
		expect "id" "uid=0(root)" chroot "$R" id
		expect "mount lists the sandbox's proc" "proc on /proc" sandbox "$R" 'ch mount'
		expect "sleep 0 && cat /etc/passwd" "nobody" chroot "$R" sh -c 'sleep 0 && cat /etc/passwd'
		expect "wget from a local server" "hello-wget" sandbox "$R" '
			mkdir -p "$R/tmp/www" && echo hello-wget >"$R/tmp/www/index.html"
			ch httpd -f -p 127.0.0.1:8080 -h /tmp/www &
			wait_port 8080
			ch wget -q -O - http://127.0.0.1:8080/index.html'
		;;
	pause)
		[ "$cmd" = "/pause" ] && pass "runs: /pause" || fail "runs \"$cmd\", want /pause"
		[ "$(imagejq "$archive" .config.User)" = 65535:65535 ] && pass "user 65535" || fail "user is not 65535:65535"
		expect "pause runs until SIGTERM" "exit 0" sandbox "$R" '
			chroot --userspec=65535:65535 "$R" /pause & p=$!
			sleep 1; kill -0 $p; kill -TERM $p; rc=0; wait $p || rc=$?; echo "exit $rc"'
		;;
	nonewprivs)
		[ "$cmd" = "nnp" ] && pass "runs: nnp" || fail "runs \"$cmd\", want nnp"
		[ "$(stat -c %a "$R/usr/local/bin/nnp")" = 6755 ] && pass "nnp is setuid/setgid root" || fail "nnp mode $(stat -c %a "$R/usr/local/bin/nnp")"
		expect "uid 1000, escalation allowed" "Effective uid: 0" chroot --userspec=1000:1000 "$R" nnp
		expect "uid 1000, no_new_privs" "Effective uid: 1000" setpriv --no-new-privs chroot --userspec=1000:1000 "$R" nnp
		;;
	sample-apiserver)
		[ "$cmd" = "/sample-apiserver" ] && pass "runs: /sample-apiserver" || fail "runs \"$cmd\""
		expect "sample-apiserver --help" "--etcd-servers" chroot "$R" /sample-apiserver --help
		;;
	etcd)
		expect "etcd --version" "etcd Version: $(ref_of Etcd | sed 's/.*://; s/-.*//')" chroot "$R" /usr/local/bin/etcd --version
		expect "etcd serves as the aggregator spec runs it" '"health":"true"' sandbox "$R" '
			ch /usr/local/bin/etcd --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 >/dev/null 2>&1 &
			for _ in $(seq 100); do curl -fsS http://127.0.0.1:2379/health 2>/dev/null && exit 0; sleep 0.2; done; exit 1'
		;;
	esac
done

if [ "$failed" != 0 ]; then
	echo "check.sh: some checks failed"
	exit 1
fi
echo "check.sh: all conformance images passed"
