#!/usr/bin/env bash
# The daemon over IPv6: mailpump with [daemon] transport = ksock (kernel
# sockets, one thread) against the rig of ctl_ipv6_deliver.sh, all in one
# network namespace the test creates with IPv6 on: dnsmasq, smtp-sink on
# [fd00:6d70::25], redis-server; a campaign submitted with mailpumpctl.
# What it proves:
#  - a bad [smtp] source6, a bad [smtp] source and an unbracketed IPv6
#    route are each refused with exit 2 and one line naming file:line,
#    section and key (the configuration accepts what mp-deliver does);
#  - v6.test, whose MX host has ONLY an AAAA record: every recipient
#    delivered exactly once over IPv6, "ip":"fd00:6d70::25" and the MX
#    host in its record, one message each at the IPv6 sink;
#  - rt6.test, unknown to DNS, through [routes] rt6.test =
#    [fd00:6d70::25]:2526: every recipient at that sink, its "ip" the
#    route's address, no DNS query for it;
#  - dual.test (A and AAAA): IPv4 as before;
#  - [smtp] source6 / source: every IPv6 connection comes from
#    fd00:6d70::26 and every IPv4 one from 127.0.0.2 (X-Client-Addr);
#  - the daemon in ksock mode needs neither EAL nor hugepages: the
#    configuration names an EAL file prefix, and no DPDK runtime directory
#    for it ever appears, no hugepage is mapped, EAL logs nothing;
#  - the campaign is done, counts agree, nothing left to retry, the
#    daemon exits 0 on its own (until_idle) and its counters say ksock.
# usage: daemon_ipv6_ksock.sh MAILPUMP MAILPUMPCTL
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ipv6_lib.sh"
mp_need_root
mp_need redis-server dnsmasq
[ -x /usr/sbin/smtp-sink ] || { echo "SKIP: smtp-sink not installed" >&2; exit 77; }
[ -d /proc/sys/net/ipv6 ] || { echo "SKIP: no IPv6 in this kernel" >&2; exit 77; }
MAILPUMP=$1
CTL=$2
NS=mp6k$MP_SUFFIX
PREFIX=mp6keal$MP_SUFFIX
V6=fd00:6d70::25
SRC6=fd00:6d70::26
SRC4=127.0.0.2
N6=40
ND=10
NR=12

v6_rig_start

# conf FILE SOURCE6 SOURCE ROUTE: the daemon's configuration. A
# [dataplane] section that EAL would use if it were started: its file
# prefix is looked for afterwards.
conf() {
	cat >"$1" <<EOF
[redis]
url = $URL
claim_min_idle = 10s

[daemon]
transport = ksock
until_idle = yes
timeout = 90s
log_level = debug
stats_file = $MP_TMP/stats.json

[dataplane]
file_prefix = $PREFIX
hugepages = yes

[workers]
max_sessions = 64

[smtp]
helo = client.sender.test
connect_timeout = 5s
source6 = $2
source = $3

[shaping]
max_conns = 2
msgs_per_conn = 15

[dns]
servers = 127.0.0.1:5300

[routes]
rt6.test = $4
EOF
}

# --- bad values: exit 2, one line naming file:line, section and key -----
bad() {
	local what=$1 want=$2 line rc
	shift 2
	conf "$MP_TMP/bad.conf" "$@"
	X "$MAILPUMP" --config "$MP_TMP/bad.conf" >"$MP_TMP/bad.out" 2>"$MP_TMP/bad.err"
	rc=$?
	[ $rc -eq 2 ] || mp_fail "$what: exit $rc, want 2: $(cat "$MP_TMP/bad.err")"
	[ "$(wc -l <"$MP_TMP/bad.err")" -eq 1 ] || mp_fail "$what: $(cat "$MP_TMP/bad.err")"
	grep -qF "$want" "$MP_TMP/bad.err" || mp_fail "$what: want \"$want\": $(cat "$MP_TMP/bad.err")"
}
l6=$(grep -n '^source6 = ' <(conf /dev/stdout x x x) | cut -d: -f1)
l4=$(grep -n '^source = ' <(conf /dev/stdout x x x) | cut -d: -f1)
bad "IPv4 source6" "bad.conf:$l6: [smtp] source6: \"$SRC4\" is not an IPv6 address" \
	"$SRC4" "$SRC4" "[$V6]:2526"
bad "bracketed source6" "bad.conf:$l6: [smtp] source6: \"[$SRC6]\" is not an IPv6 address" \
	"[$SRC6]" "$SRC4" "[$V6]:2526"
bad "multicast source6" "bad.conf:$l6: [smtp] source6: \"ff02::1\" is not a usable source" \
	"ff02::1" "$SRC4" "[$V6]:2526"
bad "IPv6 source" "bad.conf:$l4: [smtp] source: \"$SRC6\" is not an IPv4 address" \
	"$SRC6" "$SRC6" "[$V6]:2526"
