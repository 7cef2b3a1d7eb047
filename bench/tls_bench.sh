#!/usr/bin/env bash
# TLS SMTP benchmark: every contender sends the same prepared messages to
# the same sink (bench/sink.c, mp-sink) in the same run, on this machine,
# with the crypto bound (openssl speed) beside it. The sink runs in its own
# network namespace, reached over a veth from the contenders' namespace;
# with two or more cores the sink is pinned to CPU 0 and every contender
# (all of its processes) to CPU 1, so "per core" means one core.
#
# Order: build check, namespaces and veth, certificates (ECDSA P-256 and
# RSA-2048, each with its own CA), messages (bench/mkmsg.py, with the
# X-Bench-Digest the sink verifies), openssl speed, then for each scenario
# and each contender: a fresh sink, the contender, the sink's final
# stats; then bench/tls_report.py turns raw/ into results.md,
# results.json and the gnuplot PNGs.
#
# Scenarios: hs_full_{ecdsa,rsa} (one message per connection, sink
# without session cache or tickets), hs_resumed_{ecdsa,rsa} (same, sink
# resumes), msg_{1k,10k,100k} (100 messages per connection), sweep_N
# (N concurrent sessions, sink answers after 50 ms), bulk_1m (1 MB
# messages, Gbit/s).
# Contenders: dpdk (mp-dpsend, one worker lcore; skipped with a visible
# "not built yet" row while that binary does not exist), smtpsend
# (mp-smtpsend, the engine on kernel sockets, one thread), postfix (its
# smtp client, messages queued before the clock starts), nodemailer
# (pooled SMTP transport from npm).
#
# Environment:
#   MP_BUILD=DIR          build directory (default: <src>/build)
#   QUICK=1               small counts, sweep up to 1,000 (development)
#   MP_BENCH_OUT=DIR      results directory (default bench/results/<UTC time>)
#   BENCH_SCENARIOS=a,b   only these scenarios (names as above, or a prefix
#                         such as "hs_" or "sweep")
#   BENCH_CONTENDERS=a,b  only these contenders (default dpdk,smtpsend,postfix,nodemailer)
#   MP_DPSEND=FILE        mp-dpsend binary (default <build>/dataplane/mp-dpsend)
#   BENCH_NO_PIN=1        do not pin sink and contenders to CPUs
#   BENCH_PERF=0          skip the perf profile of mp-smtpsend (needs perf)
# Needs root (namespaces). Exit 0 when the run completed and the report was
# written, whatever the numbers; 1 on set-up errors.

set -u
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${MP_BUILD:-$SRC/build}
QUICK=${QUICK:-0}
OUT=${MP_BENCH_OUT:-$SRC/bench/results/$(date -u +%Y%m%d-%H%M%S)}
SCEN_FILTER=${BENCH_SCENARIOS:-}
CONTENDERS=${BENCH_CONTENDERS:-dpdk,smtpsend,postfix,nodemailer}
DPSEND=${MP_DPSEND:-$BUILD/dataplane/mp-dpsend}
SINK=$BUILD/bench/mp-sink
CPURUN=$BUILD/bench/mp-cpurun
SMTPSEND=$BUILD/dataplane/mp-smtpsend
NODEDIR=$SRC/bench/contenders/nodemailer

# shellcheck source=../tests/integration/lib.sh
. "$SRC/tests/integration/lib.sh"
# shellcheck source=contenders/postfix.sh
. "$SRC/bench/contenders/postfix.sh"
# Postfix's queues live on tmpfs: a disk's fsyncs would otherwise be
# what the Postfix rows measure.
PF_BASE=
trap 'pfb_cleanup; [ -n "$PF_BASE" ] && rm -rf "$PF_BASE"; mp_cleanup' EXIT

log() { echo "tls_bench: $*" >&2; }
die() { log "$*"; exit 1; }

mp_need_root
for b in "$SINK" "$CPURUN" "$SMTPSEND"; do
	[ -x "$b" ] || die "$b missing: run 'ninja -C $BUILD' first"
done
for t in openssl python3 gnuplot taskset; do
	command -v "$t" >/dev/null || die "$t missing: run scripts/install-deps --bench"
done
mkdir -p "$OUT/raw" || die "cannot create $OUT"
chmod 0711 "$MP_TMP"
PF_BASE=$(mktemp -d /dev/shm/mptb-pf.XXXXXX) || die "no tmpfs for the Postfix queue"
chmod 0711 "$PF_BASE"

