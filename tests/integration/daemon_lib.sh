# shellcheck shell=bash disable=SC2034 # variables are the callers'
# Rig for the mailpump daemon tests (sourced after lib.sh and postfix.sh).
# Addresses: 198.19.60.0/24 only, split in three so that the Postfix
# namespace is never on a daemon's subnet and everything goes through a
# router:
#
#   daemon A: veth $DM_DP_A  198.19.60.2/26   gw 198.19.60.1 on $DM_TAP_A (router)
#   daemon B: veth $DM_DP_B  198.19.60.66/26  gw 198.19.60.65 on $DM_TAP_B (router)
#   router  <-veth->  Postfix netns 198.19.60.128/25 (router .129,
#                     listeners .140 good STARTTLS, .141 no STARTTLS,
#                     .142 TLS 1.0 only, .143 slow: see dm_slow_server)
#
# Each daemon's port is the veth rig of lib.sh (mp_rig_veth: net_af_xdp,
# or net_af_packet where AF_XDP cannot attach): both ends of each pair are
# in the router namespace ($DM_RNS), the daemon attaches to $DM_DP_x (no
# address, no forwarding), the gateway address is on $DM_TAP_x (the names
# are the old taps'). The router forwards (ip_forward=1) and holds
# redis-server on its loopback; the daemons run in it (for Redis and DNS)
# but their SMTP traffic only ever leaves through their DPDK port.
#
#   dm_setup                 namespaces, the daemons' veths, the Postfix
#                            veth, routes, Postfix (unless
#                            DM_NO_POSTFIX is set), Redis
#   dm_conf FILE [KEY=V...]  write a daemon configuration (extra lines appended)
#   dm_start NAME TAP IP GW CONF [ARGS...]   a daemon in the background: DM_PID
#   dm_redis_start / dm_redis_stop  (same port, AOF on: a restart loses nothing)
#   R ARGS...                redis-cli against the test's Redis
# The checks at the end (every recipient in exactly one final state, counts
# agreeing, maildirs agreeing with Redis) are mpcheck.py's, run via mp_py.
DM_RNS=mpdr$MP_SUFFIX
DM_SNS=mpds$MP_SUFFIX
DM_TAP_A=mpta$MP_SUFFIX
DM_TAP_B=mptb$MP_SUFFIX
DM_DP_A=mpxa$MP_SUFFIX
DM_DP_B=mpxb$MP_SUFFIX
DM_D=$MP_TMP/pf
DM_HUGE=${MP_DP_HUGE:-auto}

R() { ip netns exec "$DM_RNS" redis-cli -p "$DM_RPORT" --raw "$@"; }

dm_redis_start() {
	ip netns exec "$DM_RNS" redis-server --port "$DM_RPORT" --bind 127.0.0.1 --save '' \
		--appendonly yes --appendfsync always --dir "$MP_TMP/redis" \
		>>"$MP_TMP/redis.log" 2>&1 &
	DM_REDIS_PID=$!
	MP_PIDS+=("$DM_REDIS_PID")
	mp_wait_for 10 R ping || mp_fail "redis did not start"
}

dm_redis_stop() {
	kill -TERM "$DM_REDIS_PID"
	for _ in $(seq 100); do kill -0 "$DM_REDIS_PID" 2>/dev/null || break; sleep 0.1; done
	wait "$DM_REDIS_PID" 2>/dev/null
}

