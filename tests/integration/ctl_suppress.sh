#!/usr/bin/env bash
# Suppression lists against a real redis-server and Postfix's smtp-sink on
# loopback (random free ports). What it proves:
#  1. mailpumpctl suppress add|list|remove|import: addresses lower-cased,
#     bad ones refused (add: nothing written, exit 1; import: reported by
#     line, the rest imported), --json shapes, exit 2 without Redis;
#  2. submit skips listed addresses of the campaign's From domain (and
#     only that domain's list): counted as suppressed, not in total, not
#     in the rcpt hash, never in a jobs entry; the counters invariant holds;
#  3. an address listed after submit and before dispatch (an unsubscribe
#     written by the application straight into the hash) is not sent:
#     mp-deliver finalises it cancelled with the entry's reason, the sink
#     never sees it, and the campaign reaches done.
# Bounces feeding the list are proved in test_ctl_sched.c (suppression).
# usage: ctl_suppress.sh MP_DELIVER MAILPUMPCTL
. "$(dirname "$0")/lib.sh"
DELIVER=$1
CTL=$2
RPORT=$(mp_free_port)
SPORT=$(mp_free_port)
URL=redis://127.0.0.1:$RPORT
mp_redis_sink "$RPORT" "$SPORT" 64
R() { redis-cli -p "$RPORT" --raw "$@"; }
C() { "$CTL" --redis "$URL" "$@"; }

# --- 1. the commands ---
C suppress add Sender.TEST U1@A.test u2@a.TEST --reason unsubscribe --source app \
	>"$MP_TMP/add.out" || mp_fail "suppress add"
grep -q '2 added, 0 updated' "$MP_TMP/add.out" || mp_fail "add: $(cat "$MP_TMP/add.out")"
[ "$(R hlen mp:suppress:sender.test)" = 2 ] || mp_fail "add: not in mp:suppress:sender.test"
R hget mp:suppress:sender.test u1@a.test | python3 -c '
import json, sys
e = json.load(sys.stdin)
assert e["reason"] == "unsubscribe" and e["source"] == "app" and e["ts_ms"] > 0, e' ||
	mp_fail "add: entry"
C suppress add sender.test ok@a.test 'bad@@a.test' 2>"$MP_TMP/bad.err"
[ $? = 1 ] || mp_fail "add of a bad address: exit $? (want 1)"
grep -q "bad address syntax 'bad@@a.test'; nothing was written" "$MP_TMP/bad.err" || mp_fail "add: $(cat "$MP_TMP/bad.err")"
[ "$(R hexists mp:suppress:sender.test ok@a.test)" = 0 ] || mp_fail "add wrote part of a refused list"
C suppress add sender.test x@a.test --reason nonsense 2>/dev/null
[ $? = 1 ] || mp_fail "bad --reason accepted"
C suppress add 'not a domain' x@a.test 2>/dev/null
[ $? = 1 ] || mp_fail "bad domain accepted"
C --json suppress add sender.test U1@a.test --reason complaint | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j == {"domain": "sender.test", "reason": "complaint", "source": "mailpumpctl",
             "added": 0, "updated": 1}, j' || mp_fail "add --json / update"
printf '\357\273\277name,Email\nZed,"Imp1@B.test"\nQ,not-an-address\n"open,x\nW,imp2@b.test\n' \
	>"$MP_TMP/imp.csv"
C --json suppress import sender.test "$MP_TMP/imp.csv" --source crm 2>"$MP_TMP/imp.err" >"$MP_TMP/imp.json" ||
	mp_fail "import csv: exit $?"
python3 - "$MP_TMP/imp.json" <<'PY' || mp_fail "import csv --json"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["added"] == 2 and j["invalid"] == 2 and j["lines"] == 5 and j["source"] == "crm", j
assert [e["line"] for e in j["errors"]] == [3, 4], j["errors"]
assert "bad address syntax 'not-an-address'" in j["errors"][0]["error"], j
PY
grep -q "^line 3: bad address syntax 'not-an-address'" "$MP_TMP/imp.err" || mp_fail "import: line 3 not reported"
grep -q '^line 4: unterminated quoted field' "$MP_TMP/imp.err" || mp_fail "import: line 4 not reported"
# plain, from stdin, 5000 addresses (pipelined)
{ for i in $(seq 1 5000); do echo "p$i@c.test"; done; echo 'p@@c.test'; } |
	C suppress import sender.test - --reason bounce >"$MP_TMP/imp2.out" 2>"$MP_TMP/imp2.err" ||
	mp_fail "import plain: exit $?"
