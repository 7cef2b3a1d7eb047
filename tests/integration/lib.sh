# Shared helpers for integration tests and scripts/demo (sourced). Every
# name a test creates carries a per-run suffix; everything started is
# stopped by PID and every namespace removed on any exit. MP_TMP_PREFIX
# names the temporary directory (default mp-test); MP_KEEP_TMP=1 leaves
# it in place on exit (everything else is still stopped and removed).

set -u
MP_SUFFIX=${MP_SUFFIX:-$$}
MP_TMP=$(mktemp -d "/tmp/${MP_TMP_PREFIX:-mp-test}.XXXXXX")
MP_PIDS=()
MP_NETNS=()
MP_NFT=()	# nftables tables (inet family) to delete on exit
MP_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# mp_alive PID: the process exists and is not a zombie (a child that
# exited but was not reaped yet: bash reaps only at its next wait).
mp_alive() {
	local st
	# the state follows the command name, which may hold spaces and ")"
	st=$(sed -n 's/.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

mp_cleanup() {
	local pid ns t l
	for pid in "${MP_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${MP_PIDS[@]}"; do
		for _ in $(seq 50); do
			mp_alive "$pid" || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null
	done
	for l in "${MP_LINKS[@]}"; do
		ip -n "${l%%:*}" link del "${l#*:}" 2>/dev/null
	done
	for ns in "${MP_NETNS[@]}"; do
		ip netns del "$ns" 2>/dev/null
	done
	for t in "${MP_NFT[@]}"; do
		nft delete table inet "$t" 2>/dev/null
	done
	[ "${MP_KEEP_TMP:-0}" = 1 ] || rm -rf "$MP_TMP"
}
trap mp_cleanup EXIT
trap 'exit 130' INT TERM

# mp_stop_pidfile PIDFILE [SECONDS]: stop the process group led by the
# PID in PIDFILE (a session leader, started with setsid): TERM to the
# leader, up to SECONDS (default 10) for the whole group to go, then KILL
# to what is left of it. The file is removed first: a second call, or one
# after the file is gone, does nothing.
mp_stop_pidfile() {
	local f=$1 t=${2:-10} pid
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	rm -f "$f"
	# never "kill -- -0" or "-1": our own group, or every process
	[[ $pid =~ ^[0-9]+$ ]] && [ "$pid" -gt 1 ] || return 0
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq $((t * 10))); do
		kill -0 -- "-$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL -- "-$pid" 2>/dev/null
	return 0
}

# mp_loss_on NS IF PORTS PCT NAME: PCT% random loss each way for TCP ports
# PORTS ("25" or "{ 7, 19 }") of the peer in netns NS, on its interface IF,
# the way loss on the wire would look to it. What arrives is dropped at the
# input hook. What the peer sends leaves its stack without error and is
# readdressed at IF's egress hook to a MAC nobody has, so our dataplane
# drops it (drop reason eth_dst). A drop at the output hook would not do:
# the peer's stack sees it as a local send error, and Linux drops the
# request socket when a SYN-ACK retransmission fails, then resets our next
# segment, a failure no network causes. nft tables NAME (inet) and
# NAME_out (netdev); mp_loss_off NS NAME removes them.
mp_loss_on() {
	local ns=$1 ifc=$2 ports=$3 pct=$4 name=$5
	ip netns exec "$ns" nft -f - <<NFT || return 1
table inet $name {
	chain in { type filter hook input priority 0; iifname "$ifc" tcp dport $ports numgen random mod 100 < $pct drop; }
}
table netdev ${name}_out {
	chain egress { type filter hook egress device "$ifc" priority 0; tcp sport $ports numgen random mod 100 < $pct ether daddr set 02:00:00:00:00:01; }
}
NFT
}

mp_loss_off() {
	ip netns exec "$1" nft delete table inet "$2"
	ip netns exec "$1" nft delete table netdev "$2_out"
}

mp_fail() {
	echo "FAIL: $*" >&2
	for f in "$MP_TMP"/*.log; do
		[ -f "$f" ] && { echo "--- $f"; tail -30 "$f"; } >&2
	done
	# again last: meson shows only the end of a long log
	echo "FAIL: $*" >&2
	exit 1
}

mp_need_root() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "SKIP: needs root" >&2
		exit 77
	fi
}

# mp_need PROGRAM...: skip the test (77) unless each program is installed.
mp_need() {
	local p
	for p in "$@"; do
		command -v "$p" >/dev/null || { echo "SKIP: $p not installed" >&2; exit 77; }
	done
}

# mp_netns NAME: a fresh namespace with loopback up and IPv6 off (so the
# kernel sends no router solicitations that would blur drop counters).
mp_netns() {
	ip netns add "$1" || mp_fail "cannot create netns $1"
	MP_NETNS+=("$1")
	ip netns exec "$1" ip link set lo up
	ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
	ip netns exec "$1" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
}

# mp_wait_for SECONDS COMMAND...: poll until the command succeeds.
mp_wait_for() {
	local t=$1
	shift
	for _ in $(seq $((t * 10))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# mp_free_port: a TCP port free on 127.0.0.1 just now.
mp_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# mp_redis_sink RPORT SPORT BACKLOG: redis-server (no persistence) on
# 127.0.0.1:RPORT and Postfix's smtp-sink on 127.0.0.1:SPORT dumping each
# message to its own file in $MP_TMP/sink/; both stopped at exit. Fails
# the test unless both answer within 10 s; skips it (77) without them.
mp_redis_sink() {
	mp_need redis-server
	[ -x /usr/sbin/smtp-sink ] || { echo "SKIP: smtp-sink not installed" >&2; exit 77; }
	redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no \
		--dir "$MP_TMP" >"$MP_TMP/redis.log" 2>&1 &
	MP_PIDS+=($!)
	chmod 0711 "$MP_TMP"
	mkdir -p "$MP_TMP/sink"
	chmod 0777 "$MP_TMP/sink"
	/usr/sbin/smtp-sink -u nobody -d "$MP_TMP/sink/m." "127.0.0.1:$2" "$3" \
		>"$MP_TMP/sink.log" 2>&1 &
	MP_PIDS+=($!)
	mp_wait_for 10 redis-cli -p "$1" ping || mp_fail "redis did not start"
	mp_wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$2" || mp_fail "smtp-sink did not start"
	chmod 0777 "$MP_TMP/sink"
}

# mp_json FILE EXPR: evaluate a Python expression over the JSON object j.
mp_json() {
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# mp_py ARGS...: python3 with this folder on its module path, so the
# tests' Python imports mpcheck (no bytecode written into the tree).
mp_py() {
	PYTHONPATH=$MP_LIB_DIR${PYTHONPATH:+:$PYTHONPATH} PYTHONDONTWRITEBYTECODE=1 python3 "$@"
}

# mp_cpu_ticks PID: user+system clock ticks used so far.
mp_cpu_ticks() {
	awk '{print $14 + $15}' "/proc/$1/stat"
}

# The veth rig with net_af_xdp / net_af_packet: mp_rig_veth, mp_rig_vdev,
# $MP_RIG_EXEC.
. "$MP_LIB_DIR/rig.sh"