# Thousands of sessions: descriptors for the sink and the contenders.
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ "${BENCH_NO_PIN:-0}" != 1 ] && [ "$(nproc)" -ge 2 ]; then
	SINK_CPU=0
	CLIENT_CPU=1
else
	SINK_CPU=
	CLIENT_CPU=
fi
pin() { # pin CPU CMD...: run CMD on that CPU (or unpinned)
	local c=$1
	shift
	if [ -n "$c" ]; then taskset -c "$c" "$@"; else "$@"; fi
}
# the same as a command prefix, for exec chains through ip netns exec
PIN_SINK=()
PIN_CLIENT=()
[ -n "$SINK_CPU" ] && PIN_SINK=(taskset -c "$SINK_CPU")
[ -n "$CLIENT_CPU" ] && PIN_CLIENT=(taskset -c "$CLIENT_CPU")
# rc_status EXIT: ok (0), timeout (2) or error
rc_status() {
	case $1 in 0) echo ok ;; 2) echo timeout ;; *) echo error ;; esac
}

# --- counts --------------------------------------------------------------
if [ "$QUICK" = 1 ]; then
	N_HS=300 N_1K=1000 N_10K=1000 N_100K=200 N_BULK=40
	S_HS=10 S_MSG=10 S_BULK=4
	SWEEP="1 10 100 1000"
	TMO=120
else
	N_HS=1000 N_1K=5000 N_10K=3000 N_100K=600 N_BULK=150
	S_HS=20 S_MSG=20 S_BULK=4
	SWEEP="1 10 100 1000 10000"
	TMO=240
fi
# Postfix runs one smtp process per session: beyond this, its concurrency
# is capped (an operator would not run 10,000 smtp processes either).
PF_MAX_SESSIONS=500
if [ "$QUICK" = 1 ]; then PF_MAX_COUNT=1000; else PF_MAX_COUNT=3000; fi
SINK_IP=198.19.50.2
CLIENT_IP=198.19.50.1
SINK_NAME=sink.bench.test
FROM=bench@client.bench.test
RCPT=rcpt@sink.bench.test

# --- namespaces ------------------------------------------------------------
CNS=mptb-c$MP_SUFFIX
SNS=mptb-s$MP_SUFFIX
mp_netns "$CNS"
mp_netns "$SNS"
ip link add "tbc$MP_SUFFIX" netns "$CNS" type veth peer name "tbs$MP_SUFFIX" netns "$SNS" ||
	die "cannot create veth"
ip -n "$CNS" addr add "$CLIENT_IP/24" dev "tbc$MP_SUFFIX"
ip -n "$SNS" addr add "$SINK_IP/24" dev "tbs$MP_SUFFIX"
ip -n "$CNS" link set "tbc$MP_SUFFIX" up
ip -n "$SNS" link set "tbs$MP_SUFFIX" up
# 10,000 sessions and thousands of short connections per scenario
ip netns exec "$CNS" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
ip netns exec "$SNS" sysctl -qw net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535
mp_wait_for 5 ip netns exec "$CNS" ping -c1 -W1 "$SINK_IP" || die "veth does not pass traffic"
# The DPDK contender's port: the veth rig (net_af_xdp, or net_af_packet
# where AF_XDP cannot attach; the line printed says which), its end in a
# namespace of its own, the other end in the sink's with the gateway
# address 198.19.51.1; made before any clock starts.
DNS=mptb-d$MP_SUFFIX
if [[ ,$CONTENDERS, == *,dpdk,* ]]; then
	mp_netns "$DNS"
	mp_rig_veth "$SNS" "tbd$MP_SUFFIX" "tbt$MP_SUFFIX" "$DNS"
	ip -n "$SNS" addr add 198.19.51.1/24 dev "tbt$MP_SUFFIX"
	DP_VDEV=$(mp_rig_vdev 0)
fi