grep -q '5000 added, 0 updated, 1 invalid lines' "$MP_TMP/imp2.out" || mp_fail "import plain: $(cat "$MP_TMP/imp2.out")"
grep -q "^line 5001: bad address syntax" "$MP_TMP/imp2.err" || mp_fail "import plain: line 5001"
[ "$(R hlen mp:suppress:sender.test)" = 5004 ] || mp_fail "after imports: $(R hlen mp:suppress:sender.test)"
C --json suppress list sender.test >"$MP_TMP/list.json" || mp_fail "list --json"
python3 - "$MP_TMP/list.json" <<'PY' || mp_fail "list --json content"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["domain"] == "sender.test" and j["count"] == 5004 == len(j["entries"]), j["count"]
by = {e["address"]: e for e in j["entries"]}
assert by["u1@a.test"]["reason"] == "complaint", by["u1@a.test"]
assert by["imp1@b.test"]["source"] == "crm"
assert by["p77@c.test"]["reason"] == "bounce"
PY
C suppress list sender.test 2>/dev/null | grep -q '^imp2@b.test  *manual  *20[0-9-]* [0-9:]*Z  *crm$' ||
	mp_fail "list: $(C suppress list sender.test 2>/dev/null | head -3)"
C --json suppress remove sender.test P1@C.test p2@c.test nobody@c.test | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j == {"domain": "sender.test", "removed": 2, "absent": 1}, j' || mp_fail "remove"
[ "$(R hlen mp:suppress:sender.test)" = 5002 ] || mp_fail "after remove"
"$CTL" --redis redis://127.0.0.1:1 suppress list sender.test >/dev/null 2>&1
[ $? = 2 ] || mp_fail "list without redis: want exit 2"

# --- 2. submit skips them ---
R hset mp:suppress:other.test u3@a.test '{"reason":"manual","source":"x","ts_ms":1}' >/dev/null
{
	echo "email,first"
	for i in $(seq 1 20); do echo "u$i@a.test,A$i"; done
	echo "U2@A.test,again"
	echo "p5@C.TEST,P"
	echo "p1@c.test,removed"
} >"$MP_TMP/rcpts.csv"
printf 'Hello {{first}}\n' >"$MP_TMP/body.txt"
C --json submit --id sup1 --from News@Sender.TEST --subject 'Hi {{first}}' --text "$MP_TMP/body.txt" \
	--batch 7 "$MP_TMP/rcpts.csv" >"$MP_TMP/sub.json" 2>"$MP_TMP/sub.err" || mp_fail "submit: $(cat "$MP_TMP/sub.err")"
python3 - "$MP_TMP/sub.json" <<'PY' || mp_fail "submit --json"
import json, sys
j = json.load(open(sys.argv[1]))
# u1, u2 (twice: the second spelling too), p5 suppressed; u3 is only in
# another domain's list; p1 was removed
assert j["suppressed"] == 4 and j["accepted"] == 19 and j["duplicates"] == 0, j
sup = sorted(e["line"] for e in j["errors"] if e["kind"] == "suppressed")
assert sup == [2, 3, 22, 23], sup
PY
grep -q '^line 3: suppressed recipient u2@a.test (skipped)' "$MP_TMP/sub.err" || mp_fail "submit stderr"
python3 - "$RPORT" <<'PY' || mp_fail "submit: state in redis"
import json, subprocess
def r(*a):
    return subprocess.run(["redis-cli", "-p", PORT, "--raw"] + list(a),
                          capture_output=True, text=True, check=True).stdout.splitlines()
