#!/bin/sh
# install.sh — install or upgrade vcluster-standalone on this machine.
#
# Control plane (default):   sh install.sh [--binary-dir DIR | --url URL] [flags]
# Node joining a cluster:    VCS_TOKEN=ID.SECRET sh install.sh --join https://CP:6443 --ca-cert-hash sha256:HEX
# Remove everything:         sh install.sh --uninstall   (or: vcluster-standalone-uninstall.sh)
# Control plane from a snapshot: sh install.sh --restore FILE [--binary-dir DIR | --url URL]
#
# Re-running upgrades in place: binaries and units are replaced, the service is
# restarted, and the cluster's data (/var/lib/...) is kept. Run with --help for
# every flag. POSIX sh; needs root and systemd.
set -eu

PROG=install.sh
BIN_DIR=/usr/local/bin
UNINSTALL_SCRIPT=$BIN_DIR/vcluster-standalone-uninstall.sh
UNIT_DIR=/etc/systemd/system
CP_NAME=vcluster-standalone
NODE_NAME=node-agent

die() {
	echo "$PROG: error: $*" >&2
	exit 1
}
info() { echo "[$PROG] $*"; }

usage() {
	cat <<'EOF'
Install or upgrade vcluster-standalone: a control plane (default) or a node.

Usage:
  install.sh [flags]                       install/upgrade the control plane
  VCS_TOKEN=T install.sh --join URL --ca-cert-hash H [flags]
                                           install a node that joins the cluster at URL
  install.sh --uninstall                   stop services and remove every file,
                                           unit, mount, iptables chain and interface
  install.sh --restore FILE [flags]        install the control plane from a snapshot

Where binaries come from (first that applies):
  --binary-dir DIR        take vcluster-standalone / node-agent from DIR
  --url URL               download URL/vcluster-standalone or URL/node-agent (https
                          only, and with --pinned-pubkey or --sha256: the binary runs
                          as root)
  --pinned-pubkey PIN     with --url: curl --pinnedpubkey PIN (e.g. sha256//BASE64);
                          only the server holding that key is accepted
  --sha256 HEX            with --url: the SHA-256 (sha256sum) a downloaded binary must
                          have before it is installed or run; repeatable (the control
                          plane downloads vcluster-standalone and node-agent)
  (default)               the directory this script is in

Control-plane flags (written to /etc/vcluster-standalone/config.yaml):
  --advertise-address IP  address other machines reach the API server on
  --tls-san NAME          extra SAN for the API server certificate (repeatable)
  --data-dir DIR          data directory (default /var/lib/vcluster-standalone)
  --config FILE           install FILE as the config instead of generating one
  --restore FILE          restore FILE (from `vcluster-standalone snapshot save`)
                          before the first start: etcd, CAs, keys and the config
                          all come from it (no other config flag); refused if
                          corrupt or while a control plane runs. An encrypted
                          snapshot's passphrase: --passphrase-file FILE or the
                          VCS_SNAPSHOT_PASSPHRASE environment variable
  The control-plane host is a node too (joinNode): install.sh then starts
  node-agent.service with the credentials start wrote. To keep workloads off
  it, put "joinNode: false" in the config (--config FILE).

Node flags (passed to `node-agent join` through its environment; the token is
used once for the TLS bootstrap and never written to disk):
  --join URL              API server URL of the cluster to join (env VCS_JOIN)
  VCS_TOKEN=TOKEN         bootstrap token ID.SECRET, in the environment: install.sh
                          removes it from its own before it runs anything and hands
                          it to node-agent join alone
  --token TOKEN           the same as a flag, for scripts: visible to every local
                          user (ps) while install.sh runs
  --ca-cert-hash HASH     sha256:HEX pin of the cluster CA; repeatable (env VCS_CA_CERT_HASH)
  --node-name NAME        node name (default: this machine's hostname)

Other flags:
  --timeout SECONDS       how long to wait for ready (default 300)
  --no-start              write files but do not start the service
  -h, --help              show this help

Examples:
  # control plane from binaries beside this script
  sudo sh install.sh --advertise-address 192.0.2.10

  # a node, with the token printed by `vcluster-standalone token create` (as root)
  VCS_TOKEN=abcdef.0123456789abcdef sh install.sh --join https://192.0.2.10:6443 \
      --ca-cert-hash sha256:<64 hex digits>

  # a control plane from a release server, each binary checked
  sudo sh install.sh --url https://releases.example.com/v1 \
      --sha256 <vcluster-standalone's sum> --sha256 <node-agent's sum>
EOF
}

# ---- arguments ---------------------------------------------------------------

MODE=controlplane
SRC_DIR=""
URL=""
PIN=""
SHA256S=""
ADVERTISE=""
SANS=""
DATA_DIR=""
CONFIG_FILE=""
RESTORE=""
PASS_FILE=""
JOIN=${VCS_JOIN:-}
# The token must reach no child but node-agent join (join_node), and that
# through its environment: drop it from ours before anything runs. TOKEN is
# unset first so that a TOKEN the caller exported cannot export ours.
unset TOKEN
TOKEN=${VCS_TOKEN:-}
unset VCS_TOKEN NODE_AGENT_TOKEN
CA_HASH=${VCS_CA_CERT_HASH:-}
NODE=""
TIMEOUT=300
START=1
CONFIG_FLAGS=0
OLD_PID=none
NODE_AGENT_CHANGED=0

need_value() {
	[ "$2" -ge 2 ] || die "flag $1 needs a value (see $PROG --help)"
}

while [ $# -gt 0 ]; do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--uninstall) MODE=uninstall ;;
	--binary-dir) need_value "$1" $# && SRC_DIR=$2 && shift ;;
	--url) need_value "$1" $# && URL=$2 && shift ;;
	--pinned-pubkey) need_value "$1" $# && PIN=$2 && shift ;;
	--sha256) need_value "$1" $# && SHA256S="$SHA256S $2" && shift ;;
	--advertise-address) need_value "$1" $# && ADVERTISE=$2 && CONFIG_FLAGS=1 && shift ;;
	--tls-san) need_value "$1" $# && SANS="$SANS $2" && CONFIG_FLAGS=1 && shift ;;
	--data-dir) need_value "$1" $# && DATA_DIR=$2 && CONFIG_FLAGS=1 && shift ;;
	--config) need_value "$1" $# && CONFIG_FILE=$2 && shift ;;
	--restore) need_value "$1" $# && RESTORE=$2 && shift ;;
	--passphrase-file) need_value "$1" $# && PASS_FILE=$2 && shift ;;
	--join) need_value "$1" $# && JOIN=$2 && shift ;;
	--token) need_value "$1" $# && TOKEN=$2 && shift ;;
	--ca-cert-hash) need_value "$1" $# && CA_HASH=${CA_HASH:+$CA_HASH,}$2 && shift ;;
	--node-name) need_value "$1" $# && NODE=$2 && shift ;;
	--timeout) need_value "$1" $# && TIMEOUT=$2 && shift ;;
	--no-start) START=0 ;;
	--*=*) die "write flags as '--flag value', not '$1' (see $PROG --help)" ;;
	*) die "unknown flag '$1' (see $PROG --help)" ;;
	esac
	shift
