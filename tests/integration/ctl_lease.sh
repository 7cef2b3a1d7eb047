#!/usr/bin/env bash
# The lease of held jobs entries and the consumer name's lock, with real
# redis-server, nftables and Postfix's smtp-sink (every message dumped to
# its own file, so duplicates are counted at the receiver):
#  1. a second mp-deliver with a consumer name in use is refused at start,
#     with a message naming the name and the holder;
#  2. consumer A (slow: rate-limited) is cut off from Redis with nftables
#     mid-campaign (its address 127.0.0.2 only; the sink stays
#     reachable). B claims A's entries after claim_min_idle and finishes
#     the campaign. A stops opening sessions once its lease is older than
#     half of claim_min_idle, never takes an entry back when it reaches
#     Redis again, and drops what B owns now. Every recipient ends in one
#     final state, and the sink's duplicates stay within what A had in
#     flight when it was cut off: its connections x messages per
#     connection (the documented bound, README "Leases");
#  3. a daemon restarted on the same host after kill -9 takes its name
#     over at once (the holder's process is gone), and drops it at exit.
# usage: ctl_lease.sh MP_DELIVER MAILPUMPCTL
. "$(dirname "$0")/lib.sh"
DELIVER=$1
CTL=$2
mp_need_root
mp_need redis-server
mp_need nft
[ -x /usr/sbin/smtp-sink ] || { echo "SKIP: smtp-sink not installed" >&2; exit 77; }
RPORT=$(mp_free_port)
SPORT=$(mp_free_port)
NFT=mplease$MP_SUFFIX
IDLE=4000		# claim_min_idle (ms): A's lease is stale after 2 s
DOMS=2
MAXC=1
MPC=5
N=400

redis-server --port "$RPORT" --bind 127.0.0.1 127.0.0.2 --save '' --appendonly no \
	--dir "$MP_TMP" >"$MP_TMP/redis.log" 2>&1 &
MP_PIDS+=($!)
chmod 0711 "$MP_TMP"
mkdir -p "$MP_TMP/sink"
chmod 0777 "$MP_TMP/sink"
/usr/sbin/smtp-sink -u nobody -d "$MP_TMP/sink/m." "127.0.0.1:$SPORT" 64 \
	>"$MP_TMP/sink.log" 2>&1 &
MP_PIDS+=($!)
mp_wait_for 10 redis-cli -p "$RPORT" ping || mp_fail "redis did not start"
mp_wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$SPORT" || mp_fail "smtp-sink did not start"
R() { redis-cli -p "$RPORT" "$@"; }

{
	echo "email,first"
	for i in $(seq 1 $N); do echo "u$i@d$((i % DOMS)).test,F$i"; done
} >"$MP_TMP/rcpts.csv"
printf 'Hello {{first}}\n' >"$MP_TMP/body.txt"
"$CTL" --redis "redis://127.0.0.1:$RPORT" submit --id lease --from news@sender.test \
	--subject 'Hi {{first}}' --text "$MP_TMP/body.txt" --batch 20 --quiet \
	"$MP_TMP/rcpts.csv" >"$MP_TMP/submit.log" 2>&1 || mp_fail "submit: $(cat "$MP_TMP/submit.log")"

common=(--route "*=127.0.0.1:$SPORT" --helo mailer.sender.test --min-idle $IDLE
	--max-conns $MAXC --msgs-per-conn $MPC --retry-base 1)
# A: 4 messages a second per domain, through 127.0.0.2
"$DELIVER" --redis "redis://127.0.0.2:$RPORT" --consumer A "${common[@]}" --rate 4 --burst 4 \
	--stats >"$MP_TMP/a.out" 2>"$MP_TMP/a.log" &
A=$!
MP_PIDS+=("$A")
mp_wait_for 20 bash -c "[ \$(redis-cli -p $RPORT hget mp:campaign:lease:counts delivered) -ge 20 ]" ||
	mp_fail "A delivered nothing: $(tail -3 "$MP_TMP/a.log")"

# 1. the name is taken
"$DELIVER" --redis "redis://127.0.0.1:$RPORT" --consumer A "${common[@]}" --until-idle \
	--timeout 10 >"$MP_TMP/a2.out" 2>"$MP_TMP/a2.log"
rc=$?
[ $rc -eq 1 ] && grep -q "consumer name 'A' is in use by another daemon" "$MP_TMP/a2.log" ||
	mp_fail "a second A: exit $rc: $(cat "$MP_TMP/a2.log")"
[ "$(R hget mp:campaign:lease:counts delivered)" -lt $N ] || mp_fail "A finished too soon"
echo "ok 1: a second daemon named A is refused: $(head -1 "$MP_TMP/a2.log")"