import sys
PORT = sys.argv[1]
camp = r("hmget", "mp:campaign:sup1", "total", "suppressed")
assert camp == ["19", "4"], camp
cnt = dict(zip(*[iter(r("hgetall", "mp:campaign:sup1:counts"))] * 2))
states = ("queued", "deferred", "delivered", "bounced", "failed", "cancelled")
assert sum(int(cnt[k]) for k in states) == 19 and cnt["queued"] == "19", cnt
rc = r("hkeys", "mp:campaign:sup1:rcpt")
assert len(rc) == 19 and "u1@a.test" not in rc and "u2@a.test" not in rc and "p5@c.test" not in rc, rc
assert "u3@a.test" in rc and "p1@c.test" in rc
queued = []
for line in r("xrange", "mp:campaign:sup1:jobs", "-", "+"):
    if line.startswith("["):
        queued += [e["to"] for e in json.loads(line)]
assert sorted(queued) == sorted(rc), (queued, rc)
PY
C status sup1 | grep -q 'recipients 19 (invalid lines 0, duplicates skipped 0, suppressed 4)' ||
	mp_fail "status: $(C status sup1)"
[ "$(C --json status sup1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["suppressed"])')" = 4 ] ||
	mp_fail "status --json suppressed"

# --- 3. listed after submit, before dispatch: not sent ---
# as an application's RFC 8058 endpoint would: one HSET, no mailpumpctl
R hset mp:suppress:sender.test u7@a.test \
	'{"reason":"unsubscribe","source":"rfc8058","ts_ms":1700000000000,"campaign":"sup1"}' >/dev/null
# events trimmed by age as well as length: 1,000 entries of 2001 (ids
# are Redis ms times) go, the day's stay
for i in $(seq 1 1000); do echo "XADD mp:events $((1000000000000 + i))-0 campaign old rcpt x$i@a.test state delivered"; done |
	R >/dev/null
R xadd mp:events '*' campaign recent rcpt y@a.test state delivered >/dev/null
timeout 120 "$DELIVER" --redis "$URL" --helo client.sender.test --consumer D \
	--route "*=127.0.0.1:$SPORT" --until-idle --timeout 90 --stats --events-max-age 86400 \
	>"$MP_TMP/d.out" 2>"$MP_TMP/d.log" ||
	mp_fail "mp-deliver exited $?: $(tail -5 "$MP_TMP/d.log")"
grep -q '"suppressed":1' "$MP_TMP/d.out" || mp_fail "mp-deliver stats: $(cat "$MP_TMP/d.out")"
grep -q '"events_trimmed":1000,' "$MP_TMP/d.out" || mp_fail "events not trimmed by age: $(cat "$MP_TMP/d.out")"
[ "$(R xrange mp:events - + count 1 | sed -n 2p)" != old ] || mp_fail "events: old entries kept"
R xrange mp:events - + | grep -qx recent || mp_fail "events: a recent entry trimmed"
python3 - "$RPORT" <<'PY' || mp_fail "after delivery"
import json, subprocess, sys
PORT = sys.argv[1]
def r(*a):
    return subprocess.run(["redis-cli", "-p", PORT, "--raw"] + list(a),
                          capture_output=True, text=True, check=True).stdout.splitlines()
j = json.loads(r("hget", "mp:campaign:sup1:rcpt", "u7@a.test")[0])
assert j["state"] == "cancelled" and j["text"] == "suppressed: unsubscribe (source rfc8058)", j
assert j["attempts"] == 0, j
cnt = dict(zip(*[iter(r("hgetall", "mp:campaign:sup1:counts"))] * 2))
assert cnt["delivered"] == "18" and cnt["cancelled"] == "1" and cnt["queued"] == "0", cnt
assert r("hget", "mp:campaign:sup1", "state") == ["done"]
ev = r("xrange", "mp:events", "-", "+")
assert "suppressed: unsubscribe (source rfc8058)" in ev
PY
mp_wait_for 10 bash -c "[ \$(find '$MP_TMP/sink' -type f | wc -l) -ge 18 ]" || mp_fail "sink: not 18 messages"
[ "$(find "$MP_TMP/sink" -type f | wc -l)" = 18 ] || mp_fail "sink got $(find "$MP_TMP/sink" -type f | wc -l) messages"
! grep -rqi 'u7@a\.test' "$MP_TMP/sink" || mp_fail "the sink got a message for the suppressed u7@a.test"
grep -rqi 'u8@a\.test' "$MP_TMP/sink" || mp_fail "the sink has no message for u8@a.test (grep proves nothing)"
echo "ctl_suppress: ok"
