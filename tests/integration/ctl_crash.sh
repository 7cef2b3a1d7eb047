#!/usr/bin/env bash
# Crash recovery of the delivery consumers, with real redis-server and
# Postfix's smtp-sink on loopback (random free ports); every message the
# sink receives is dumped to its own file, so real duplicates are counted.
#  1. consumer A (rate-limited) takes batches and is killed with SIGKILL
#     mid-campaign: its batches stay pending;
#  2. consumer B claims them after a short min-idle, is sent SIGTERM while
#     busy: it stops taking batches, finishes its sessions, writes their
#     results and exits 0 within the grace period;
#  3. consumer C (--until-idle) claims what is left and finishes.
# Then every recipient is in exactly one final state, the counters add up
# to the total, nothing is pending, and the messages the sink got exceed
# the delivered count only by what A had in flight when it died (bounded
# by its connections x messages per connection); dup_deliveries is
# reported. usage: ctl_crash.sh MP_DELIVER MAILPUMPCTL
. "$(dirname "$0")/lib.sh"
DELIVER=$1
CTL=$2
RPORT=$(mp_free_port)
SPORT=$(mp_free_port)
URL=redis://127.0.0.1:$RPORT
N_A=600
N_B=400
TOTAL=$((N_A + N_B))
mp_redis_sink "$RPORT" "$SPORT" 256
R() { redis-cli -p "$RPORT" "$@"; }

{
	echo "email,first"
	for i in $(seq 1 $N_A); do echo "u$i@a.test,A$i"; done
	for i in $(seq 1 $N_B); do echo "u$i@b.test,B$i"; done
} >"$MP_TMP/rcpts.csv"
printf 'Hello {{first}},\n.\nline after a lone dot\n' >"$MP_TMP/body.txt"
"$CTL" --redis "$URL" submit --id crash1 --from news@sender.test \
	--subject 'Hi {{first}}' --text "$MP_TMP/body.txt" --batch 50 --quiet \
	"$MP_TMP/rcpts.csv" >"$MP_TMP/submit.log" 2>&1 || mp_fail "submit"
[ "$(R hget mp:campaign:crash1 total)" = "$TOTAL" ] || mp_fail "submit total"

ROUTE="*=127.0.0.1:$SPORT"
MAXC=2
MPC=10
# 1. A: slow (20 msg/s per domain), killed after some deliveries
"$DELIVER" --redis "$URL" --helo client.sender.test --consumer A --route "$ROUTE" --max-conns $MAXC \
	--msgs-per-conn $MPC --rate 20 --burst 5 --stats >"$MP_TMP/a.out" 2>"$MP_TMP/a.log" &
A=$!
MP_PIDS+=("$A")
for _ in $(seq 100); do
	d=$(R hget mp:campaign:crash1:counts delivered)
	[ "${d:-0}" -ge 100 ] && break
	sleep 0.1
done
kill -KILL $A
wait $A 2>/dev/null
DA=$(R hget mp:campaign:crash1:counts delivered)
PA=$(R xpending mp:campaign:crash1:jobs mailpump | head -1)
echo "A killed: delivered=$DA pending_batches=$PA"
if [ "$DA" -lt 100 ] || [ "$DA" -ge $TOTAL ]; then
	mp_fail "A was not killed mid-campaign ($DA)"
fi
[ "$PA" -gt 0 ] || mp_fail "no pending batches after A died"
# What A sent before it died may still be in the sink's socket buffers:
# count its files once the sink has read every connection of A to its end
# (none left established or half-closed on the sink's side).
sink_quiet() {
	[ -z "$(ss -Htn state established state close-wait "( sport = :$SPORT )")" ]
}
mp_wait_for 30 sink_quiet || mp_fail "the sink still holds connections of A 30 s after it died"
SINK_A=$(find "$MP_TMP/sink" -type f | wc -l)

# 2. B: claims after 1.5 s idle, SIGTERM while busy -> exit 0 within grace
"$DELIVER" --redis "$URL" --helo client.sender.test --consumer B --route "$ROUTE" --max-conns $MAXC \
	--msgs-per-conn $MPC --rate 20 --burst 5 --min-idle 1500 --grace 20 \
	--stats >"$MP_TMP/b.out" 2>"$MP_TMP/b.log" &
B=$!
MP_PIDS+=("$B")
for _ in $(seq 200); do
	d=$(R hget mp:campaign:crash1:counts delivered)
	[ "${d:-0}" -ge $((DA + 100)) ] && break
	sleep 0.1
done
kill -TERM $B
t0=$(date +%s)
wait $B
rcb=$?
t1=$(date +%s)
[ $rcb -eq 0 ] || mp_fail "B exited $rcb after SIGTERM"
[ $((t1 - t0)) -le 22 ] || mp_fail "B took $((t1 - t0)) s to stop"
grep -q '"batches_claimed":[1-9]' "$MP_TMP/b.out" || mp_fail "B claimed nothing: $(cat "$MP_TMP/b.out")"
DB=$(R hget mp:campaign:crash1:counts delivered)
SINK_B=$(find "$MP_TMP/sink" -type f | wc -l)
echo "B stopped: delivered=$DB sink=$SINK_B"
[ "$DB" -lt $TOTAL ] || mp_fail "B finished everything; SIGTERM came too late to test"
# B finished what it had started: every message it sent is recorded
[ $((SINK_B - SINK_A)) -eq $((DB - DA)) ] ||
	mp_fail "B: sink got $((SINK_B - SINK_A)) messages, $((DB - DA)) recorded"

# 3. C: claims the rest and runs until nothing is left
timeout 300 "$DELIVER" --redis "$URL" --helo client.sender.test --consumer C --route "$ROUTE" --min-idle 500 \
	--until-idle --timeout 240 --stats >"$MP_TMP/c.out" 2>"$MP_TMP/c.log" ||
	mp_fail "C exited $?"

python3 - "$RPORT" "$TOTAL" "$(find "$MP_TMP/sink" -type f | wc -l)" $((MAXC * MPC)) <<'PY' || mp_fail "final state"
import json, subprocess, sys
port, total, sink, bound = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def r(*a):
    return subprocess.run(["redis-cli", "-p", port, "--raw"] + list(a),
                          capture_output=True, text=True, check=True).stdout.splitlines()
h = r("hgetall", "mp:campaign:crash1:rcpt")
states = {}
for i in range(0, len(h), 2):
    j = json.loads(h[i + 1])
    states[j["state"]] = states.get(j["state"], 0) + 1
assert len(h) // 2 == total, ("recipients", len(h) // 2)
assert states == {"delivered": total}, states
c = dict(zip(*[iter(r("hgetall", "mp:campaign:crash1:counts"))] * 2))
for k in ("queued", "deferred", "bounced", "failed", "cancelled"):
    assert int(c.get(k, 0)) == 0, (k, c)
assert int(c["delivered"]) == total, c
assert r("hget", "mp:campaign:crash1", "state") == ["done"]
assert r("xlen", "mp:campaign:crash1:jobs") == ["0"], "jobs left"
assert r("xpending", "mp:campaign:crash1:jobs", "mailpump")[0] == "0", "pending left"
dups = sink - total
dup_redis = int(c.get("dup_deliveries", 0))
print("sink=%d delivered=%d real_duplicates=%d dup_deliveries=%d (bound %d)" %
      (sink, total, dups, dup_redis, bound))
# A can have had at most MAXC sessions per domain with MPC messages each
assert 0 <= dups <= 2 * bound, dups
assert 0 <= dup_redis <= 2 * bound, dup_redis
PY
echo "ctl_crash: ok"
