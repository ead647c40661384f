#!/bin/bash
# qemu.sh — the lab as real VMs, for hosts with working KVM. Not used by CI.
#
#   test/vm/qemu.sh image          build the VM disk image once (from the lab rootfs + a Debian kernel)
#   test/vm/qemu.sh up             boot lab-cp + nodes, install with packaging/install.sh
#   test/vm/qemu.sh console NODE   attach to NODE's serial console (quit: Ctrl-] )
#   test/vm/qemu.sh down           stop the VMs (by PID) and remove their disks
#
# VMs share one private LAN: a QEMU multicast socket bound to 127.0.0.1, so no
# frame ever leaves the host. Each VM also has a restricted user-mode NIC (no
# traffic out) through which lab-cp forwards 127.0.0.1:16443 to its :6443 for
# the host's kubectl. The repository is shared read-only over 9p.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
QDIR=${QEMU_DIR:-$HERE/.qemu}
NODES=${QEMU_NODES:-3}
MEM=${QEMU_MEM:-2048}
NET=${QEMU_NET:-10.124.0}
MCAST=${QEMU_MCAST:-230.0.0.1:12340}
ACCEL=${QEMU_ACCEL:-kvm} # "tcg" works anywhere, ~10x slower
HOST_PORT=${QEMU_API_PORT:-16443}

die() {
	echo "qemu.sh: error: $*" >&2
	exit 1
}
say() { echo "[qemu] $*" >&2; }

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

names() {
	echo lab-cp
	local i
	for ((i = 1; i < NODES; i++)); do echo "lab-node$i"; done
}

cmd_image() {
	[ "$(id -u)" -eq 0 ] || die "building the image needs root (debootstrap, chroot)"
	command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 not found (apt-get install e2fsprogs)"
	local rootfs
	rootfs=$("$HERE/lab" rootfs)
	mkdir -p "$QDIR"
	tmp=$QDIR/root.tmp
	rm -rf "$tmp"
	say "copying the lab rootfs and adding a kernel"
	cp -a "$rootfs" "$tmp"
	mount -t proc proc "$tmp/proc"
	trap 'umount "$tmp/proc" 2>/dev/null || true' EXIT
	cp /etc/resolv.conf "$tmp/etc/resolv.conf"
	chroot "$tmp" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-image-amd64 >/dev/null' ||
		die "installing a kernel into the image failed"
	echo "# no DNS in the lab" >"$tmp/etc/resolv.conf"
	rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
	umount "$tmp/proc"
	trap - EXIT
	# Not a container: real getty on the serial console, no lab-node-setup.
	rm -f "$tmp/etc/systemd/system/serial-getty@.service" "$tmp/etc/systemd/system/getty@.service" \
		"$tmp/etc/systemd/system/sysinit.target.wants/lab-node-setup.service"
	chroot "$tmp" passwd -d root >/dev/null
	printf '%s\n' 'repo /mnt/repo 9p trans=virtio,version=9p2000.L,ro,nofail 0 0' >>"$tmp/etc/fstab"
	mkdir -p "$tmp/mnt/repo"
	install -m 0755 /dev/stdin "$tmp/usr/local/sbin/vcs-provision" <<'EOF'
#!/bin/sh
# First boot: address from the kernel command line, then install.sh.
set -eu
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^vcs\.$1=//p"; }
nic() { ip -o link | awk -F': ' "/$1/ {print \$2; exit}" | cut -d@ -f1; }
lan=$(nic 52:54:00:00:aa)
ip addr replace "$(arg ip)" dev "$lan"
ip link set "$lan" up
# The user-mode NIC: QEMU's fixed guest address, restricted (no way out), for
# the host's port forward; its gateway is the default route kubelet wants.
user=$(nic 52:54:00:00:bb)
ip addr replace 10.0.2.15/24 dev "$user"
ip link set "$user" up
ip route replace default via 10.0.2.2 dev "$user"
hostnamectl set-hostname "$(arg name)" 2>/dev/null || hostname "$(arg name)"
[ "$(arg role)" = cp ] || exit 0
[ -f /etc/vcluster-standalone/config.yaml ] && exit 0
sh /mnt/repo/packaging/install.sh --binary-dir /mnt/repo/bin --advertise-address "$(arg ip | cut -d/ -f1)" --tls-san 127.0.0.1
EOF
	cat >"$tmp/etc/systemd/system/vcs-provision.service" <<'EOF'
[Unit]
Description=Address this VM and install vcluster-standalone
After=network.target mnt-repo.mount
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/vcs-provision
[Install]
WantedBy=multi-user.target
EOF
	ln -sf /etc/systemd/system/vcs-provision.service "$tmp/etc/systemd/system/multi-user.target.wants/vcs-provision.service"
	cp "$tmp"/boot/vmlinuz-* "$QDIR/vmlinuz"
	cp "$tmp"/boot/initrd.img-* "$QDIR/initrd.img"
	say "making the disk image"
	rm -f "$QDIR/base.img"
	truncate -s 8G "$QDIR/base.img"
	mkfs.ext4 -q -F -d "$tmp" "$QDIR/base.img"
	rm -rf "$tmp"
	say "image ready: $QDIR/base.img"
}

