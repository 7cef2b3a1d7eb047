#!/usr/bin/env bash
# The lease of held jobs entries and the consumer name's lock, with real
# redis-server, nftables and Postfix's smtp-sink (every message dumped to
# its own file, so duplicates are counted at the receiver):
#  1. a second mp-deliver with a consumer name in use is refused at start,
#     with a message naming the name and the holder;
#  2. consumer A is cut off from Redis with nftables for 90 s (its address
#     127.0.0.2 only; the sink stays reachable) while B runs beside it.
#     B claims A's entries after claim_min_idle and goes on. A opens no
#     session once its lease is older than half of claim_min_idle, and
#     sends nothing after that but the sessions it had open. When it
#     reaches Redis again it takes nothing back, drops what B owns now,
#     and helps finish the campaign. Every recipient ends in one final
#     state. At the receiver (each message in its own file, the sender
#     told apart by its HELO name), every duplicate has its A copy inside
#     A's lease window after the cut, and their number stays within the
#     documented bound (README "Leases");
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
IDLE=20000		# claim_min_idle (ms): a lease is stale after 10 s
CUT=${MP_LEASE_CUT:-90}	# seconds A is cut off from Redis (the issue asks 90)
DOMS=2
MAXC=1
MPC=5
RATE=2			# messages a second per domain, each daemon
N=600

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

common=(--route "*=127.0.0.1:$SPORT" --min-idle $IDLE --max-conns $MAXC
	--msgs-per-conn $MPC --retry-base 1 --batches 3 --rate $RATE --burst $RATE)
# A talks to Redis through 127.0.0.2, and says HELO a.sender.test
"$DELIVER" --redis "redis://127.0.0.2:$RPORT" --consumer A "${common[@]}" \
	--helo a.sender.test --stats >"$MP_TMP/a.out" 2>"$MP_TMP/a.log" &
A=$!
MP_PIDS+=("$A")
mp_wait_for 20 bash -c "[ \$(redis-cli -p $RPORT hget mp:campaign:lease:counts delivered) -ge 20 ]" ||
	mp_fail "A delivered nothing: $(tail -3 "$MP_TMP/a.log")"

# 1. the name is taken
"$DELIVER" --redis "redis://127.0.0.1:$RPORT" --consumer A "${common[@]}" --helo a.sender.test \
	--until-idle --timeout 10 >"$MP_TMP/a2.out" 2>"$MP_TMP/a2.log"
rc=$?
[ $rc -eq 1 ] && grep -q "consumer name 'A' is in use by another daemon" "$MP_TMP/a2.log" ||
	mp_fail "a second A: exit $rc: $(cat "$MP_TMP/a2.log")"
[ "$(R hget mp:campaign:lease:counts delivered)" -lt $N ] || mp_fail "A finished too soon"
echo "ok 1: a second daemon named A is refused: $(head -1 "$MP_TMP/a2.log")"

# 2. B beside A, then A cut off from Redis (both directions of 127.0.0.2:RPORT)
"$DELIVER" --redis "redis://127.0.0.1:$RPORT" --consumer B "${common[@]}" --helo b.sender.test \
	--stats >"$MP_TMP/b.out" 2>"$MP_TMP/b.log" &
B=$!
MP_PIDS+=("$B")
from() { grep -l "^X-Helo-Args: $1.sender.test" "$MP_TMP"/sink/m.* 2>/dev/null | wc -l; }
mp_wait_for 30 bash -c "[ \$(grep -l '^X-Helo-Args: b.sender.test' $MP_TMP/sink/m.* 2>/dev/null | wc -l) -ge 10 ]" ||
	mp_fail "B delivered nothing: $(tail -3 "$MP_TMP/b.log")"
nft add table inet "$NFT" && MP_NFT+=("$NFT")
nft add chain inet "$NFT" out '{ type filter hook output priority 0; }'
nft add rule inet "$NFT" out ip daddr 127.0.0.2 tcp dport "$RPORT" drop
nft add rule inet "$NFT" out ip saddr 127.0.0.2 tcp sport "$RPORT" drop
cut_at=$(date +%s.%N)
cut_done=$(R hget mp:campaign:lease:counts delivered)
echo "cut A off at $(from a) messages from A, $(from b) from B, $cut_done delivered"
# A's last refresh was before the cut: its lease is stale 10 s after it
# at the latest, and its last session (MPC messages at RATE/s) ends then
LATE=$((IDLE / 2000 + (MPC + RATE - 1) / RATE + 4))	# + slack for a loaded machine
sleep "$LATE"	# a stimulus: A's lease runs out while it is cut off
a_stopped=$(from a)
sleep $((CUT - LATE))
a_end=$(from a)
[ "$a_end" -eq "$a_stopped" ] ||
	mp_fail "A went on sending without a lease: $a_stopped messages ${LATE}s after the cut, $a_end at ${CUT}s"
during=$(R hget mp:campaign:lease:counts delivered)
[ "$during" -gt $((cut_done + CUT * RATE)) ] ||
	mp_fail "B did not go on while A was cut off: $cut_done then $during delivered"