# 2. cut A off from Redis (both directions of 127.0.0.2:RPORT)
nft add table inet "$NFT" && MP_NFT+=("$NFT")
nft add chain inet "$NFT" out '{ type filter hook output priority 0; }'
nft add rule inet "$NFT" out ip daddr 127.0.0.2 tcp dport "$RPORT" drop
nft add rule inet "$NFT" out ip saddr 127.0.0.2 tcp sport "$RPORT" drop
cut_at=$(date +%s.%N)
sleep 3	# a stimulus: A's lease (2 s) runs out while it is cut off
sent_cut=$(find "$MP_TMP/sink" -name 'm.*' | wc -l)
sleep 2
sent_later=$(find "$MP_TMP/sink" -name 'm.*' | wc -l)
[ "$sent_later" -eq "$sent_cut" ] ||
	mp_fail "A went on sending without a lease: $sent_cut then $sent_later messages"
"$DELIVER" --redis "redis://127.0.0.1:$RPORT" --consumer B "${common[@]}" --until-idle \
	--timeout 120 --stats >"$MP_TMP/b.out" 2>"$MP_TMP/b.log" ||
	mp_fail "B: exit $?: $(tail -3 "$MP_TMP/b.log")"
[ "$(R hget mp:campaign:lease state)" = done ] || mp_fail "campaign not done after B"
# A back: it must not take anything back, and it has nothing left to send
nft delete table inet "$NFT"
healed=$(find "$MP_TMP/sink" -name 'm.*' | wc -l)
mp_wait_for 30 grep -q "event=lease_lost\|event=ack_not_ours" "$MP_TMP/a.log" ||
	mp_fail "A never noticed it lost its entries: $(tail -5 "$MP_TMP/a.log")"
sleep 3	# a stimulus: time for A to misbehave, if it would
[ "$(find "$MP_TMP/sink" -name 'm.*' | wc -l)" -eq "$healed" ] || mp_fail "A sent after it reconnected"
kill -TERM "$A"
for _ in $(seq 100); do mp_alive "$A" || break; sleep 0.1; done
wait "$A"
rc=$?
[ $rc -eq 0 ] || mp_fail "A: exit $rc"
[ "$(R xlen mp:campaign:lease:jobs)" = 0 ] || mp_fail "jobs left: $(R xlen mp:campaign:lease:jobs)"
mp_py - "$MP_TMP/sink" "$RPORT" "$N" $((MAXC * MPC * DOMS)) <<'PY' || mp_fail "receiver check"
import collections, glob, re, subprocess, sys
sink, port, n, bound = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
seen = collections.Counter()
for f in glob.glob(sink + "/m.*"):
    m = re.search(rb"^X-Rcpt-Args: <([^>]*)>", open(f, "rb").read(), re.M)
    seen[m.group(1).decode()] += 1
def r(*a):
    return subprocess.run(["redis-cli", "-p", port] + list(a), capture_output=True,
                          text=True).stdout.strip()
states = collections.Counter()
out = r("hvals", "mp:campaign:lease:rcpt").splitlines()
import json
for v in out:
    states[json.loads(v)["state"]] += 1
dups = sum(c - 1 for c in seen.values() if c > 1)
print("receiver: %d distinct, %d duplicates (bound %d); states %s" %
      (len(seen), dups, bound, dict(states)))
ok = len(seen) == n and states["delivered"] == n and sum(states.values()) == n and dups <= bound
sys.exit(0 if ok else 1)
PY
grep -h '"leases_lost"' "$MP_TMP/a.out" | python3 -c 'import json,sys; j=json.loads(sys.stdin.readline()); print("A: leases_lost %d lease_waits %d dup_final %d" % (j["leases_lost"], j["lease_waits"], j["dup_final"]))'
echo "ok 2: A cut off from Redis stopped sending within its lease, took nothing back; duplicates within the bound"

# 3. a daemon of this host restarted after kill -9 under its name: no wait
"$DELIVER" --redis "redis://127.0.0.1:$RPORT" --consumer C "${common[@]}" \
	>"$MP_TMP/c1.out" 2>"$MP_TMP/c1.log" &
C=$!
MP_PIDS+=("$C")
mp_wait_for 10 bash -c "[ -n \"\$(redis-cli -p $RPORT get mp:consumer:C)\" ]" || mp_fail "C took no lock"
kill -KILL "$C"
wait "$C" 2>/dev/null
"$DELIVER" --redis "redis://127.0.0.1:$RPORT" --consumer C "${common[@]}" --until-idle \
	--timeout 20 >"$MP_TMP/c2.out" 2>"$MP_TMP/c2.log" || mp_fail "C restarted: exit $?: $(cat "$MP_TMP/c2.log")"
grep -q "event=consumer_lock_taken_over" "$MP_TMP/c2.log" || mp_fail "C: no take-over logged"
[ -z "$(R get mp:consumer:C)" ] || mp_fail "C left its lock behind at exit"
echo "ok 3: C restarted after kill -9 takes its name over at once; the lock goes at exit"
echo PASS
