#!/bin/sh
# install-deps.sh — install the Debian packages the build, the tests and the lab need.
#
# Usage: test/vm/install-deps.sh           (as root; safe to re-run)
#        test/vm/install-deps.sh --check   exit 1 with one line naming what is missing
#
# make build, make test, make lab and make e2e run this first: as root it installs
# what is missing; as another user it names the missing packages and the command.
# Build: runc is built static with seccomp (libseccomp-dev, pkg-config, gcc).
# Tests: iptables, iproute2, curl, shellcheck, btrfs-progs (the storage pool). Lab: a Debian bookworm rootfs made
# with debootstrap, booted with systemd-nspawn, wired with iproute2.
set -eu

PKGS="make git gcc libc6-dev pkg-config libseccomp-dev ca-certificates curl bc \
iptables iproute2 shellcheck jq \
debootstrap systemd-container e2fsprogs btrfs-progs util-linux kmod"

check=0
case ${1:-} in
-h | --help)
	sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
--check) check=1 ;;
'') ;;
*)
	echo "install-deps.sh: error: unknown argument '$1' (allowed: --check, --help)" >&2
	exit 1
	;;
esac

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
	[ "$check" -eq 1 ] || echo "install-deps.sh: all packages present"
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps.sh: missing Debian packages:$missing; run: sudo $0" >&2
	exit 1
fi
if [ "$check" -eq 1 ]; then
	echo "install-deps.sh: missing Debian packages:$missing; run: $0" >&2
	exit 1
fi
echo "install-deps.sh: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "install-deps.sh: done"
