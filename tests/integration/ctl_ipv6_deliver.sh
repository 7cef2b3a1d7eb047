#!/usr/bin/env bash
# End to end over IPv6 without DPDK: mailpumpctl submits a campaign into
# redis-server, mp-deliver (kernel-socket transport) resolves MX records
# through dnsmasq and delivers to Postfix's smtp-sink. Everything runs in
# one network namespace the test creates with IPv6 on and fd00:6d70::25
# on its loopback. What it proves:
#  - v6.test, whose MX host has ONLY an AAAA record: every recipient is
#    delivered exactly once, over IPv6 (the sink on [fd00:6d70::25]:25
#    has each message, with an IPv6 client address), and each recipient
#    record names "ip":"fd00:6d70::25" and the MX host;
#  - dual.test, whose MX host has A and AAAA: IPv4 preferred, as before
#    (every message at the sink on 127.0.0.1:25, "ip":"127.0.0.1", and no
#    AAAA query for that host);
#  - rt6.test, which DNS does not know (NXDOMAIN), reached through a
#    static route to an IPv6 literal, --route 'rt6.test=[fd00:6d70::25]:2526':
#    every recipient at the sink on that port, "ip":"fd00:6d70::25";
#  - source addresses per family: with --source6 fd00:6d70::26 and
#    --source 127.0.0.2 the sinks see every IPv6 connection come from
#    fd00:6d70::26 and every IPv4 one from 127.0.0.2 (X-Client-Addr);
#    a bad --source6 is refused naming it, one this host lacks too;
#  - the campaign is done, counts agree, nothing is left to retry.
# usage: ctl_ipv6_deliver.sh MP_DELIVER MAILPUMPCTL
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ipv6_lib.sh"
mp_need_root
mp_need redis-server dnsmasq
[ -x /usr/sbin/smtp-sink ] || { echo "SKIP: smtp-sink not installed" >&2; exit 77; }
[ -d /proc/sys/net/ipv6 ] || { echo "SKIP: no IPv6 in this kernel" >&2; exit 77; }
DELIVER=$1
CTL=$2
NS=mp6d$MP_SUFFIX
V6=fd00:6d70::25
SRC6=fd00:6d70::26
SRC4=127.0.0.2
N6=40
ND=10
NR=12

v6_rig_start

{
	echo "email,first"
	for i in $(seq 1 $N6); do echo "u$i@v6.test,F$i"; done
	for i in $(seq 1 $ND); do echo "d$i@dual.test,D$i"; done
	for i in $(seq 1 $NR); do echo "r$i@rt6.test,R$i"; done
} >"$MP_TMP/rcpts.csv"
printf 'Hello {{first}},\n\nover IPv6.\n' >"$MP_TMP/body.txt"
X "$CTL" --redis "$URL" submit --id six --from news@sender.test --subject 'Hi {{first}}' \
	--text "$MP_TMP/body.txt" --quiet "$MP_TMP/rcpts.csv" >"$MP_TMP/submit.log" 2>&1 ||
	mp_fail "submit"

# bad source addresses: refused at start, each naming the problem
dbad() {
	local rc
	X "$DELIVER" --redis "$URL" --consumer bad --dns 127.0.0.1:5300 \
		--helo client.sender.test --until-idle --timeout 10 "$@" >"$MP_TMP/bad.out" 2>&1
	rc=$?
	[ $rc -eq 1 ] || mp_fail "mp-deliver $*: exit $rc, want 1: $(cat "$MP_TMP/bad.out")"
}
dbad --source6 "[$SRC6]"
grep -qF -- "--source6: \"[$SRC6]\" is not an IPv6 address" "$MP_TMP/bad.out" ||
	mp_fail "bracketed --source6: $(cat "$MP_TMP/bad.out")"
dbad --source6 "$SRC4"
grep -qF -- "--source6: \"$SRC4\" is not an IPv6 address" "$MP_TMP/bad.out" ||
	mp_fail "IPv4 --source6: $(cat "$MP_TMP/bad.out")"
dbad --source "$SRC6"
grep -qF -- "--source: \"$SRC6\" is not an IPv4 address" "$MP_TMP/bad.out" ||
	mp_fail "IPv6 --source: $(cat "$MP_TMP/bad.out")"
dbad --source6 fd00:6d70::99
grep -qF "source address fd00:6d70::99: Cannot assign requested address" "$MP_TMP/bad.out" ||
	mp_fail "--source6 not on this host: $(cat "$MP_TMP/bad.out")"
dbad --route "rt6.test=$V6:2526"
grep -qF "route \"rt6.test=$V6:2526\": an IPv6 address needs brackets" "$MP_TMP/bad.out" ||
	mp_fail "unbracketed IPv6 route: $(cat "$MP_TMP/bad.out")"
[ "$(R hget mp:campaign:six:counts delivered)" = "0" ] || [ -z "$(R hget mp:campaign:six:counts delivered)" ] ||
	mp_fail "a refused mp-deliver delivered something"

X timeout 120 "$DELIVER" --redis "$URL" --consumer six --dns 127.0.0.1:5300 \
	--route "rt6.test=[$V6]:2526" --source6 "$SRC6" --source "$SRC4" \
	--helo client.sender.test --max-conns 2 --msgs-per-conn 15 --connect-timeout 5000 \
	--until-idle --timeout 90 --stats --log-level debug >"$MP_TMP/deliver.out" 2>"$MP_TMP/deliver.log" ||
	mp_fail "mp-deliver exited $? $(cat "$MP_TMP/deliver.out")"

mp_py - "$RPORT" "$NS" "$MP_TMP" "$V6" "$N6" "$ND" "$NR" "$SRC6" "$SRC4" <<'PY' || mp_fail "checks"
import sys
from mpcheck import Checks, Redis
from v6check import check_world
port, ns, tmp, v6, n6, nd = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
nr, src6, src4 = int(sys.argv[7]), sys.argv[8], sys.argv[9]
chk = Checks()
check_world(chk, Redis(ns, port), tmp, v6, n6, nd, nr, src6, src4)
chk.report()
PY
# the export carries the address too
X "$CTL" --redis "$URL" export six >"$MP_TMP/six.csv" || mp_fail "export"
n=$(python3 -c 'import csv,sys; print(sum(1 for x in csv.DictReader(open(sys.argv[1], newline="")) if x["ip"] == sys.argv[2] and x["email"].endswith("@v6.test")))' "$MP_TMP/six.csv" "$V6")
[ "$n" = "$N6" ] || mp_fail "export: $n rows with ip $V6, want $N6"
# logs name the IPv6 server in its text form
grep -q "addr=\[$V6\]:25" "$MP_TMP/deliver.log" || mp_fail "no IPv6 address in the session log"
grep -q "addr=\[$V6\]:2526" "$MP_TMP/deliver.log" || mp_fail "no session to the IPv6 route in the log"
echo "ipv6 deliver: $N6 over IPv6, $ND over IPv4, $NR over an IPv6 route, each once, from the given sources"