# --- certificates and messages --------------------------------------------
CERTS=$MP_TMP/certs
mkdir -p "$CERTS"
mkcert() { # mkcert NAME KEYSPEC...: its own CA and a leaf for SINK_NAME
	local n=$1
	shift
	(
		set -e
		cd "$CERTS"
		openssl genpkey "$@" -out "$n-ca.key" 2>/dev/null
		openssl req -x509 -new -key "$n-ca.key" -out "$n-ca.pem" -days 30 -sha256 \
			-subj "/O=mailpump bench/CN=bench $n CA" \
			-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
		openssl genpkey "$@" -out "$n.key" 2>/dev/null
		openssl req -new -key "$n.key" -out "$n.csr" -subj "/O=mailpump bench/CN=$SINK_NAME" 2>/dev/null
		printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$SINK_NAME" >"$n.ext"
		openssl x509 -req -in "$n.csr" -CA "$n-ca.pem" -CAkey "$n-ca.key" -CAcreateserial \
			-days 30 -sha256 -extfile "$n.ext" -out "$n.pem" 2>/dev/null
		openssl verify -CAfile "$n-ca.pem" "$n.pem" >/dev/null
	) || die "cannot make $n certificates"
}
mkcert ecdsa -algorithm EC -pkeyopt ec_paramgen_curve:P-256
mkcert rsa -algorithm RSA -pkeyopt rsa_keygen_bits:2048
# One CA file for all contenders: both CAs.
cat "$CERTS/ecdsa-ca.pem" "$CERTS/rsa-ca.pem" >"$CERTS/ca.pem"
chmod 0644 "$CERTS"/*.pem
chmod 0755 "$CERTS"

MSGS=$MP_TMP/msg
mkdir -p "$MSGS"
for s in 1k:1024 10k:10240 100k:102400 1m:1048576; do
	python3 "$SRC/bench/mkmsg.py" "${s#*:}" "$MSGS/${s%%:*}.eml" "$FROM" "$RCPT" ||
		die "mkmsg.py failed"
done
chmod -R a+rX "$MSGS"

# --- Nodemailer from npm ---------------------------------------------------
NODE_OK=0
case ",$CONTENDERS," in *,nodemailer,*)
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		log "node/npm missing (scripts/install-deps --bench): nodemailer rows skipped"
	elif [ -f "$NODEDIR/node_modules/nodemailer/package.json" ] ||
		(cd "$NODEDIR" && timeout 300 npm install --no-audit --no-fund --loglevel=error >"$MP_TMP/npm.log" 2>&1); then
		NODE_OK=1
	else
		log "npm install nodemailer failed: nodemailer rows skipped"
		cat "$MP_TMP/npm.log" >&2
	fi
	;;
esac

# --- environment -----------------------------------------------------------
{
	echo "{"
	echo "\"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
	echo "\"host\": \"$(hostname)\","
	echo "\"kernel\": \"$(uname -r)\","
	echo "\"cpu_model\": \"$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)\","
	echo "\"cpu_mhz\": $(awk -F': ' '/^cpu MHz/ {print $2; exit}' /proc/cpuinfo),"
	echo "\"nproc\": $(nproc),"
	echo "\"loadavg_start\": \"$(cut -d' ' -f1-3 /proc/loadavg)\","
	echo "\"openssl\": \"$(openssl version)\","
	echo "\"postfix\": \"$(postconf -d -h mail_version 2>/dev/null)\","
	echo "\"node\": \"$(node --version 2>/dev/null)\","
	echo "\"nodemailer\": \"$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$NODEDIR/node_modules/nodemailer/package.json" 2>/dev/null)\","
	echo "\"quick\": $QUICK,"
	echo "\"sink_cpu\": \"${SINK_CPU:-any}\", \"client_cpu\": \"${CLIENT_CPU:-any}\","
	echo "\"git\": \"$(git -C "$SRC" describe --always --dirty 2>/dev/null)\""
	echo "}"
} >"$OUT/env.json"

# --- crypto bound: openssl speed on the contenders' core ---------------------
log "openssl speed (about 12 s)"
{
	pin "$CLIENT_CPU" openssl speed -seconds 2 -mr ecdhx25519 ecdsap256 rsa2048 2>/dev/null
	pin "$CLIENT_CPU" openssl speed -seconds 2 -mr -bytes 16384 -evp aes-128-gcm 2>/dev/null
	pin "$CLIENT_CPU" openssl speed -seconds 2 -mr -bytes 16384 -evp chacha20-poly1305 2>/dev/null
} | grep '^+F' >"$OUT/raw/openssl_speed.txt"
grep -q '^+F5:' "$OUT/raw/openssl_speed.txt" || die "openssl speed gave no X25519 figure"

# --- one measurement -------------------------------------------------------
# Scenario parameters for the run in progress.
SC='' SC_CERT='' SC_RESUME='' SC_LAT='' SC_MSG='' SC_N='' SC_S='' SC_MPC=''
RUN='' SINK_EXPECT=''

sink_start() {
	local args=(--listen "0.0.0.0:25" --threads 1 --name "$SINK_NAME"
		--cert "$CERTS/$SC_CERT.pem" --key "$CERTS/$SC_CERT.key"
		--stats "$RUN/sink.json" --expect "$SINK_EXPECT")
	[ "$SC_RESUME" = 1 ] || args+=(--no-resume)
	[ "$SC_LAT" = 0 ] || args+=(--latency "$SC_LAT")
	rm -f "$RUN/sink.json"
	ip netns exec "$SNS" bash -c 'ulimit -n 200000 2>/dev/null; exec "$@"' sink \
		"${PIN_SINK[@]}" \
		"$SINK" "${args[@]}" 2>"$RUN/sink.log" &
	SINK_PID=$!
	MP_PIDS+=("$SINK_PID")
	mp_wait_for 10 test -s "$RUN/sink.json" || die "mp-sink did not start: $(cat "$RUN/sink.log")"
}

sink_stop() {
	kill -TERM "$SINK_PID" 2>/dev/null
	wait "$SINK_PID" 2>/dev/null
}

sink_complete() { grep -q '"complete":true' "$RUN/sink.json" 2>/dev/null; }

# meta KEY=VALUE...: the run's description, merged by tls_report.py
meta() {
	python3 - "$RUN/meta.json" "$@" <<'EOF'
import json, sys
d = {}
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    try:
        d[k] = json.loads(v)
    except ValueError:
        d[k] = v
json.dump(d, open(sys.argv[1], "w"))
EOF
}

run_meta() { # common fields + contender-specific ones
	meta scenario="$SC" contender="$1" cert="$SC_CERT" resume="$SC_RESUME" \
		latency_ms="$SC_LAT" msg="$SC_MSG" msg_bytes="$(stat -c %s "$MSGS/$SC_MSG.eml")" \
		count="$SC_N" sessions="$2" msgs_per_conn="$SC_MPC" "${@:3}"
}

c_smtpsend() {
	ip netns exec "$CNS" bash -c 'ulimit -n 200000 2>/dev/null; exec "$@"' smtpsend \
		"${PIN_CLIENT[@]}" \
		"$CPURUN" "$RUN/cpu.json" -- "$SMTPSEND" --server "$SINK_NAME:25" --connect "$SINK_IP" \
		--from "$FROM" --helo client.bench.test --rcpt "$RCPT" --message "$MSGS/$SC_MSG.eml" --count "$SC_N" \
		--sessions "$SC_S" --msgs-per-conn "$SC_MPC" --tls verify --ca "$CERTS/ca.pem" \
		--quiet --timeout "$TMO" >"$RUN/out.json" 2>"$RUN/err.log"
	local rc=$?
	run_meta smtpsend "$SC_S" exit="$rc" status="$(rc_status $rc)"
}

c_nodemailer() {
	if [ "$NODE_OK" != 1 ]; then
		run_meta nodemailer "$SC_S" status="not installed" note="node/npm or nodemailer missing"
		return
	fi
	ip netns exec "$CNS" bash -c 'ulimit -n 200000 2>/dev/null; exec "$@"' nodemailer \
		"${PIN_CLIENT[@]}" \
		"$CPURUN" "$RUN/cpu.json" -- node --max-old-space-size=4096 "$NODEDIR/send.js" \
		--host "$SINK_IP" --port 25 --servername "$SINK_NAME" --ca "$CERTS/ca.pem" \
		--message "$MSGS/$SC_MSG.eml" --count "$SC_N" --sessions "$SC_S" \
		--msgs-per-conn "$SC_MPC" --from "$FROM" --rcpt "$RCPT" --timeout "$TMO" \
		>"$RUN/out.json" 2>"$RUN/err.log"
	local rc=$?
	run_meta nodemailer "$SC_S" exit="$rc" status="$(rc_status $rc)"
}

c_postfix() {
	local d=$PF_BASE/$SC s=$SC_S reuse=1 before after t0 rss=0 st status=ok note=""
	[ "$SC_MPC" = 1 ] && reuse=0
	local n_saved=$SC_N
	if [ "$s" -gt "$PF_MAX_SESSIONS" ]; then
		s=$PF_MAX_SESSIONS
		note="concurrency capped at $PF_MAX_SESSIONS smtp processes;"
	fi
	if [ "$SC_N" -gt "$PF_MAX_COUNT" ]; then
		# queueing beforehand costs Postfix time outside the clock; a
		# rate needs only enough messages for the steady state
		SC_N=$PF_MAX_COUNT
		note="$note $PF_MAX_COUNT messages (not $n_saved)"
	fi
	rm -rf "$d"
	pfb_start "$CNS" "$d" "$s" "$reuse" "$SINK_IP" "$CERTS/ca.pem" "$CLIENT_CPU" || {
		run_meta postfix "$s" status=error note="postfix did not start"
		return
	}
	local ti0 ti1
	ti0=$(date +%s.%N)
	PFB_NS=$CNS PFB_SMTPSEND=$SMTPSEND pfb_inject "$d" "$SC_N" "$MSGS/$SC_MSG.eml" "$FROM" "$RCPT" || log "postfix: sendmail failed"
	pfb_wait_held "$d" "$SC_N" 300 || {
		run_meta postfix "$s" status=error note="messages did not reach the queue"
		pfb_stop "$d"
		return
	}
	ti1=$(date +%s.%N)
	before=$(pfb_stat "$d")
	t0=$(date +%s.%N)
	pfb_release "$d"
	local i=0 lim=$((TMO * 10))
	while ! sink_complete && [ $i -lt $lim ]; do
		sleep 0.1
		i=$((i + 1))
		if [ $((i % 10)) = 5 ]; then
			read -r _ st _ <<<"$(pfb_stat "$d")"
			[ "${st:-0}" -gt "$rss" ] && rss=$st
		fi
	done
	sink_complete || status=timeout
	after=$(pfb_stat "$d")
	local a b hz
	read -r b _ <<<"$before"
	read -r a _ <<<"$after"
	hz=$(getconf CLK_TCK)
	run_meta postfix "$s" status="$status" note="$note" start_ts="$t0" \
		cpu_s="$(python3 -c "print(($a - $b) / $hz)")" rss_kib="$rss" \
		inject_s="$(python3 -c "print($ti1 - $ti0)")" reuse="$reuse"
	cp "$d/maillog" "$RUN/maillog" 2>/dev/null
	pfb_stop "$d"
	rm -rf "$d"
	SC_N=$n_saved
}

# DPDK slot: mailpump on DPDK, one worker lcore (mp-dpsend, built by
# another branch: same CLI and JSON as mp-smtpsend plus the dataplane
# options). It runs in its own namespace on the rig's veth (above), as
# 198.19.51.2/24 with the sink namespace's 198.19.51.1 as its gateway.
# Until the binary exists the row says so and nothing is measured.
c_dpdk() {
	if [ ! -x "$DPSEND" ]; then
		run_meta dpdk "$SC_S" status="not built yet" note="$DPSEND does not exist"
		return
	fi
	ip netns exec "$DNS" "$MP_RIG_EXEC" "$CPURUN" "$RUN/cpu.json" -- "$DPSEND" \
		--vdev "$DP_VDEV" --ip 198.19.51.2/24 --gw 198.19.51.1 \
		--lcores "${SINK_CPU:-0},${CLIENT_CPU:-1}" --file-prefix "mptb$MP_SUFFIX" \
		--server "$SINK_NAME:25" --connect "$SINK_IP" \
		--from "$FROM" --helo client.bench.test --rcpt "$RCPT" --message "$MSGS/$SC_MSG.eml" --count "$SC_N" \
		--sessions "$SC_S" --msgs-per-conn "$SC_MPC" --tls verify --ca "$CERTS/ca.pem" \
		--quiet --timeout "$TMO" >"$RUN/out.json" 2>"$RUN/err.log"
	local rc=$?
	run_meta dpdk "$SC_S" exit="$rc" status="$(rc_status $rc)" note="$MP_RIG_PMD on a veth"
}

want_scenario() {
	local f
	[ -z "$SCEN_FILTER" ] && return 0
	for f in ${SCEN_FILTER//,/ }; do
		case $1 in "$f"*) return 0 ;; esac
	done
	return 1
}

# scenario NAME CERT RESUME LATENCY_MS MSG COUNT SESSIONS MSGS_PER_CONN
scenario() {
	SC=$1 SC_CERT=$2 SC_RESUME=$3 SC_LAT=$4 SC_MSG=$5 SC_N=$6 SC_S=$7 SC_MPC=$8
	want_scenario "$SC" || return 0
	local c
	for c in ${CONTENDERS//,/ }; do
		RUN=$OUT/raw/$SC/$c
		mkdir -p "$RUN"
		if [ "$c" = dpdk ] && [ ! -x "$DPSEND" ]; then
			c_dpdk
			continue
		fi
		log "$SC: $c ($SC_N x $SC_MSG, $SC_S sessions, $SC_MPC/conn)"
		SINK_EXPECT=$SC_N
		[ "$c" = postfix ] && [ "$SC_N" -gt "$PF_MAX_COUNT" ] && SINK_EXPECT=$PF_MAX_COUNT
		sink_start
		"c_$c"
		sink_stop
		python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("tls_bench:   ok=%d corrupt=%d full=%d resumed=%d" % (s["messages_ok"], s["messages_corrupt"], s["handshakes_full"], s["handshakes_resumed"]))' "$RUN/sink.json" >&2
	done
}

T_START=$(date +%s)
scenario hs_full_ecdsa ecdsa 0 0 1k "$N_HS" "$S_HS" 1
scenario hs_full_rsa rsa 0 0 1k "$N_HS" "$S_HS" 1
scenario hs_resumed_ecdsa ecdsa 1 0 1k "$N_HS" "$S_HS" 1
scenario hs_resumed_rsa rsa 1 0 1k "$N_HS" "$S_HS" 1
scenario msg_1k ecdsa 1 0 1k "$N_1K" "$S_MSG" 100
scenario msg_10k ecdsa 1 0 10k "$N_10K" "$S_MSG" 100
scenario msg_100k ecdsa 1 0 100k "$N_100K" "$S_MSG" 100
for n in $SWEEP; do
	# about 3 messages per session (2 at 10,000), at least 30
	cnt=$((n * 3))
	[ $cnt -lt 30 ] && cnt=30
	[ $cnt -gt 20000 ] && cnt=20000
	scenario "sweep_$n" ecdsa 1 50 1k "$cnt" "$n" 100
done
scenario bulk_1m ecdsa 1 0 1m "$N_BULK" "$S_BULK" 100
T_END=$(date +%s)

# Where mp-smtpsend's cycles go: a separate, unmeasured run under perf
# (perf's own overhead stays out of the table). BENCH_PERF=0 skips it.
perf_profile() { # perf_profile SCENARIO CERT RESUME MSG COUNT SESSIONS MPC
	SC=perf_$1 SC_CERT=$2 SC_RESUME=$3 SC_LAT=0 SC_MSG=$4 SC_N=$5 SC_S=$6 SC_MPC=$7
	RUN=$MP_TMP/perf-$1
	SINK_EXPECT=$SC_N
	mkdir -p "$RUN"
	sink_start
	ip netns exec "$CNS" "${PIN_CLIENT[@]}" \
		perf record -q -g -o "$RUN/perf.data" -- "$SMTPSEND" --server "$SINK_NAME:25" \
		--connect "$SINK_IP" --from "$FROM" --helo client.bench.test --rcpt "$RCPT" --message "$MSGS/$SC_MSG.eml" \
		--count "$SC_N" --sessions "$SC_S" --msgs-per-conn "$SC_MPC" --tls verify \
		--ca "$CERTS/ca.pem" --quiet --timeout "$TMO" >/dev/null 2>"$RUN/perf.log"
	sink_stop
	{
		echo "# perf: mp-smtpsend, $1 ($SC_N x $SC_MSG, $SC_S sessions, $SC_MPC per connection)"
		echo "# share of samples per shared object:"
		perf report -i "$RUN/perf.data" --no-children --sort dso --stdio 2>/dev/null |
			grep -E '^ +[0-9.]+%' | head -8
		echo "# top symbols (self):"
		perf report -i "$RUN/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
			grep -E '^ +[0-9.]+%' | head -15
	} >"$OUT/perf_$1.txt"
}
if [ "${BENCH_PERF:-1}" != 0 ] && command -v perf >/dev/null; then
	want_scenario hs_full_ecdsa && perf_profile hs_full_ecdsa ecdsa 0 1k "$N_HS" "$S_HS" 1
	want_scenario msg_10k && perf_profile msg_10k ecdsa 1 10k "$N_10K" "$S_MSG" 100
fi
echo "{\"seconds\": $((T_END - T_START)), \"loadavg_end\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >"$OUT/raw/run.json"

python3 "$SRC/bench/tls_report.py" "$OUT" || die "report failed"
log "results in $OUT (results.md, results.json, sweep.png, handshakes.png)"