done
[ "$MODE" = uninstall ] || [ -z "$JOIN" ] || MODE=node

if [ -n "$RESTORE" ]; then
	[ "$MODE" = controlplane ] || die "--restore installs a control plane; it does not go with --join or --uninstall"
	if [ "$CONFIG_FLAGS" -ne 0 ] || [ -n "$CONFIG_FILE" ]; then
		die "--restore takes the config from the snapshot; drop --config, --advertise-address, --tls-san and --data-dir"
	fi
	[ -f "$RESTORE" ] || die "--restore: no snapshot file $RESTORE"
fi

case $TIMEOUT in
'' | *[!0-9]*) die "--timeout must be a number of seconds, got '$TIMEOUT'" ;;
esac

# A downloaded binary runs as root: it must come over https from the server
# holding the pinned key, or have a checksum given here.
check_download_flags() {
	for s in $SHA256S; do
		case $s in
		*[!0-9a-f]*) die "--sha256 must be 64 lowercase hex digits (as sha256sum prints), got '$s'" ;;
		esac
		[ ${#s} -eq 64 ] || die "--sha256 must be 64 lowercase hex digits (as sha256sum prints), got '$s'"
	done
	if [ -z "$URL" ]; then
		[ -z "$SHA256S$PIN" ] || die "--sha256 and --pinned-pubkey check what --url downloads; give --url URL too"
		return
	fi
	case $URL in
	https://?*) ;;
	*) die "--url must be an https:// URL, got '$URL'" ;;
	esac
	[ -n "$PIN" ] || [ -n "$SHA256S" ] ||
		die "--url needs --pinned-pubkey PIN or --sha256 HEX: a downloaded binary runs as root and must be checked"
}
check_download_flags

