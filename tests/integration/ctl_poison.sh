#!/usr/bin/env bash
# Poison jobs entries written with redis-cli, as a third-party writer of
# the public contract might, delivered by a real mp-deliver to Postfix's
# smtp-sink beside a good campaign submitted with mailpumpctl:
#   rcpts "[]", rcpts that are not JSON, that hold invalid UTF-8 or
#   \u0000, an entry of a campaign that does not exist, and a campaign
#   whose tls_policy is unknown.
# Each ends in NS jobs:dead with its reason; every recipient a poison
# entry names is finalised failed with that reason (none stays queued);
# the unknown policy fails closed (nothing sent in plaintext); the good
# campaign and the good entry beside the poison are delivered;
# mailpumpctl dead-letters shows them.
# usage: ctl_poison.sh MP_DELIVER MAILPUMPCTL
. "$(dirname "$0")/lib.sh"
DELIVER=$1
CTL=$2
RPORT=$(mp_free_port)
SPORT=$(mp_free_port)
URL=redis://127.0.0.1:$RPORT
mp_redis_sink "$RPORT" "$SPORT" 64
R() { redis-cli -p "$RPORT" --raw "$@"; }
now=$(date +%s%3N)

printf 'email,name\n' >"$MP_TMP/good.csv"
for i in $(seq 1 30); do echo "g$i@d$((i % 3)).test,G$i"; done >>"$MP_TMP/good.csv"
printf 'Hello {{name|you}}\n' >"$MP_TMP/body.txt"
"$CTL" --redis "$URL" submit --quiet --id good --from news@sender.test --subject 'good {{name}}' \
	--text "$MP_TMP/body.txt" "$MP_TMP/good.csv" >/dev/null || mp_fail "submit good"

# campaigns written per the contract by hand: tp (fine, its entries are
# not) and badpol (an unknown tls_policy)
mkcamp() {  # mkcamp ID POLICY ADDR...
	local id=$1 pol=$2 a
	shift 2
	R hset mp:campaign:$id id $id from news@sender.test subject "hand $id" text 'Hi {{name|there}}' \
		tls_policy "$pol" state running created_ms $now submitted_ms $now total $# invalid 0 \
		duplicates_skipped 0 suppressed 0 max_age_s 3600 >/dev/null
	R hset mp:campaign:$id:counts queued $# deferred 0 delivered 0 bounced 0 failed 0 cancelled 0 \
		dup_deliveries 0 attempts 0 >/dev/null
	for a in "$@"; do
		R hset mp:campaign:$id:rcpt "$a" "{\"state\":\"queued\",\"attempts\":0,\"updated_ms\":$now}" >/dev/null
	done
	R zadd mp:campaigns $now $id >/dev/null
}
mkcamp tp opportunistic p1@d0.test p2@d0.test p3@d0.test p4@d0.test p5@d0.test
mkcamp badpol tls-please b1@d1.test b2@d1.test
R xgroup create mp:jobs mailpump 0 mkstream >/dev/null 2>&1
# through redis-cli's own argument parser (stdin), which turns \xff and
# \" into bytes
R >/dev/null <<'CMDS'
XADD mp:jobs * campaign tp domain d0.test attempt 0 rcpts "[{\"to\":\"p1@d0.test\",\"f\":{}"
XADD mp:jobs * campaign tp domain d0.test attempt 0 rcpts "[{\"to\":\"p2@d0.test\",\"f\":{\"name\":\"\xff\xfe\"}}]"
XADD mp:jobs * campaign tp domain d0.test attempt 0 rcpts "[{\"to\":\"p3@d0.test\",\"f\":{\"name\":\"a\\u0000b\"}}]"
XADD mp:jobs * campaign tp domain d0.test attempt 0 rcpts "[]"
XADD mp:jobs * campaign tp domain d0.test attempt 0 rcpts "[{\"to\":\"p4@d0.test\",\"f\":{\"name\":\"Pat\"}},{\"to\":\"p5@d0.test\",\"f\":{}}]"
XADD mp:jobs * campaign nosuch domain d0.test attempt 0 rcpts "[{\"to\":\"q1@d0.test\",\"f\":{}}]"
XADD mp:jobs * campaign badpol domain d1.test attempt 0 rcpts "[{\"to\":\"b1@d1.test\",\"f\":{}},{\"to\":\"b2@d1.test\",\"f\":{}}]"
CMDS
[ "$(R xlen mp:jobs)" = 7 ] || mp_fail "jobs written: $(R xlen mp:jobs) of 7"

