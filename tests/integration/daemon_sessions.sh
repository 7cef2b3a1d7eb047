#!/usr/bin/env bash
# Concurrency of one DPDK worker: 6,000 recipients of one domain, one
# message per connection, against a server (slow_smtp.py, in the server
# namespace behind the router) that holds its greeting back for 25
# seconds. The daemon (one worker lcore, [workers] max_sessions 6500)
# must hold at least 5,000 sessions open at once (counted on both sides:
# the worker's open sessions and the server's concurrent connections),
# and end them cleanly on SIGTERM once its grace expires (recipients back
# to deferred, none final, exit 0); started again it delivers every
# recipient once the server answers. Reports the
# peak of open sessions and the daemon's memory per session (RSS growth
# from idle to the peak, divided by the sessions). No timing assertions.
# MP_DAEMON_SCALE=K divides the counts (the sanitizer build).
# usage: daemon_sessions.sh MAILPUMP MAILPUMPCTL
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/postfix.sh"
. "$(dirname "$0")/daemon_lib.sh"
mp_need_root
mp_need redis-server
DM_MAILPUMP=$1
CTL=$2
SCALE=${MP_DAEMON_SCALE:-1}
N=$((6000 / SCALE))
WANT=$((5000 / SCALE))
DELAY=25
DM_NO_POSTFIX=1
dm_setup

ip netns exec "$DM_SNS" sysctl -qw net.core.somaxconn=16384 net.ipv4.tcp_max_syn_backlog=16384
(ulimit -n "$(ulimit -Hn)"; exec ip netns exec "$DM_SNS" python3 "$(dirname "$0")/slow_smtp.py" \
	--ip 198.19.60.143 --port 25 --delay $DELAY --stats "$MP_TMP/slow.json") \
	>"$MP_TMP/slow.log" 2>&1 &
MP_PIDS+=($!)
mp_wait_for 10 test -s "$MP_TMP/slow.json" || mp_fail "slow server did not start"

CONF=$MP_TMP/mailpump.conf
dm_conf "$CONF" "[routes]" "slow.test = 198.19.60.143"
sed -i "s/^max_sessions = .*/max_sessions = $((N + 500))/; s/^max_conns = .*/max_conns = $((N + 500))/; s/^msgs_per_conn = .*/msgs_per_conn = 1/; s/^batches = .*//; s/^claim_min_idle = .*/claim_min_idle = 120s\nbatches = $((N / 100 + 8))/; s/^stats_interval = .*//" "$CONF"
sed -i "s/^log_level = info/log_level = info\nstats_interval = 200ms/" "$CONF"
python3 -c "
import sys
n = int(sys.argv[1])
print('email,first')
for i in range(n):
    print('s%05d@slow.test,S%d' % (i, i))
" "$N" >"$MP_TMP/s.csv"
echo 'Hi {{first}}' >"$MP_TMP/body.txt"

# 1. SIGTERM while every session waits for its greeting: the grace (2 s)
#    expires, the open sessions are ended and their recipients handed back
#    (deferred: neither final nor lost), exit 0
dm_start a "$DM_TAP_A" 198.19.60.2/26 198.19.60.1 "$CONF" --lcores 0,1 --grace 2s --timeout 600s
# memory when idle: the first counters the daemon writes
mp_wait_for 30 test -s "$MP_TMP/a.stats.json" || mp_fail "no daemon counters"
# the idle reading is taken a little after start-up; it only feeds the
# memory figures printed below, no assertion depends on when it is taken
sleep 2
RSS0=$(mp_json "$MP_TMP/a.stats.json" 'j["rss_kb"]')
# the campaign arrives while the daemon runs
ip netns exec "$DM_RNS" "$CTL" --redis "$DM_URL" submit --id conc --from news@pf.test \
	--subject 'S {{first}}' --text "$MP_TMP/body.txt" --quiet "$MP_TMP/s.csv" \
	>"$MP_TMP/submit.log" 2>&1 || mp_fail "submit"