# ---- prerequisites -----------------------------------------------------------

check_root() {
	[ "$(id -u)" -eq 0 ] || die "must run as root (try: sudo sh $PROG ...)"
}

check_systemd() {
	# The same test as sd_booted(3).
	if [ ! -d /run/systemd/system ]; then
		die "systemd is not running on this machine (no /run/systemd/system); vcluster-standalone needs systemd as init"
	fi
	command -v systemctl >/dev/null 2>&1 || die "systemctl not found; vcluster-standalone needs systemd"
}

check_kernel() {
	[ -d /sys/fs/cgroup ] || die "no cgroup filesystem at /sys/fs/cgroup; the kernel needs cgroup support"
	[ -e /proc/sys/net/ipv4/ip_forward ] || die "no IPv4 networking in this kernel (/proc/sys/net/ipv4/ip_forward missing)"
	[ "$MODE" = node ] || return 0
	# Nothing may be loadable: try, then check for the feature itself.
	modprobe overlay >/dev/null 2>&1 || true
	grep -qw overlay /proc/filesystems || die "the kernel has no overlay filesystem (needed by containerd); enable CONFIG_OVERLAY_FS"
	modprobe br_netfilter >/dev/null 2>&1 || true
	command -v iptables >/dev/null 2>&1 || die "iptables not found; install it (Debian/Ubuntu: apt-get install iptables)"
	command -v mount >/dev/null 2>&1 || die "mount not found; install util-linux"
}

check_node_flags() {
	case $JOIN in
	https://*) ;;
	*) die "--join must be an https:// URL of the API server, got '$JOIN'" ;;
	esac
	[ -n "$TOKEN" ] || die "--join needs --token ID.SECRET (from: vcluster-standalone token create)"
	echo "$TOKEN" | grep -Eq '^[a-z0-9]{6}\.[a-z0-9]{16}$' ||
		die "--token must look like abcdef.0123456789abcdef ([a-z0-9]{6}.[a-z0-9]{16})"
	[ -n "$CA_HASH" ] || die "--join needs --ca-cert-hash sha256:HEX (from: vcluster-standalone token create)"
	echo "$CA_HASH" | grep -Eq '^sha256:[0-9a-f]{64}(,sha256:[0-9a-f]{64})*$' ||
		die "--ca-cert-hash must be sha256: followed by 64 hex digits"
}

# ---- binaries ----------------------------------------------------------------

