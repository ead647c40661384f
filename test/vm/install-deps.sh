#!/bin/sh
# install-deps.sh — install the Debian packages the nspawn lab needs.
#
# Usage: test/vm/install-deps.sh        (as root; safe to re-run)
#
# The lab builds a Debian bookworm rootfs with debootstrap and boots it with
# systemd-nspawn; nodes are wired with iproute2 (netns, veth, bridge).
set -eu

PKGS="debootstrap systemd-container iproute2 iptables e2fsprogs util-linux kmod ca-certificates curl"

case ${1:-} in
-h | --help)
	sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
'') ;;
*)
	echo "install-deps.sh: error: unknown argument '$1' (see --help)" >&2
	exit 1
	;;
esac

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps.sh: must run as root (try: sudo $0)" >&2
	exit 1
fi

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
	echo "install-deps.sh: all lab packages present"
	exit 0
fi
echo "install-deps.sh: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "install-deps.sh: done"