PEAK=0
PEAK_RSS=$RSS0
for _ in $(seq 400); do
	kill -0 "$DM_PID" 2>/dev/null || mp_fail "daemon died"
	read -r o r < <(python3 -c 'import json,sys
try:
    j = json.load(open(sys.argv[1])); print(j["workers"][0]["open"], j["rss_kb"])
except Exception:
    print(0, 0)' "$MP_TMP/a.stats.json")
	if [ "$o" -gt "$PEAK" ]; then PEAK=$o; PEAK_RSS=$r; fi
	[ "$o" -ge "$N" ] && break
	sleep 0.25
done
[ "$(mp_json "$MP_TMP/slow.json" 'j["msgs"]')" -eq 0 ] || mp_fail "the server answered too early"
# the server side's witness: established connections to port 25 in its
# kernel (the server's accept loop may lag behind the handshakes)
KPEAK=0
for _ in $(seq 20); do
	k=$(ip netns exec "$DM_SNS" ss -Htn state established '( sport = :25 )' | wc -l)
	[ "$k" -gt "$KPEAK" ] && KPEAK=$k
	[ "$KPEAK" -ge "$N" ] && break
	sleep 0.5
done
SRV_PEAK=$(mp_json "$MP_TMP/slow.json" 'j["peak"]')
kill -TERM "$DM_PID"
dm_wait_exit "$DM_PID" 60 || mp_fail "no exit within 60 s of SIGTERM"
[ "$DM_RC" -eq 0 ] || mp_fail "exit $DM_RC after SIGTERM"
grep -q "event=grace_expired" "$MP_TMP/a.log" || mp_fail "grace did not expire"
WPEAK=$(mp_json "$MP_TMP/a.stats.json" 'j["workers"][0]["peak_open"]')
SB=$(mp_json "$MP_TMP/a.stats.json" 'j["workers"][0]["sess_bytes"]')
read -r q d dl b f c _ <<<"$(dm_counts conc)"
if [ $((dl + b + f + c)) -ne 0 ] || [ $((q + d)) -ne "$N" ]; then
	mp_fail "after SIGTERM: want all $N queued/deferred, have $(dm_counts conc)"
fi
echo "SIGTERM with $WPEAK sessions open: exit 0, $d deferred + $q queued, none final"

# 2. started again: every recipient delivered once the server answers
dm_start a "$DM_TAP_A" 198.19.60.2/26 198.19.60.1 "$CONF" --lcores 0,1 --until-idle --timeout 600s
dm_wait_exit "$DM_PID" 650 || mp_fail "daemon did not finish"
[ "$DM_RC" -eq 0 ] || mp_fail "daemon exit $DM_RC"
# the server writes its counters once a second
for _ in $(seq 20); do
	MSGS=$(mp_json "$MP_TMP/slow.json" 'j["msgs"]')
	[ "$MSGS" -ge "$N" ] && break
	sleep 0.5
done
DELIV=$(R hget mp:campaign:conc:counts delivered)
echo "peak open sessions: worker $WPEAK (sampled $PEAK); server side: $KPEAK established in its kernel, $SRV_PEAK accepted at once"
# the session pool and TCP tables are made at start, so the growth is what
# a live session adds on top of its slot; RSS / sessions bounds it all
echo "memory: rss idle ${RSS0} kB (pools for $((N + 500)) sessions made at start), at $PEAK sessions ${PEAK_RSS} kB:" \
	"growth $(( (PEAK_RSS - RSS0) * 1024 / (PEAK > 0 ? PEAK : 1) )) bytes per open session," \
	"whole daemon $(( PEAK_RSS * 1024 / (PEAK > 0 ? PEAK : 1) )) bytes per session (session slot $SB bytes)"
[ "$WPEAK" -ge "$WANT" ] || mp_fail "worker peak $WPEAK sessions < $WANT"
[ "$KPEAK" -ge "$WANT" ] || mp_fail "server side: $KPEAK established connections < $WANT"
[ "$DELIV" = "$N" ] || mp_fail "delivered $DELIV of $N ($(dm_counts conc))"
[ "$MSGS" -eq "$N" ] || mp_fail "server got $MSGS messages of $N"
[ "$(R hget mp:campaign:conc state)" = "done" ] || mp_fail "campaign not done"
echo "daemon_sessions: ok"
