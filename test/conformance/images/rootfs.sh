#!/usr/bin/env bash
# rootfs.sh DIR PACKAGE... — a minimal Debian bookworm userland (debootstrap
# minbase plus PACKAGEs) in DIR, shared as one image layer by the glibc-based
# conformance images (agnhost, glibc-dns-testing, nginx, kitten, nautilus).
# Docs, man pages, locales, apt lists and device nodes are stripped; DIR.complete
# (beside DIR, not in the layer) marks a finished tree, so a second run does
# nothing. Needs root (debootstrap).
set -euo pipefail

dir=${1:?usage: rootfs.sh DIR PACKAGE...}
shift
pkgs=$(printf '%s\n' "$@" | sort -u | paste -sd, -)

if [ -f "$dir.complete" ]; then
	exit 0
fi
[ "$(id -u)" = 0 ] || { echo "rootfs.sh: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "rootfs.sh: debootstrap not found; run test/vm/install-deps.sh" >&2; exit 1; }

# The host's own Debian mirror, if it has one; else debootstrap's default.
mirror=$(grep -hs -E '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
	grep -v security | grep -oE 'https?://[^ ]*debian[^ ]*' | head -n1 || true)

tmp=$dir.tmp
rm -rf "$tmp"
mkdir -p "$(dirname "$dir")"
echo "rootfs.sh: debootstrap bookworm into $dir ($pkgs)"
# shellcheck disable=SC2086
if ! debootstrap --variant=minbase --include="$pkgs" bookworm "$tmp" $mirror >"$dir.log" 2>&1; then
	tail -n 5 "$dir.log" >&2
	echo "rootfs.sh: debootstrap failed; full log: $dir.log" >&2
	exit 1
fi

# The users and group agnhost's Dockerfile adds.
chroot "$tmp" groupadd -g 50000 group-defined-in-image
chroot "$tmp" useradd -u 1000 -M -N -g users -G group-defined-in-image -s /bin/sh user-defined-in-image

# A container gets /dev, /proc, /sys, /run, hostname, hosts and resolv.conf
# from its runtime: ship none of their contents.
find "$tmp/dev" "$tmp/proc" "$tmp/sys" "$tmp/run" -mindepth 1 -delete
: >"$tmp/etc/resolv.conf"
: >"$tmp/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$tmp/etc/hosts"
: >"$tmp/etc/machine-id"
rm -rf "$tmp"/usr/share/doc/* "$tmp"/usr/share/man/* "$tmp"/usr/share/info/* \
	"$tmp"/usr/share/locale/* "$tmp"/usr/share/lintian "$tmp"/usr/share/linda \
	"$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/* "$tmp"/var/cache/debconf/*-old \
	"$tmp"/var/log/* "$tmp"/tmp/* "$tmp"/var/tmp/* "$tmp"/var/lib/dpkg/*-old
# nginx's default site would shadow the image's own configuration.
rm -f "$tmp"/etc/nginx/sites-enabled/default
rm -rf "$dir" "$dir.complete"
mv "$tmp" "$dir"
touch "$dir.complete"
du -sh "$dir"