cmd_up() {
	command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (apt-get install qemu-system-x86 qemu-utils)"
	[ -f "$QDIR/base.img" ] || die "no image yet; run: sudo test/vm/qemu.sh image"
	if [ "$ACCEL" = kvm ] && [ ! -w /dev/kvm ]; then
		die "/dev/kvm is not usable here; set QEMU_ACCEL=tcg to emulate (slow)"
	fi
	[ -x "$REPO/bin/vcluster-standalone" ] || die "no bin/vcluster-standalone; run make build"
	local i=0 n fwd
	for n in $(names); do
		[ ! -f "$QDIR/$n.pid" ] || die "$n is already running; run: test/vm/qemu.sh down"
		qemu-img create -q -f qcow2 -F raw -b "$QDIR/base.img" "$QDIR/$n.qcow2"
		fwd=""
		[ "$n" != lab-cp ] || fwd=",hostfwd=tcp:127.0.0.1:$HOST_PORT-:6443"
		qemu-system-x86_64 -accel "$ACCEL" -cpu max -smp 2 -m "$MEM" \
			-kernel "$QDIR/vmlinuz" -initrd "$QDIR/initrd.img" \
			-append "root=/dev/vda rw console=ttyS0 vcs.name=$n vcs.ip=$NET.$((10 + i))/24 vcs.role=$([ "$n" = lab-cp ] && echo cp || echo node)" \
			-drive "file=$QDIR/$n.qcow2,if=virtio,format=qcow2" \
			-netdev "user,id=u,restrict=on$fwd" -device "virtio-net-pci,netdev=u,mac=52:54:00:00:bb:$(printf %02x $i)" \
			-netdev "socket,id=lan,mcast=$MCAST,localaddr=127.0.0.1" \
			-device "virtio-net-pci,netdev=lan,mac=52:54:00:00:aa:$(printf %02x $i)" \
			-virtfs "local,path=$REPO,mount_tag=repo,security_model=none,readonly=on" \
			-chardev "socket,id=ser,path=$QDIR/$n.console,server=on,wait=off,logfile=$QDIR/$n.log" \
			-serial chardev:ser -monitor none -display none \
			-pidfile "$QDIR/$n.pid" -daemonize
		say "$n booting ($NET.$((10 + i)))"
		i=$((i + 1))
	done
	say "lab-cp installs the control plane on first boot; watch: tail -f $QDIR/lab-cp.log"
	say "log in on the console (root, no password): test/vm/qemu.sh console lab-cp, then e.g."
	say "  vcluster-standalone kubeconfig --server https://127.0.0.1:$HOST_PORT > host.kubeconfig"
}

cmd_down() {
	local n pid
	for n in $(names); do
		[ -f "$QDIR/$n.pid" ] || continue
		pid=$(cat "$QDIR/$n.pid")
		if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = qemu-system-x86 ]; then
			kill "$pid"
			say "stopped $n (pid $pid)"
		fi
		rm -f "$QDIR/$n.pid" "$QDIR/$n.qcow2" "$QDIR/$n.console" "$QDIR/$n.log"
	done
}

cmd_console() {
	command -v socat >/dev/null || die "socat not found (apt-get install socat)"
	[ -S "$QDIR/$1.console" ] || die "no console for $1; is it up?"
	socat -,raw,echo=0,escape=0x1d "UNIX-CONNECT:$QDIR/$1.console"
}

case ${1:-help} in
image) cmd_image ;;
up) cmd_up ;;
down) cmd_down ;;
console)
	[ $# -eq 2 ] || die "usage: qemu.sh console NODE"
	cmd_console "$2"
	;;
help | -h | --help) usage ;;
*) die "unknown command '$1' (see: test/vm/qemu.sh help)" ;;
esac