bad "unbracketed IPv6 route" "[routes] rt6.test=$V6:2526: route \"rt6.test=$V6:2526\": an IPv6 address needs brackets" \
	"$SRC6" "$SRC4" "$V6:2526"
bad "bad IPv6 route" "route \"rt6.test=[fd00::zz]:2526\": bad IPv6 address \"fd00::zz\"" \
	"$SRC6" "$SRC4" "[fd00::zz]:2526"
# a source this host does not have: refused at start, named
conf "$MP_TMP/nolocal.conf" fd00:6d70::99 "$SRC4" "[$V6]:2526"
X "$MAILPUMP" --config "$MP_TMP/nolocal.conf" --consumer nolocal >"$MP_TMP/nolocal.out" \
	2>"$MP_TMP/nolocal.err"
rc=$?
[ $rc -ne 0 ] && grep -qF "source address fd00:6d70::99: Cannot assign requested address" \
	"$MP_TMP/nolocal.err" || mp_fail "source6 not on this host: exit $rc: $(cat "$MP_TMP/nolocal.err")"

# --- the campaign ---------------------------------------------------------
{
	echo "email,first"
	for i in $(seq 1 $N6); do echo "u$i@v6.test,F$i"; done
	for i in $(seq 1 $ND); do echo "d$i@dual.test,D$i"; done
	for i in $(seq 1 $NR); do echo "r$i@rt6.test,R$i"; done
} >"$MP_TMP/rcpts.csv"
printf 'Hello {{first}},\n\nover IPv6 from the daemon.\n' >"$MP_TMP/body.txt"
X "$CTL" --redis "$URL" submit --id six --from news@sender.test --subject 'Hi {{first}}' \
	--text "$MP_TMP/body.txt" --quiet "$MP_TMP/rcpts.csv" >"$MP_TMP/submit.log" 2>&1 ||
	mp_fail "submit"

conf "$MP_TMP/mailpump.conf" "$SRC6" "$SRC4" "[$V6]:2526"
X "$MAILPUMP" --config "$MP_TMP/mailpump.conf" --check-config >"$MP_TMP/check.out" 2>&1 ||
	mp_fail "check-config: $(cat "$MP_TMP/check.out")"
ip netns exec "$NS" timeout 120 "$MAILPUMP" --config "$MP_TMP/mailpump.conf" --consumer six \
	>"$MP_TMP/daemon.out" 2>"$MP_TMP/daemon.log" &
DPID=$!
MP_PIDS+=("$DPID")
# while it runs: no hugepage mapped, no EAL runtime directory
maps_bad=0
for _ in $(seq 50); do
	mp_alive "$DPID" || break
	for p in $(pgrep -P "$DPID") "$DPID"; do
		grep -qE 'rtemap_|hugepages|/dev/hugepages' "/proc/$p/maps" 2>/dev/null && maps_bad=1
	done
	sleep 0.1
done
wait "$DPID"
rc=$?
[ $rc -eq 0 ] || mp_fail "mailpump exited $rc"
[ $maps_bad -eq 0 ] || mp_fail "the ksock daemon mapped hugepages"
for d in "/var/run/dpdk/$PREFIX" "/run/dpdk/$PREFIX" "${XDG_RUNTIME_DIR:-/nonexistent}/dpdk/$PREFIX"; do
	[ ! -e "$d" ] || mp_fail "EAL runtime directory $d exists: EAL was started"
done
! grep -q "EAL:" "$MP_TMP/daemon.log" "$MP_TMP/daemon.out" || mp_fail "EAL logged"
grep -q "event=running transport=ksock" "$MP_TMP/daemon.log" || mp_fail "no ksock start line"

mp_py - "$RPORT" "$NS" "$MP_TMP" "$V6" "$N6" "$ND" "$NR" "$SRC6" "$SRC4" <<'PY' || mp_fail "checks"
import json, sys
from mpcheck import Checks, Redis
from v6check import check_world
port, ns, tmp, v6 = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
n6, nd, nr, src6, src4 = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), sys.argv[8], sys.argv[9]
chk = Checks()
check = chk.check
check_world(chk, Redis(ns, port), tmp, v6, n6, nd, nr, src6, src4)
st = json.load(open(tmp + "/stats.json"))
check(st.get("transport") == "ksock", "stats transport %r" % st.get("transport"))
check(st.get("workers") == [], "DPDK workers in the stats: %r" % st.get("workers"))
chk.report()
PY
grep -q "addr=\[$V6\]:25" "$MP_TMP/daemon.log" || mp_fail "no IPv6 session in the daemon's log"
grep -q "addr=\[$V6\]:2526" "$MP_TMP/daemon.log" || mp_fail "no session to the IPv6 route in the log"
echo "daemon ipv6 ksock: $N6 over IPv6, $NR over an IPv6 route, $ND over IPv4, each once, from the given sources, no EAL"
