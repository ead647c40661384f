#!/bin/sh
# build.sh OUT — upstream BusyBox 1.37.0, static, from its release tarball as
# Debian trixie ships it (the .orig tarball, fetched and checked by apt against
# the signed Sources index), configured with upstream's defconfig: what the
# e2e busybox:1.37.0 image is. Debian's own builds (1.35 in bookworm, 1.37 in
# trixie) revert upstream's change that keeps environment variables whose
# names are not shell identifiers (data-1), which the ConfigMap/Secret
# environment specs print with `sh -c env`; and the read-only rootfs spec
# wants ash's own "can't create" message, so no other shell will do.
set -eu
# The calling make exports its Go LDFLAGS; busybox's build would take them.
unset LDFLAGS CFLAGS CPPFLAGS MAKEFLAGS MFLAGS MAKELEVEL
out=$1
version=1.37.0
work=$(dirname "$out")/busybox-src
rm -rf "$work"
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" >"$work/apt/sources.list"
set -- -o Dir::Etc::SourceList="$work/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null \
	-o Dir::State::Lists="$work/apt/lists" -o Dir::Cache="$work/apt/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root
echo "busybox: fetching the $version source (Debian trixie's orig tarball)"
apt-get "$@" -qq update
(cd "$work" && apt-get "$@" -qq source --download-only "busybox=1:$version-*" >/dev/null 2>&1 ||
	apt-get "$@" -qq source --download-only busybox >/dev/null)
tarball=$(ls "$work"/busybox_"$version".orig.tar.*)
tar -xf "$tarball" -C "$work"
cd "$work/busybox-$version"
echo "busybox: building $version (defconfig, static)"
make -s defconfig >/dev/null
# Static, and without tc (its CBQ code needs kernel headers newer kernels dropped).
sed -i 's/^# CONFIG_STATIC is not set/CONFIG_STATIC=y/; s/^CONFIG_TC=y/# CONFIG_TC is not set/' .config
yes "" | make -s oldconfig >/dev/null 2>&1 || true
make -s -j"$(nproc)" >/dev/null 2>&1 || { make -j1 2>&1 | tail -20; exit 1; }
./busybox | head -1 | grep -q "BusyBox v$version" || { echo "busybox: built binary is not $version" >&2; exit 1; }
cp busybox "$out.tmp"
mv "$out.tmp" "$out"
rm -rf "$work"