# fetch_binary NAME DEST: put the binary NAME at DEST (a temporary path).
fetch_binary() {
	if [ -n "$URL" ]; then
		command -v curl >/dev/null 2>&1 || die "curl not found; needed for --url"
		info "downloading $URL/$1"
		# https only, redirects included.
		if [ -n "$PIN" ]; then
			# The pinned public key authenticates the server (the join endpoint's
			# certificate is from the cluster CA, which this machine does not
			# trust yet), so -k only skips the CA check; curl still refuses any
			# other key before sending a byte.
			curl -fsSLk --proto =https --proto-redir =https --pinnedpubkey "$PIN" -o "$2" "$URL/$1" ||
				die "download of $URL/$1 failed (is --pinned-pubkey the one token create printed?)"
		else
			curl -fsSL --proto =https --proto-redir =https -o "$2" "$URL/$1" || die "download of $URL/$1 failed"
		fi
		check_sha256 "$URL/$1" "$2"
		chmod 0755 "$2"
		return
	fi
	dir=$(source_dir)
	[ -f "$dir/$1" ] || die "no $1 binary in $dir; pass --binary-dir DIR or --url URL"
	cp "$dir/$1" "$2"
	chmod 0755 "$2"
}

# check_sha256 WHAT FILE: with --sha256, FILE's sum must be one of those
# given, before it is made executable, run or installed.
check_sha256() {
	[ -n "$SHA256S" ] || return 0
	command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found; --sha256 needs it (install coreutils)"
	sum=$(sha256sum "$2" | cut -d' ' -f1)
	case " $SHA256S " in
	*" $sum "*) info "$1: SHA-256 checked" ;;
	*)
		rm -f "$2"
		die "$1 has SHA-256 $sum, which no --sha256 names: not installed"
		;;
	esac
}