# B is never idle (the stream has more than it can hold): it must still
# take A's stale entries, as soon as it has room
a_held=$(R xpending mp:campaign:lease:jobs mailpump - + 100 A | grep -c .)
[ "$a_held" = 0 ] || mp_fail "B left $((a_held / 4)) of A's entries with A while A was cut off"
nft delete table inet "$NFT"
echo "A back after ${CUT}s: $a_end messages from A, $(from b) from B, $during delivered"
# A may learn of B's claims (lease_lost, ack_not_ours) or find its entries
# gone already: what counts is the receiver, below
mp_wait_for 120 bash -c "[ \"\$(redis-cli -p $RPORT hget mp:campaign:lease state)\" = done ]" ||
	mp_fail "campaign not done: $(R hgetall mp:campaign:lease:counts | tr '\n' ' ')"
[ "$(from a)" -gt "$a_end" ] || echo "note: A sent nothing after it came back"
for p in "$A" "$B"; do
	kill -TERM "$p"
	for _ in $(seq 100); do mp_alive "$p" || break; sleep 0.1; done
	wait "$p"
	rc=$?
	[ $rc -eq 0 ] || mp_fail "consumer pid $p: exit $rc"
done
[ "$(R xlen mp:campaign:lease:jobs)" = 0 ] || mp_fail "jobs left: $(R xlen mp:campaign:lease:jobs)"
# The bound (README "Leases"): what A sends from the cut until its lease
# is stale (half of claim_min_idle), and the sessions it has open then:
# per domain at most burst + rate x (IDLE/2 + MPC/rate) messages.
BOUND=$((DOMS * (RATE + RATE * IDLE / 2000 + MPC)))
mp_py - "$MP_TMP/sink" "$RPORT" "$N" "$BOUND" "$cut_at" "$LATE" <<'PY' || mp_fail "receiver check"
import collections, glob, json, os, re, subprocess, sys
sink, port, n, bound = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cut, late = float(sys.argv[5]), float(sys.argv[6])
copies = collections.defaultdict(list)
for f in glob.glob(sink + "/m.*"):
    data = open(f, "rb").read()
    rcpt = re.search(rb"^X-Rcpt-Args: <([^>]*)>", data, re.M).group(1).decode()
    helo = re.search(rb"^X-Helo-Args: (\S+)", data, re.M).group(1).decode()
    copies[rcpt].append((helo, os.stat(f).st_mtime))
def r(*a):
    return subprocess.run(["redis-cli", "-p", port] + list(a), capture_output=True,
                          text=True).stdout.strip()
states = collections.Counter(json.loads(v)["state"]
                             for v in r("hvals", "mp:campaign:lease:rcpt").splitlines())
dups = {k: v for k, v in copies.items() if len(v) > 1}
ndup = sum(len(v) - 1 for v in dups.values())
bad = []
for k, v in dups.items():
    a = [t - cut for h, t in v if h == "a.sender.test"]
    # one copy from B, and A's within its lease window after the cut
    if len(v) != 2 or len(a) != 1 or not -1.0 <= a[0] <= late:
        bad.append((k, [(h, round(t - cut, 1)) for h, t in v]))
print("receiver: %d distinct, %d duplicates (bound %d); states %s" %
      (len(copies), ndup, bound, dict(states)))
for b in bad[:10]:
    print("  duplicate outside A's lease window (s after the cut):", b)
ok = (len(copies) == n and states["delivered"] == n and sum(states.values()) == n
      and ndup <= bound and not bad)
sys.exit(0 if ok else 1)
PY
for w in a b; do
	grep -h '"leases_lost"' "$MP_TMP/$w.out" | python3 -c 'import json,sys; j=json.loads(sys.stdin.readline()); print("'$w': leases_lost %d lease_waits %d dup_final %d" % (j["leases_lost"], j["lease_waits"], j["dup_final"]))'
done
echo "ok 2: A cut off from Redis for ${CUT}s stopped sending within its lease, took nothing back; duplicates within the bound"

# 3. a daemon of this host restarted after kill -9 under its name: no wait
"$DELIVER" --redis "redis://127.0.0.1:$RPORT" --consumer C "${common[@]}" --helo c.sender.test \
	>"$MP_TMP/c1.out" 2>"$MP_TMP/c1.log" &
C=$!
MP_PIDS+=("$C")
mp_wait_for 10 bash -c "[ -n \"\$(redis-cli -p $RPORT get mp:consumer:C)\" ]" || mp_fail "C took no lock"
kill -KILL "$C"
wait "$C" 2>/dev/null
"$DELIVER" --redis "redis://127.0.0.1:$RPORT" --consumer C "${common[@]}" --helo c.sender.test --until-idle \
	--timeout 20 >"$MP_TMP/c2.out" 2>"$MP_TMP/c2.log" || mp_fail "C restarted: exit $?: $(cat "$MP_TMP/c2.log")"
grep -q "event=consumer_lock_taken_over" "$MP_TMP/c2.log" || mp_fail "C: no take-over logged"
[ -z "$(R get mp:consumer:C)" ] || mp_fail "C left its lock behind at exit"
echo "ok 3: C restarted after kill -9 takes its name over at once; the lock goes at exit"
echo PASS