timeout 120 "$DELIVER" --redis "$URL" --helo client.sender.test --consumer P \
	--route "*=127.0.0.1:$SPORT" --until-idle --timeout 90 --stats >"$MP_TMP/d.out" 2>"$MP_TMP/d.log" ||
	mp_fail "mp-deliver exited $?: $(tail -5 "$MP_TMP/d.log")"
grep -q '"dead_letters":6,' "$MP_TMP/d.out" || mp_fail "mp-deliver stats: $(cat "$MP_TMP/d.out")"
"$CTL" --redis "$URL" --json dead-letters --count 10 >"$MP_TMP/dead.json" || mp_fail "dead-letters"
mp_py - "$RPORT" "$MP_TMP/dead.json" <<'PY' || mp_fail "after delivery"
import json, subprocess, sys
from mpcheck import Checks, Redis, campaign
port, deadf = sys.argv[1], sys.argv[2]
red, chk = Redis(None, port), Checks()
r, check = red.r, chk.check
dead = json.load(open(deadf))
entries = dead["entries"] if isinstance(dead, dict) else dead
reasons = sorted(e["fields"]["reason"] for e in entries)
check(len(entries) == 6, "dead letters: %d, want 6: %s" % (len(entries), reasons))
def has(sub, n=1):
    got = sum(1 for x in reasons if sub in x)
    check(got == n, "%d dead letters with %r (want %d): %s" % (got, sub, n, reasons))
has("rcpts is not valid JSON", 3)
has("rcpts holds no recipient")
has("campaign does not exist")
has("unknown tls_policy")
check(r("get", "mp:jobs:dead:count") == ["6"], "jobs:dead:count %s" % r("get", "mp:jobs:dead:count"))
rc, c, by = campaign(chk, red, "tp", 5)
for a in ("p1@d0.test", "p2@d0.test", "p3@d0.test"):
    j = rc[a]
    check(j["state"] == "failed" and "not valid JSON" in j["text"], "%s: %s" % (a, j))
for a in ("p4@d0.test", "p5@d0.test"):
    check(rc[a]["state"] == "delivered", "%s beside the poison: %s" % (a, rc[a]))
rc, c, by = campaign(chk, red, "badpol", 2)
for a, j in rc.items():
    check(j["state"] == "failed" and "unknown tls_policy" in j["text"] and j["attempts"] == 0,
          "%s of an unknown policy: %s" % (a, j))
rc, c, by = campaign(chk, red, "good", 30)
check(by == {"delivered": 30}, "good: %s" % by)
check(r("xlen", "mp:jobs") == ["0"], "mp:jobs left %s" % r("xlen", "mp:jobs"))
chk.report()
PY
mp_wait_for 10 bash -c "[ \$(find '$MP_TMP/sink' -type f | wc -l) -ge 32 ]" || mp_fail "sink: not 32 messages"
[ "$(find "$MP_TMP/sink" -type f | wc -l)" = 32 ] || mp_fail "sink got $(find "$MP_TMP/sink" -type f | wc -l) messages, want 32"
! grep -rqE 'b[12]@d1\.test|p[123]@d0\.test|q1@d0\.test' "$MP_TMP/sink" || mp_fail "the sink got a poison entry's recipient"
grep -rq 'p4@d0\.test' "$MP_TMP/sink" || mp_fail "the sink has no message for p4 (grep proves nothing)"
echo "ctl_poison: ok"