# source_dir: where local binaries come from (--binary-dir, else beside this script).
source_dir() {
	if [ -n "$SRC_DIR" ]; then
		echo "$SRC_DIR"
		return
	fi
	case $0 in
	*/*) (cd "$(dirname "$0")" && pwd) ;;
	*) echo . ;;
	esac
}

# install_node_agent_for_joins TMPDIR: the control plane's join endpoint serves
# the node-agent installed beside vcluster-standalone, so nodes get the same
# release. Without one the control plane still runs; nodes then need
# node-agent from elsewhere, and the line below says so.
install_node_agent_for_joins() {
	if [ -z "$URL" ] && [ ! -f "$(source_dir)/$NODE_NAME" ]; then
		info "no $NODE_NAME binary in $(source_dir): the join endpoint will have none to serve"
		return
	fi
	fetch_binary "$NODE_NAME" "$1/$NODE_NAME"
	if [ "$(install_file "$1/$NODE_NAME" "$BIN_DIR/$NODE_NAME" 0755)" = changed ]; then
		info "installed $BIN_DIR/$NODE_NAME (served to joining nodes, and run here unless joinNode is off)"
		NODE_AGENT_CHANGED=1
	fi
}

# start_local_node: with joinNode (the default) the control plane wrote this
# host's node config, credentials and node-agent.service at start; run that
# node-agent, so workloads can land here too. Safe to re-run: an active
# node-agent is restarted only when its binary or unit changed.
start_local_node() {
	config=/etc/$NODE_NAME/config.yaml
	unit=$UNIT_DIR/$NODE_NAME.service
	[ -f "$config" ] || return 0 # joinNode: false
	if [ ! -x "$BIN_DIR/$NODE_NAME" ]; then
		info "no $BIN_DIR/$NODE_NAME: this host runs no workloads; re-run with node-agent beside $PROG to add it"
		return 0
	fi
	if [ ! -f "$unit" ]; then
		"$BIN_DIR/$NODE_NAME" unit "$NODE_NAME.service" >"$unit.new" || die "$NODE_NAME cannot print its unit"
		install_file "$unit.new" "$unit" 0600 >/dev/null
	fi
	restart=$NODE_AGENT_CHANGED
	[ "$(systemctl show -p NeedDaemonReload --value "$NODE_NAME.service" 2>/dev/null)" = yes ] && restart=1
	systemctl daemon-reload
	was_active=0
	systemctl is-active --quiet "$NODE_NAME.service" && was_active=1
	systemctl enable --now "$NODE_NAME.service" >/dev/null 2>&1 || die "systemctl enable --now $NODE_NAME.service failed; see: journalctl -u $NODE_NAME"
	if [ "$was_active" -eq 1 ] && [ "$restart" -eq 1 ]; then
		info "restarting $NODE_NAME to apply the changes"
		systemctl restart --no-block "$NODE_NAME.service"
	fi
	info "this host is a node too: $NODE_NAME.service enabled and started (joinNode; see: journalctl -u $NODE_NAME)"
}

# install_file SRC DEST MODE: replace DEST atomically (a running binary can't be
# overwritten in place); prints "changed" when DEST differs from before.
install_file() {
	if [ -f "$2" ] && cmp -s "$1" "$2"; then
		rm -f "$1"
		chmod "$3" "$2" # an older release may have written it with another mode
		return
	fi
	chmod "$3" "$1"
	mv -f "$1" "$2"
	echo changed
}

# ---- waiting -----------------------------------------------------------------

# wait_ready UNIT CHECK...: poll until the unit is active and CHECK succeeds.
wait_ready() {
	unit=$1
	shift
	start=$(date +%s)
	last=0
	while :; do
		now=$(date +%s)
		elapsed=$((now - start))
		state=$(systemctl is-active "$unit" 2>/dev/null || true)
		pid=$(systemctl show -p MainPID --value "$unit" 2>/dev/null || true)
		if [ "$state" = active ] && [ "$pid" != "$OLD_PID" ] && "$@" >/dev/null 2>&1; then
			info "$unit is ready (${elapsed}s)"
			return 0
		fi
		if [ "$elapsed" -ge "$TIMEOUT" ]; then
			journalctl -u "$unit" -n 15 --no-pager >&2 2>/dev/null || true
			die "$unit not ready after ${TIMEOUT}s (state: $state); see: journalctl -u $unit"
		fi
		if [ $((elapsed - last)) -ge 5 ]; then
			info "waiting for $unit to be ready: $state (${elapsed}s)"
			last=$elapsed
		fi
		sleep 1
	done
}

cp_ready() {
	[ "$("$BIN_DIR/$CP_NAME" kubectl get --raw /readyz 2>/dev/null)" = ok ]
}

# ---- config ------------------------------------------------------------------

write_cp_config() {
	dir=/etc/vcluster-standalone
	mkdir -p "$dir"
	chmod 0755 "$dir"
	if [ -n "$CONFIG_FILE" ]; then
		[ -f "$CONFIG_FILE" ] || die "config file $CONFIG_FILE does not exist"
		cp "$CONFIG_FILE" "$dir/config.yaml.new"
	elif [ -f "$dir/config.yaml" ] && [ "$CONFIG_FLAGS" -eq 0 ]; then
		info "keeping $dir/config.yaml"
		return
	else
		{
			echo "# Written by install.sh; re-running it with config flags rewrites this file."
			echo "apiVersion: vcluster-standalone.io/v1alpha1"
			echo "kind: ControlPlaneConfig"
			[ -z "$ADVERTISE" ] || echo "advertiseAddress: \"$ADVERTISE\""
			[ -z "$DATA_DIR" ] || echo "dataDir: \"$DATA_DIR\""
			if [ -n "$SANS" ]; then
				echo "extraSANs:"
				for s in $SANS; do echo "- \"$s\""; done
			fi
		} >"$dir/config.yaml.new"
	fi
	if [ "$(install_file "$dir/config.yaml.new" "$dir/config.yaml" 0644)" = changed ]; then
		info "wrote $dir/config.yaml"
		CHANGED=1
	fi
	# Secrets for the service, if any, live here (root only), never in the unit.
	[ -f "$dir/$CP_NAME.env" ] || install -m 0600 /dev/null "$dir/$CP_NAME.env"
}

# restore_snapshot BINARY: the snapshot is verified whole, then its etcd,
# PKI, keys and config are put in place, before anything is installed (a
# refused snapshot leaves the machine as it was).
restore_snapshot() {
	info "restoring $RESTORE"
	bin=$1
	set -- snapshot restore "$RESTORE" --config /etc/vcluster-standalone/config.yaml
	[ -z "$PASS_FILE" ] || set -- "$@" --passphrase-file "$PASS_FILE"
	"$bin" "$@" || exit 1 # it printed the one-line error
	CHANGED=1
}

# join_node: discovery, TLS bootstrap, node config, credentials and unit, by
# node-agent itself. The token goes through the environment, not the command
# line (ps shows that), and is never written to disk.
join_node() {
	dir=/etc/node-agent
	# An older install.sh kept the token in this file: remove it.
	rm -f "$dir/$NODE_NAME.env" "$dir/$NODE_NAME.env.new"
	was_active=0
	systemctl is-active --quiet "$NODE_NAME.service" && was_active=1
	set -- join
	[ -z "$NODE" ] || set -- "$@" --node-name "$NODE"
	[ "$START" -eq 1 ] || set -- "$@" --no-start
	NODE_AGENT_SERVER=$JOIN NODE_AGENT_TOKEN=$TOKEN NODE_AGENT_CA_CERT_HASH=$CA_HASH \
		"$BIN_DIR/$NODE_NAME" "$@" || exit 1 # node-agent printed the one-line error
	# An upgrade of an already joined node: run the new binary and unit.
	if [ "$START" -eq 1 ] && [ "$was_active" -eq 1 ] && [ "$CHANGED" -eq 1 ]; then
		info "restarting $NODE_NAME to apply the changes"
		systemctl restart --no-block "$NODE_NAME.service"
	fi
}

# ---- install -----------------------------------------------------------------

do_install() {
	name=$1
	CHANGED=0
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	fetch_binary "$name" "$tmp/$name"
	"$tmp/$name" unit "$name.service" >"$tmp/$name.service" 2>"$tmp/unit.err" ||
		die "$name binary cannot print its unit ($(head -n1 "$tmp/unit.err")); is it a $name binary?"
	version=$("$tmp/$name" version 2>/dev/null | head -n1 | awk '{print $NF}')
	info "installing $name ${version:-(unknown version)}"
	if [ "$name" = "$CP_NAME" ] && [ -n "$RESTORE" ]; then restore_snapshot "$tmp/$name"; fi

	mkdir -p "$BIN_DIR"
	if [ "$(install_file "$tmp/$name" "$BIN_DIR/$name" 0755)" = changed ]; then
		info "installed $BIN_DIR/$name"
		CHANGED=1
	else
		info "$BIN_DIR/$name is up to date"
	fi
	if [ "$name" = "$CP_NAME" ]; then install_node_agent_for_joins "$tmp"; fi
	write_uninstall_script "$tmp/uninstall.sh"
	install_file "$tmp/uninstall.sh" "$UNINSTALL_SCRIPT" 0755 >/dev/null
	if [ "$name" = "$CP_NAME" ]; then write_cp_config; fi
	# Units are root's only (CIS 4.1.1); systemd reads them as root.
	if [ "$(install_file "$tmp/$name.service" "$UNIT_DIR/$name.service" 0600)" = changed ]; then
		info "wrote $UNIT_DIR/$name.service"
		CHANGED=1
	fi
	systemctl daemon-reload
	if [ "$name" = "$NODE_NAME" ]; then
		join_node
		return
	fi
	systemctl enable "$name.service" >/dev/null 2>&1 || die "systemctl enable $name.service failed"
	if [ "$START" -eq 0 ]; then
		info "not starting $name (--no-start); start it with: systemctl start $name"
		return
	fi
	if [ "$CHANGED" -eq 1 ] && systemctl is-active --quiet "$name.service"; then
		info "restarting $name to apply the changes"
		# Ready must then come from the new process, not the old one.
		OLD_PID=$(systemctl show -p MainPID --value "$name.service")
		systemctl restart --no-block "$name.service"
	else
		systemctl start --no-block "$name.service"
	fi
}

# ---- uninstall ---------------------------------------------------------------

# The uninstall script is written out by every install, so the machine can be
# cleaned even when install.sh came through a pipe.
write_uninstall_script() {
	cat >"$1" <<'UNINSTALL'
#!/bin/sh
# vcluster-standalone-uninstall.sh — written by install.sh. Stops the services and
# removes every file, unit, mount, iptables chain and interface they created.
set -u
[ "$(id -u)" -eq 0 ] || { echo "vcluster-standalone-uninstall.sh: error: must run as root" >&2; exit 1; }
say() { echo "[uninstall] $*"; }
UNITS="node-agent vcluster-standalone"
# Data dirs are removed only with this file in them: start and join write it
# into a directory they made, so a dataDir pointed at someone else's
# directory is left alone.
MARKER=.vcluster-standalone-data-dir
config_data_dir() {
	sed -n 's/^dataDir:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' "$1" 2>/dev/null | head -n1
}
# Read before node-agent reset removes the node's config.
data_dirs="/var/lib/vcluster-standalone /var/lib/node-agent $(config_data_dir /etc/vcluster-standalone/config.yaml) $(config_data_dir /etc/node-agent/config.yaml)"

# 1. Stop the services; KillMode=process leaves containers running, so kill
#    whatever is left in each unit's cgroups (by PID).
for u in $UNITS; do
	[ -f "/etc/systemd/system/$u.service" ] || systemctl cat "$u.service" >/dev/null 2>&1 || continue
	cg=$(systemctl show -p ControlGroup --value "$u.service" 2>/dev/null || true)
	say "stopping $u"
	systemctl disable --now "$u.service" >/dev/null 2>&1 || true
	if [ -n "$cg" ]; then
		for d in /sys/fs/cgroup$cg /sys/fs/cgroup/*$cg; do
			[ -d "$d" ] || continue
			find "$d" -name cgroup.procs 2>/dev/null | while read -r f; do
				while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done <"$f"
			done
		done
	fi
done

# 1b. node-agent's own cleanup (containers, mounts, network), when this
#     release has a reset command. Never interactive.
na=/usr/local/bin/node-agent
if [ -x "$na" ] && "$na" reset --help >/dev/null 2>&1; then
	say "running node-agent reset"
	if "$na" reset --help 2>&1 | grep -q -- '--force'; then
		"$na" reset --force </dev/null || say "node-agent reset failed; removing what is left below"
	else
		"$na" reset </dev/null || say "node-agent reset failed; removing what is left below"
	fi
fi

# 2. Unmount whatever the node runtime mounted below its directories, deepest first
#    (strictly below: a disk mounted at one of them is the machine's, and stays).
for top in /var/lib/kubelet /var/lib/containerd /run/containerd /var/lib/node-agent/kubelet \
	/var/lib/node-agent/containerd /run/node-agent /var/lib/vcluster-standalone; do
	findmnt -rn -o TARGET 2>/dev/null | grep -E "^$top/" | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
done
for ns in /run/netns/cni-*; do
	[ -e "$ns" ] || continue
	ip netns delete "$(basename "$ns")" 2>/dev/null || true
done

# 3. Network: the distribution's links are named vcs*; kube-proxy's and the CNI's
#    iptables chains are KUBE-* and VCS-*. Remove exactly those, keep the rest.
for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^(vcs|kube-ipvs0)' || true); do
	say "deleting interface $l"
	ip link delete "$l" 2>/dev/null || true
done
for save in iptables-save ip6tables-save iptables-legacy-save ip6tables-legacy-save iptables-nft-save ip6tables-nft-save; do
	command -v "$save" >/dev/null 2>&1 || continue
	restore=$(echo "$save" | sed 's/-save$/-restore/')
	rules=$($save 2>/dev/null) || continue
	echo "$rules" | grep -Eq '(KUBE-|VCS-)' || continue
	say "removing KUBE-/VCS- iptables chains ($save)"
	echo "$rules" | grep -Ev '(KUBE-|VCS-)' | $restore 2>/dev/null || true
done

# 4. Files. A dataDir moved by the config is removed too, if it is ours.
rm -f /etc/systemd/system/vcluster-standalone.service /etc/systemd/system/node-agent.service
rm -rf /etc/systemd/system/vcluster-standalone.service.d /etc/systemd/system/node-agent.service.d
systemctl daemon-reload 2>/dev/null || true
systemctl reset-failed vcluster-standalone.service node-agent.service >/dev/null 2>&1 || true
owned_data_dirs=""
seen=" "
for p in $data_dirs; do
	case $seen in *" $p "*) continue ;; esac
	seen="$seen$p "
	[ -e "$p" ] || continue
	if [ -f "$p/$MARKER" ] && [ ! -L "$p/$MARKER" ]; then
		owned_data_dirs="$owned_data_dirs $p"
	elif [ -n "$(find "$p" ! -type d 2>/dev/null | head -n1)" ]; then # only dirs (mount points reset emptied): nothing to say
		say "leaving $p: vcluster-standalone did not make it (no $MARKER in it); remove it yourself if it is no longer needed"
	fi
done
for p in /etc/vcluster-standalone /etc/node-agent $owned_data_dirs \
	/var/lib/kubelet /var/lib/containerd /run/containerd /run/node-agent /var/log/pods /var/log/containers \
	/etc/cni/net.d/10-vcs.conflist /usr/local/bin/vcluster-standalone /usr/local/bin/node-agent; do
	[ -e "$p" ] || continue
	if mountpoint -q "$p" 2>/dev/null || findmnt -rn -o TARGET 2>/dev/null | grep -q "^$p/"; then
		# A mount we did not make (e.g. a dedicated disk) at or below $p:
		# empty around it, keep the mount point (and its lost+found).
		[ -z "$(find "$p" -mindepth 1 ! -name lost+found ! -path '*/lost+found/*' ! -type d)" ] && [ -z "$(find "$p" -mindepth 1 -type d -empty ! -name lost+found)" ] && continue
		say "emptying $p (it holds a mount point)"
		find "$p" -depth -mindepth 1 ! -name lost+found ! -path '*/lost+found/*' -exec rm -rf {} + 2>/dev/null || true
	else
		say "removing $p"
		rm -rf "$p"
	fi
done
rm -f "$0" /usr/local/bin/vcluster-standalone-uninstall.sh
say "done"
UNINSTALL
}

do_uninstall() {
	tmp=$(mktemp)
	write_uninstall_script "$tmp"
	sh "$tmp"
	rm -f "$tmp"
}

# ---- main --------------------------------------------------------------------

check_root
if [ "$MODE" = uninstall ]; then
	do_uninstall
	exit 0
fi
check_systemd
[ "$MODE" = node ] && check_node_flags
check_kernel

if [ "$MODE" = node ]; then
	do_install "$NODE_NAME"
	info "node installed; check it from the control plane: vcluster-standalone kubectl get nodes"
else
	do_install "$CP_NAME"
	[ "$START" -eq 0 ] && exit 0
	wait_ready "$CP_NAME" cp_ready
	start_local_node
	info "control plane installed; try: $CP_NAME kubectl get --raw /readyz"
	info "admin kubeconfig: /etc/vcluster-standalone/admin.kubeconfig; uninstall: $UNINSTALL_SCRIPT"
fi