dm_setup() {
	mp_netns "$DM_RNS"
	mp_netns "$DM_SNS"
	ip netns exec "$DM_RNS" sysctl -qw net.ipv4.ip_forward=1
	# after ip_forward=1: the rig turns forwarding off on the daemon's end
	mp_rig_veth "$DM_RNS" "$DM_DP_A" "$DM_TAP_A"
	ip -n "$DM_RNS" addr add 198.19.60.1/26 dev "$DM_TAP_A"
	mp_rig_veth "$DM_RNS" "$DM_DP_B" "$DM_TAP_B"
	ip -n "$DM_RNS" addr add 198.19.60.65/26 dev "$DM_TAP_B"
	PF_CLIENT_IF=mprv$MP_SUFFIX
	PF_SERVER_IF=mpsv$MP_SUFFIX
	ip link add "$PF_CLIENT_IF" netns "$DM_RNS" type veth peer name "$PF_SERVER_IF" \
		netns "$DM_SNS" || mp_fail "veth"
	ip -n "$DM_RNS" addr add 198.19.60.129/25 dev "$PF_CLIENT_IF"
	ip -n "$DM_RNS" link set "$PF_CLIENT_IF" up
	ip -n "$DM_SNS" link set "$PF_SERVER_IF" up
	for a in 140 141 142 143; do
		ip -n "$DM_SNS" addr add "198.19.60.$a/25" dev "$PF_SERVER_IF"
	done
	ip -n "$DM_SNS" route add default via 198.19.60.129
	pf_make_certs "$DM_D/certs" || mp_fail "certificates"
	DM_CA=$DM_D/certs/ca.pem
	if [ -z "${DM_NO_POSTFIX:-}" ]; then
		pf_start "$DM_SNS" "$DM_D" \
			"ip=198.19.60.140;name=mx1.pf.test;tls=good" \
			"ip=198.19.60.141;name=plain.pf.test;tls=none" \
			"ip=198.19.60.142;name=legacy.pf.test;tls=tls10" || mp_fail "pf_start"
		DM_MAILDIR=$(pf_maildir_root "$DM_D")
	fi
	mkdir -p "$MP_TMP/redis"
	DM_RPORT=$(ip netns exec "$DM_RNS" python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	dm_redis_start
	DM_URL=redis://127.0.0.1:$DM_RPORT
}

# dm_conf FILE [LINE...]: the daemon configuration every test starts from;
# extra lines (e.g. a [routes] section) are appended.
dm_conf() {
	local f=$1
	shift
	cat >"$f" <<EOF
# written by daemon_lib.sh
[redis]
url = $DM_URL
claim_min_idle = 4s

[daemon]
grace = 20s
log_level = info

[dataplane]
hugepages = $DM_HUGE
garp = 1
mbufs = 16383

[workers]
max_sessions = 256

[tls]
ca_file = $DM_CA
min_version = 1.2

[smtp]
helo = client.pf.test
connect_timeout = 5s
command_timeout = 60s

[shaping]
max_conns = 8
msgs_per_conn = 100

[retry]
base = 1s
cap = 2s
jitter_pct = 0
EOF
	for l in "$@"; do echo "$l" >>"$f"; done
}

# dm_start NAME TAP IP/LEN GW CONF [ARGS...]: run a daemon on the veth
# whose gateway end is TAP ($DM_TAP_A or $DM_TAP_B); DM_PID.
dm_start() {
	local name=$1 tap=$2 ip=$3 gw=$4 conf=$5 dpif
	shift 5
	case $tap in
	"$DM_TAP_A") dpif=$DM_DP_A ;;
	"$DM_TAP_B") dpif=$DM_DP_B ;;
	*) mp_fail "dm_start: no veth with gateway end $tap" ;;
	esac
	ip netns exec "$DM_RNS" "$MP_RIG_EXEC" "$DM_MAILPUMP" --config "$conf" \
		--vdev "${MP_RIG_PMD}_$name$MP_SUFFIX,iface=$dpif" --ip "$ip" --gw "$gw" \
		--file-prefix "mpd$name$MP_SUFFIX" --consumer "$name" \
		--daemon-stats "$MP_TMP/$name.stats.json" "$@" \
		>"$MP_TMP/$name.out" 2>"$MP_TMP/$name.log" &
	DM_PID=$!
	MP_PIDS+=("$DM_PID")
}

# dm_wait_exit PID SECONDS: 0 with $DM_RC set once it exited.
dm_wait_exit() {
	for _ in $(seq $(($2 * 10))); do
		if ! kill -0 "$1" 2>/dev/null; then
			wait "$1"
			DM_RC=$?
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# dm_counts CAMPAIGN: "queued deferred delivered bounced failed cancelled dup"
dm_counts() {
	local c
	c=$(R hmget "mp:campaign:$1:counts" queued deferred delivered bounced failed cancelled \
		dup_deliveries | tr '\n' ' ')
	echo "$c"
}

# dm_wait_done CAMPAIGN SECONDS
dm_wait_done() {
	for _ in $(seq $(($2 * 2))); do
		[ "$(R hget "mp:campaign:$1" state)" = "done" ] && return 0
		sleep 0.5
	done
	return 1
}
