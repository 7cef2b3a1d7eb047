#!/usr/bin/env bash
# mailpumpctl against a real redis-server on a free loopback port (own
# directory, stopped by PID): every validation error named with its line
# (CSV and JSON lines), CSV quoting, duplicates skipped and counted,
# strict mode aborting with nothing written, campaign definition errors,
# pause/resume/cancel, status and report JSON shapes over keys this test
# writes per the README's Redis contract, watch, unreachable Redis and
# unknown ids, and 1,000,000 recipients piped to submit with flat memory
# (peak RSS of 100k vs 1M, both under a fixed bound).
#
# usage: ctl_submit.sh MAILPUMPCTL
. "$(dirname "$0")/lib.sh"
CTL=$1
BIG=${MP_CTL_BIG:-1000000}         # SMALL = BIG/10 must exceed the 50,000 buffered
RSS_MAX_KB=${MP_CTL_RSS_MAX_KB:-65536}
RSS_GROWTH_KB=${MP_CTL_RSS_GROWTH_KB:-8192}  # allowed 10x-input growth (ASan's quarantine needs more)
command -v redis-server >/dev/null || mp_fail "redis-server not installed (scripts/install-deps)"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir "$MP_TMP/redis"
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
	--dir "$MP_TMP/redis" --logfile "$MP_TMP/redis.log" >/dev/null 2>&1 &
REDIS_PID=$!
MP_PIDS+=($REDIS_PID)
R="redis-cli -p $PORT"
mp_wait_for 10 $R ping || mp_fail "redis-server did not start on port $PORT"
export MAILPUMP_REDIS=redis://127.0.0.1:$PORT/0

pass=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
# check NAME PYEXPR FILE: Python predicate over the JSON object j in FILE
check() {
	python3 - "$3" "$2" <<'PY' || mp_fail "$1: $2 is false for $(head -c 3000 "$3")"
import json, sys
j = json.load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)
PY
	ok "$1"
}
has() {  # has NAME FILE TEXT: FILE contains TEXT (fixed string)
	grep -qF -- "$3" "$2" || mp_fail "$1: '$3' not in $2: $(head -c 3000 "$2")"
	ok "$1"
}
expect_rc() {  # expect_rc NAME WANT GOT
	[ "$2" = "$3" ] || mp_fail "$1: exit status $3, expected $2"
}

T=$MP_TMP
printf 'Hello {{first}}, your code is {{code|none}}.\n' >"$T/text.txt"
CAMP=(--from news@example.com --subject 'Hi {{first|there}}' --text "$T/text.txt")

# --- CSV: each kind of bad line, quoting, duplicates ---
{
	printf 'email,first,code\n'                # 1
	printf 'a@x.test,Ann,1\n'                   # 2 ok
	printf '"b@X.TEST","Bob, Jr.","say ""hi"""\n'  # 3 ok: quotes, comma, domain case
	printf 'bad@@x,Zed,1\n'                     # 4 bad address
	printf 'c@y.test,,2\n'                      # 5 missing required field (first)
	printf 'a@x.test,Ann again,3\n'             # 6 duplicate of line 2
	printf 'd@y.test,"two\nlines",4\n'          # 7-8 CR/LF in a field
	printf 'e@y.test,Eve\n'                     # 9 wrong field count
	printf 'f@y.test,Fay\r,5\n'                 # 10 lone CR in a field
	printf '"g@y.test,Gus,6\n'                  # 11 unterminated quote (to the end)
} >"$T/r1.csv"
rc=0
"$CTL" --json submit "${CAMP[@]}" "$T/r1.csv" >"$T/s1.json" 2>"$T/s1.err" || rc=$?
expect_rc "csv submit" 0 $rc
has "csv: bad address named with line"   "$T/s1.err" "line 4: bad address syntax 'bad@@x'"
has "csv: missing field named with line" "$T/s1.err" "line 5: missing field 'first'"
has "csv: duplicate named with line"     "$T/s1.err" "line 6: duplicate recipient a@x.test (skipped)"
has "csv: CR/LF in field"                "$T/s1.err" "line 7: CR/LF in field 'first'"
has "csv: field count"                   "$T/s1.err" "line 9: 2 fields, the header has 3"
has "csv: lone CR in field"              "$T/s1.err" "line 10: CR/LF in field 'first'"
has "csv: unterminated quote"            "$T/s1.err" "line 11: unterminated quoted field"
check "csv: counts in --json" 'j["accepted"] == 2 and j["invalid"] == 6 and j["duplicates"] == 1 and j["state"] == "running" and len(j["errors"]) == 7' "$T/s1.json"
ID1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$T/s1.json")
$R --raw xrange mp:campaign:$ID1:jobs - + >"$T/jobs1.txt"
has "csv: embedded comma kept"   "$T/jobs1.txt" '"first":"Bob, Jr."'
has "csv: doubled quote decoded" "$T/jobs1.txt" '"code":"say \"hi\""'
has "csv: domain lower-cased"    "$T/jobs1.txt" '"to":"b@x.test"'
[ "$($R hget mp:campaign:$ID1 total)" = 2 ] || mp_fail "campaign total != 2"
[ "$($R hget mp:campaign:$ID1 invalid)" = 6 ] || mp_fail "campaign invalid != 6"
[ "$($R hget mp:campaign:$ID1 duplicates_skipped)" = 1 ] || mp_fail "duplicates_skipped != 1"
[ "$($R hget mp:campaign:$ID1:counts queued)" = 2 ] || mp_fail "counts.queued != 2"
[ "$($R hlen mp:campaign:$ID1:rcpt)" = 2 ] || mp_fail "rcpt hash size != 2"
$R hget mp:campaign:$ID1:rcpt b@x.test | grep -q '"state":"queued"' || mp_fail "rcpt value not queued"
ok "csv: campaign hash, counts and rcpt hash agree"
$R xinfo groups mp:campaign:$ID1:jobs | grep -qx mailpump || mp_fail "submit did not create the consumer group"
[ "$($R sismember mp:active "$ID1")" = 1 ] || mp_fail "submit did not list the campaign in mp:active"
[ "$($R exists mp:jobs)" = 0 ] || mp_fail "submit wrote to the shared mp:jobs"
ok "submit creates the campaign's stream with the consumer group, listed in mp:active"

# human output: the id alone on stdout
ID2=$(printf 'email\nz@z.test\n' | "$CTL" submit --quiet "${CAMP[@]}" --html "$T/text.txt" - 2>/dev/null) ||
	mp_fail "submit from stdin failed"
echo "$ID2" | grep -Eq '^c[0-9a-z]+-[0-9a-f]{8}$' || mp_fail "submit did not print the id: '$ID2'"
ok "submit prints the campaign id"

# --- JSON lines ---
{
	echo '{"email":"j1@x.test","first":"Jo","code":7}'           # 1 ok (number field)
	echo '{"email":"j2@x.test","first":"Line\r\nBreak"}'        # 2 CR/LF
	echo '{"first":"NoMail"}'                                    # 3 missing email
	echo '{"email":"j4@x.test","first":["a"]}'                  # 4 bad field type
	echo '{"email":"j5@x.test", "first": "x"'                   # 5 invalid JSON
	echo ''                                                      # 6 blank: skipped
	echo '{"email":"j1@X.test","first":"dup"}'                  # 7 duplicate
	echo '{"email":"not an address","first":"x"}'               # 8 bad address
	echo '{"email":"j9@x.test","first":"Jo","code":null}'       # 9 ok (null = absent)
} >"$T/r2.jsonl"
rc=0
"$CTL" --json submit "${CAMP[@]}" "$T/r2.jsonl" >"$T/s2.json" 2>"$T/s2.err" || rc=$?
expect_rc "jsonl submit" 0 $rc
has "jsonl: CR/LF in field"     "$T/s2.err" "line 2: CR/LF in field 'first'"
has "jsonl: missing email"      "$T/s2.err" "line 3: missing email address"
has "jsonl: bad field type"     "$T/s2.err" "line 4: field 'first' must be a string, number or boolean"
has "jsonl: invalid JSON"       "$T/s2.err" "line 5: invalid JSON"
has "jsonl: duplicate"          "$T/s2.err" "line 7: duplicate recipient j1@x.test (skipped)"
has "jsonl: bad address"        "$T/s2.err" "line 8: bad address syntax 'not an address'"
check "jsonl: counts" 'j["accepted"] == 2 and j["invalid"] == 5 and j["duplicates"] == 1' "$T/s2.json"

# --- strict mode: first error aborts, nothing written ---
before=$($R dbsize)
jobs_before=$($R keys 'mp:campaign:*:jobs' | sort | xargs -r -n1 $R xlen | tr '\n' ' ')
rc=0
"$CTL" submit --strict "${CAMP[@]}" "$T/r1.csv" >"$T/s3.out" 2>"$T/s3.err" || rc=$?
expect_rc "strict" 1 $rc
has "strict: names the first bad line" "$T/s3.err" "line 4: bad address syntax"
has "strict: says nothing was submitted" "$T/s3.err" "aborted at line 4; nothing was submitted"
grep -q "line 5:" "$T/s3.err" && mp_fail "strict: went on after the first error"
[ "$($R dbsize)" = "$before" ] &&
	[ "$($R keys 'mp:campaign:*:jobs' | sort | xargs -r -n1 $R xlen | tr '\n' ' ')" = "$jobs_before" ] ||
	mp_fail "strict: redis changed after an aborted submission"
ok "strict: redis untouched"
rc=0
cat "$T/r1.csv" | "$CTL" submit --strict "${CAMP[@]}" - >/dev/null 2>"$T/s3b.err" || rc=$?
expect_rc "strict stdin" 1 $rc
has "strict from a pipe aborts too" "$T/s3b.err" "aborted at line 4"
printf 'email,first\ns1@x.test,A\ns2@x.test,B\ns1@x.test,C\n' |
	"$CTL" --json submit --strict "${CAMP[@]}" - >"$T/s4.json" 2>/dev/null || mp_fail "strict valid input failed"
check "strict: valid input queued, duplicates still only counted" 'j["accepted"] == 2 and j["duplicates"] == 1 and j["invalid"] == 0' "$T/s4.json"

# --- campaign definition errors ---
rc=0
"$CTL" submit --from news@example.com --subject 'Hi {{first' --text "$T/text.txt" "$T/r1.csv" 2>"$T/c1.err" >/dev/null || rc=$?
expect_rc "bad template" 1 $rc
has "template syntax error is a campaign error" "$T/c1.err" "campaign: subject:"
rc=0
"$CTL" submit --subject Hi --text "$T/text.txt" "$T/r1.csv" 2>"$T/c2.err" >/dev/null || rc=$?
expect_rc "no sender" 1 $rc
has "missing sender" "$T/c2.err" "campaign: from: sender address required"
cat >"$T/camp.json" <<EOF
{"from":"news@example.com","from_name":"News","reply_to":"help@example.com",
 "subject":"Hello {{first|friend}}","text_file":"text.txt",
 "headers":{"X-Campaign":"spring"},"unsubscribe":"https://example.com/u?e={{email}}",
 "tls_policy":"required","tls_overrides":{"legacy.test":"opportunistic"},
 "window":"08:00-20:00","max_age_s":3600}
EOF
printf 'email,first\nk@x.test,Kim\n' >"$T/r5.csv"
"$CTL" --json submit --campaign "$T/camp.json" --id spring-1 "$T/r5.csv" >"$T/s5.json" 2>"$T/s5.err" ||
	mp_fail "campaign file submit failed: $(cat "$T/s5.err")"
[ "$($R hget mp:campaign:spring-1 tls_policy)" = required ] &&
[ "$($R hget mp:campaign:spring-1 window)" = 08:00-20:00 ] &&
[ "$($R hget mp:campaign:spring-1 max_age_s)" = 3600 ] &&
[ "$($R hget mp:campaign:spring-1 tls_overrides)" = '{"legacy.test":"opportunistic"}' ] &&
[ "$($R hget mp:campaign:spring-1 headers)" = '{"X-Campaign":"spring"}' ] ||
	mp_fail "campaign file fields not stored: $($R hgetall mp:campaign:spring-1)"
ok "campaign from a JSON file stored per the contract"
rc=0
"$CTL" submit --campaign "$T/camp.json" --id spring-1 "$T/r5.csv" >/dev/null 2>"$T/s6.err" || rc=$?
expect_rc "id reuse" 1 $rc
has "an existing id is refused" "$T/s6.err" "campaign 'spring-1' already exists"
echo '{"from":"a@b.test","subjct":"typo"}' >"$T/bad.json"
rc=0
"$CTL" submit --campaign "$T/bad.json" "$T/r5.csv" >/dev/null 2>"$T/s7.err" || rc=$?
expect_rc "unknown key" 1 $rc
has "unknown campaign key named" "$T/s7.err" "unknown setting 'subjct'"

# --- pause / resume / cancel ---
"$CTL" pause "$ID1" >/dev/null && [ "$($R hget mp:campaign:$ID1 state)" = paused ] || mp_fail "pause"
"$CTL" --json pause "$ID1" >"$T/p2.json" || mp_fail "second pause"
check "pause twice is a no-op" 'j["state"] == "paused" and j["changed"] is False' "$T/p2.json"
"$CTL" resume "$ID1" >/dev/null && [ "$($R hget mp:campaign:$ID1 state)" = running ] || mp_fail "resume"
# --- priority and window of a live campaign ---
[ "$($R hget mp:campaign:$ID1 priority)" = normal ] || mp_fail "default priority is not stored as normal"
"$CTL" --json priority "$ID1" transactional >"$T/pr1.json" || mp_fail "priority"
check "priority changed" 'j["old"] == "normal" and j["new"] == "transactional"' "$T/pr1.json"
[ "$($R hget mp:campaign:$ID1 priority)" = transactional ] || mp_fail "priority not stored"
rc=0; "$CTL" priority "$ID1" urgent 2>"$T/pr2.err" >/dev/null || rc=$?
expect_rc "unknown priority" 1 $rc
has "unknown priority named" "$T/pr2.err" "priority 'urgent': expected transactional, normal or bulk"
rc=0; "$CTL" priority no-such-campaign bulk 2>"$T/pr3.err" >/dev/null || rc=$?
expect_rc "priority of an unknown campaign" 3 $rc
"$CTL" window "$ID1" 08:00-17:30 >/dev/null || mp_fail "window"
[ "$($R hget mp:campaign:$ID1 window)" = 08:00-17:30 ] || mp_fail "window not stored"
"$CTL" window "$ID1" none >/dev/null || mp_fail "window none"
[ -z "$($R hget mp:campaign:$ID1 window)" ] || mp_fail "window none not stored as empty"
rc=0; "$CTL" window "$ID1" 09:00-09:00 2>"$T/pr4.err" >/dev/null || rc=$?
expect_rc "empty window" 1 $rc
has "window checked" "$T/pr4.err" "window '09:00-09:00'"
ok "priority and window changed at run time"
IDP=$(printf 'email\np@p.test\n' | "$CTL" submit --quiet "${CAMP[@]}" --priority bulk - 2>/dev/null) ||
	mp_fail "submit --priority"
[ "$($R hget mp:campaign:$IDP priority)" = bulk ] || mp_fail "submit --priority bulk not stored"
rc=0; printf 'email\np@p.test\n' | "$CTL" submit --quiet "${CAMP[@]}" --priority high - 2>"$T/pr5.err" >/dev/null || rc=$?
expect_rc "submit with an unknown priority" 1 $rc
has "submit --priority checked" "$T/pr5.err" "priority 'high'"
"$CTL" --json status "$IDP" >"$T/pr6.json" || mp_fail "status of IDP"
check "status shows priority and retention" 'j["priority"] == "bulk" and j["retention_s"] == 2592000 and (j["expires_ms"] == j["done_ms"] + 2592000000 if j["state"] == "done" else j["expires_ms"] is None)' "$T/pr6.json"
"$CTL" status "$IDP" | grep -q '^priority   bulk$' || mp_fail "status text: no priority line"
ok "submit --priority"
"$CTL" --json cancel "$ID1" >"$T/p3.json" || mp_fail "cancel"
check "cancel" 'j["old_state"] == "running" and j["state"] == "cancelled"' "$T/p3.json"
rc=0; "$CTL" resume "$ID1" 2>"$T/p4.err" >/dev/null || rc=$?
expect_rc "resume after cancel" 1 $rc
has "resume of a cancelled campaign refused" "$T/p4.err" "cannot resume campaign '$ID1': campaign is cancelled"
rc=0; "$CTL" priority "$ID1" bulk 2>"$T/p4b.err" >/dev/null || rc=$?
expect_rc "priority after cancel" 1 $rc
has "priority of a cancelled campaign refused" "$T/p4b.err" "cannot set the priority of campaign '$ID1': campaign is cancelled"
# submitting into a cancelled campaign stops
$R hset mp:campaign:spring-1 state done >/dev/null
rc=0; "$CTL" pause spring-1 2>"$T/p5.err" >/dev/null || rc=$?
expect_rc "pause done" 1 $rc
has "pause of a done campaign refused" "$T/p5.err" "campaign is done"

# --- status and reports over keys written per the contract ---
C=mp:campaign:rep-1
$R hset $C id rep-1 from news@example.com subject 'Report test' text x tls_policy opportunistic \
	state running created_ms $(( $(date +%s%3N) - 10000 )) submitted_ms $(date +%s%3N) \
	total 10 invalid 1 duplicates_skipped 2 max_age_s 432000 >/dev/null
$R zadd mp:campaigns $(date +%s%3N) rep-1 >/dev/null
$R hset $C:counts queued 2 deferred 2 delivered 3 bounced 2 failed 1 cancelled 0 \
	dup_deliveries 1 attempts 12 >/dev/null
rv() { echo "{\"state\":\"$1\",\"attempts\":1,\"code\":$2,\"esc\":\"$3\",\"text\":\"$4\",\"updated_ms\":1,\"tls\":null,\"mx\":\"mx.test\"}"; }
$R hset $C:rcpt q1@a.test "$(rv queued 0 '' '')" q2@a.test "$(rv queued 0 '' '')" \
	d1@a.test "$(rv deferred 451 4.7.1 'Greylisted')" d2@b.test "$(rv deferred 451 4.7.1 'Greylisted')" \
	v1@a.test "$(rv delivered 250 2.0.0 ok)" v2@a.test "$(rv delivered 250 2.0.0 ok)" v3@b.test "$(rv delivered 250 2.0.0 ok)" \
	b1@a.test "$(rv bounced 550 5.1.1 '<b1@a.test>: No such user')" b2@b.test "$(rv bounced 550 5.1.1 '<b2@b.test>: No such user')" \
	f1@b.test "$(rv failed 0 '' 'TLS required but not offered')" >/dev/null
"$CTL" --json status rep-1 >"$T/st.json" || mp_fail "status --json"
check "status JSON shape" 'j["id"] == "rep-1" and j["state"] == "running" and j["total"] == 10 and j["counts"] == {"queued": 2, "deferred": 2, "delivered": 3, "bounced": 2, "failed": 1, "cancelled": 0, "delivered_fallback": 0} and j["final"] == 6 and abs(j["percent_done"] - 60.0) < 1e-9 and j["rate_per_s"] > 0 and j["eta_s"] > 0 and j["invalid"] == 1 and j["duplicates_skipped"] == 2 and j["dup_deliveries"] == 1 and j["attempts"] == 12' "$T/st.json"
"$CTL" status rep-1 >"$T/st.txt" || mp_fail "status"
has "status human output" "$T/st.txt" "60.0% done (6 of 10 final)"
"$CTL" --json report campaign rep-1 >"$T/rc.json" || mp_fail "report campaign --json"
check "report campaign JSON shape" 'j["bounce_reasons"] == [{"count": 2, "code": 550, "esc": "5.1.1", "text": "<...>: No such user"}] and j["deferral_reasons"][0]["count"] == 2 and j["deferral_reasons"][0]["code"] == 451 and j["failure_reasons"][0]["text"] == "TLS required but not offered" and j["recipients_scanned"] == 10 and j["counts"]["delivered"] == 3' "$T/rc.json"
"$CTL" report campaign rep-1 >"$T/rc.txt" || mp_fail "report campaign"
has "report campaign human output" "$T/rc.txt" "<...>: No such user"

$R sadd mp:tls:domains a.test b.test >/dev/null
$R hset mp:tls:a.test sessions 10 starttls_offered 9 tls_ok 8 tls_failed 1 plaintext_deliveries 1 \
	resumed 3 hs_ms_sum 400 hs_count 8 no_starttls 1 version:TLSv1.3 6 version:TLSv1.2 2 \
	cipher:TLS_AES_256_GCM_SHA384 5 cipher:ECDHE-RSA-AES128-GCM-SHA256 3 group:x25519 8 \
	verify_fail:expired 1 >/dev/null
$R hset mp:tls:b.test sessions 4 starttls_offered 0 tls_ok 0 plaintext_deliveries 4 no_starttls 4 >/dev/null
"$CTL" --json report tls >"$T/tls.json" || mp_fail "report tls --json"
python3 - "$T/tls.json" <<'PY' || mp_fail "report tls JSON shape: $(cat "$T/tls.json")"
import json, sys
j = json.load(open(sys.argv[1]))
d = j["domains"]
assert d[0]["domain"] == "a.test" and d[0]["sessions"] == 10
assert abs(d[0]["tls_percent"] - 80.0) < 1e-9
assert d[0]["versions"] == {"TLSv1.3": 6, "TLSv1.2": 2}
assert d[0]["top_cipher"] == "TLS_AES_256_GCM_SHA384"
assert d[0]["failures"] == {"expired": 1} and d[0]["handshake_ms_avg"] == 50.0
assert d[1]["domain"] == "b.test" and d[1]["no_starttls"] == 4 and d[1]["plaintext_deliveries"] == 4
assert d[1]["top_cipher"] is None and d[1]["tls_percent"] == 0.0
assert j["totals"]["sessions"] == 14 and j["totals"]["domains"] == 2
PY
ok "report tls JSON shape"
"$CTL" report tls >"$T/tls.txt" || mp_fail "report tls"
has "report tls human table" "$T/tls.txt" "TLS_AES_256_GCM_SHA384"
"$CTL" --json report tls --domain b.test >"$T/tlsb.json" || mp_fail "report tls --domain"
check "report tls --domain" 'len(j["domains"]) == 1 and j["domains"][0]["domain"] == "b.test"' "$T/tlsb.json"
"$CTL" --json list >"$T/list.json" || mp_fail "list"
check "list shows campaigns" '"rep-1" in [c["id"] for c in j["campaigns"]]' "$T/list.json"

# --- watch: a line per interval off a TTY; ends at done; --timeout ---
rc=0
timeout 20 "$CTL" watch rep-1 --interval 0.2 --timeout 1 >"$T/w1.out" 2>"$T/w1.err" || rc=$?
expect_rc "watch timeout" 4 $rc
[ "$(grep -c '60.0%' "$T/w1.out")" -ge 3 ] || mp_fail "watch printed no line per interval: $(cat "$T/w1.out")"
has "watch timeout message" "$T/w1.err" "--timeout 1 s reached"
( sleep 1; $R hset $C state done >/dev/null ) &
MP_PIDS+=($!)
rc=0
timeout 20 "$CTL" watch rep-1 --interval 0.2 --timeout 15 >"$T/w2.out" 2>&1 || rc=$?
expect_rc "watch until done" 0 $rc
tail -1 "$T/w2.out" | grep -q ' done$' || mp_fail "watch did not end on done: $(tail -2 "$T/w2.out")"
ok "watch ends when the campaign is done"
timeout 20 "$CTL" --json watch rep-1 >"$T/w3.out" || mp_fail "watch --json"
python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$T/w3.out" || mp_fail "watch --json lines"
ok "watch --json prints JSON lines"
# on a terminal the bar is redrawn in place
script -qfec "$CTL watch rep-1 --interval 0.2" /dev/null >"$T/w4.out" 2>&1 || mp_fail "watch on a tty: $(cat "$T/w4.out")"
grep -qF $'\r\033[K[########################................]  60.0%' "$T/w4.out" ||
	mp_fail "watch on a tty drew no bar: $(od -c "$T/w4.out" | head)"
ok "watch on a TTY redraws a progress bar"

# --- unknown ids, unreachable redis ---
for cmd in "status nope" "pause nope" "resume nope" "cancel nope" "report campaign nope" "watch nope"; do
	rc=0
	# shellcheck disable=SC2086
	"$CTL" $cmd >/dev/null 2>"$T/u.err" || rc=$?
	expect_rc "$cmd" 3 $rc
	grep -q "unknown campaign 'nope'" "$T/u.err" || mp_fail "$cmd: no clear error: $(cat "$T/u.err")"
done
ok "unknown id: clear error, exit 3 (status, pause, resume, cancel, report, watch)"
DEAD=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for cmd in "status x" "report tls" "submit ${CAMP[*]:0:2} --subject S --text $T/text.txt $T/r5.csv"; do
	rc=0
	# shellcheck disable=SC2086
	"$CTL" --redis redis://127.0.0.1:$DEAD $cmd >/dev/null 2>"$T/d.err" || rc=$?
	expect_rc "dead redis: $cmd" 2 $rc
	grep -q "cannot reach redis: redis 127.0.0.1:$DEAD: Connection refused" "$T/d.err" ||
		mp_fail "dead redis: $cmd: $(cat "$T/d.err")"
done
ok "unreachable redis: clear error, exit 2"
rc=0
"$CTL" --redis http://x status x >/dev/null 2>"$T/d2.err" || rc=$?
expect_rc "bad url" 1 $rc
has "bad redis url" "$T/d2.err" "expected redis://host[:port][/db]"

# --- cancel while a submission runs: the submission stops, counters agree ---
gen() {  # N: CSV, 1000 domains
	python3 -c '
import sys
n = int(sys.argv[1]); w = sys.stdout.write
w("email,first,code\n")
for i in range(n):
    w("user%d@d%d.test,Name%d,%d\n" % (i, i % 1000, i, i))
' "$1"
}
started() {  # NS ID: the submission has queued something
	local t
	t=$($R hget "$1:campaign:$2" total)
	[ -n "$t" ] && [ "$t" -gt 0 ]
}
exec 3< <(gen 400000 2>/dev/null)
"$CTL" --ns cx: submit --quiet "${CAMP[@]}" --id cx-1 - <&3 >"$T/cx.out" 2>"$T/cx.err" &
p=$!
mp_wait_for 30 started cx cx-1 || mp_fail "cancel test: submission did not start"
"$CTL" --ns cx: cancel cx-1 >/dev/null || mp_fail "cancel during submission"
rc=0; wait $p || rc=$?
exec 3<&-
expect_rc "submit after cancel" 1 $rc
has "a cancel stops the submission" "$T/cx.err" "campaign 'cx-1' was cancelled during submission"
t=$($R hget cx:campaign:cx-1 total)
[ "$t" -lt 400000 ] && [ "$($R hget cx:campaign:cx-1:counts queued)" = "$t" ] &&
	[ "$($R hlen cx:campaign:cx-1:rcpt)" = "$t" ] && [ "$($R hget cx:campaign:cx-1 state)" = cancelled ] ||
	mp_fail "cancel test: total=$t queued=$($R hget cx:campaign:cx-1:counts queued) state=$($R hget cx:campaign:cx-1 state)"
ok "after a cancel mid-submission total == queued == rcpt entries ($t)"

# --- flat memory: 100k and BIG recipients streamed through a pipe ---
# peak RSS is VmHWM of the mailpumpctl process, read from /proc while it
# runs (and one last time from its zombie-free exit via wait)
peak_run() {  # NS N -> prints peak KiB; JSON result in $T/big-NS.json
	local ns=$1 n=$2 p peak=0 h
	exec 3< <(gen "$n")
	"$CTL" --ns "$ns:" --json --quiet submit "${CAMP[@]}" - <&3 >"$T/big-$ns.json" 2>"$T/big-$ns.err" &
	p=$!
	while kill -0 $p 2>/dev/null; do
		h=$(awk '/^VmHWM/ {print $2}' /proc/$p/status 2>/dev/null)
		[ -n "$h" ] && peak=$h
		sleep 0.05
	done
	wait $p || mp_fail "big submit $n failed: $(cat "$T/big-$ns.err")"
	exec 3<&-
	echo "$peak"
}
SMALL=$((BIG / 10))
p1=$(peak_run s "$SMALL")
p2=$(peak_run b "$BIG")
check "big: $SMALL recipients all queued" "j[\"accepted\"] == $SMALL and j[\"invalid\"] == 0" "$T/big-s.json"
check "big: $BIG recipients all queued" "j[\"accepted\"] == $BIG and j[\"invalid\"] == 0" "$T/big-b.json"
IDB=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$T/big-b.json")
[ "$($R hget b:campaign:$IDB total)" = "$BIG" ] && [ "$($R hget b:campaign:$IDB:counts queued)" = "$BIG" ] &&
	[ "$($R hlen b:campaign:$IDB:rcpt)" = "$BIG" ] || mp_fail "big: redis counters disagree"
n=$($R xlen b:campaign:$IDB:jobs)
secs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seconds"])' "$T/big-b.json")
echo "peak RSS: $SMALL recipients ${p1} KiB, $BIG recipients ${p2} KiB ($secs s, $n jobs entries)"
[ "$p1" -gt 0 ] && [ "$p2" -gt 0 ] || mp_fail "could not read VmHWM"
[ "$p2" -lt "$RSS_MAX_KB" ] || mp_fail "peak RSS ${p2} KiB >= ${RSS_MAX_KB} KiB"
[ "$p2" -lt $((p1 + RSS_GROWTH_KB)) ] || mp_fail "peak RSS grows with the input: ${p1} -> ${p2} KiB"
ok "big: peak RSS flat and under $((RSS_MAX_KB / 1024)) MiB"

# --- --append: resume an interrupted submission ---
printf 'email,first\nra@x.test,A\nrb@y.test,B\n' >"$T/ra.csv"
printf 'email,first\nra@x.test,A\nrb@y.test,B\nrc@x.test,C\nrd@z.test,D\n' >"$T/rb.csv"
"$CTL" submit --quiet "${CAMP[@]}" --id ap-1 "$T/ra.csv" >/dev/null || mp_fail "append: first part"
rc=0; "$CTL" submit --append ap-1 "$T/rb.csv" >/dev/null 2>"$T/ap1.err" || rc=$?
expect_rc "append to a running campaign" 1 $rc
has "append refuses a finished submission" "$T/ap1.err" "campaign 'ap-1' is running and its submission ended"
$R hset mp:campaign:ap-1 state submitting >/dev/null     # as if interrupted
$R hdel mp:campaign:ap-1 submitted_ms >/dev/null
rc=0; "$CTL" submit --append ap-1 --subject X "$T/rb.csv" >/dev/null 2>"$T/ap2.err" || rc=$?
expect_rc "append with campaign options" 1 $rc
has "append takes no campaign options" "$T/ap2.err" "no campaign options"
rc=0; "$CTL" submit --append nope "$T/rb.csv" >/dev/null 2>"$T/ap3.err" || rc=$?
expect_rc "append unknown" 3 $rc
"$CTL" --json submit --append ap-1 "$T/rb.csv" >"$T/ap4.json" 2>/dev/null || mp_fail "append failed"
check "append queues only the new recipients" 'j["accepted"] == 2 and j["duplicates"] == 2 and j["state"] == "running"' "$T/ap4.json"
[ "$($R hget mp:campaign:ap-1 total)" = 4 ] && [ "$($R hget mp:campaign:ap-1:counts queued)" = 4 ] ||
	mp_fail "append: counters"
ok "append: total == queued == 4"

# --- redis crashes during a submission (kill -9, AOF on): clear error,
# exit 2; after the restart the counters agree and --append completes it
# with every recipient exactly once ---
P2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir "$T/redis2"
start_redis2() {
	redis-server --port "$P2" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
		--dir "$T/redis2" --logfile "$T/redis2.log" >/dev/null 2>&1 &
	R2PID=$!
	MP_PIDS+=($R2PID)
	mp_wait_for 30 pong2 || mp_fail "second redis-server did not start (or load its AOF)"
}
pong2() { [ "$(redis-cli -p "$P2" ping 2>/dev/null)" = PONG ]; }
start_redis2
R2="redis-cli -p $P2"
started2() {
	local t
	t=$($R2 hget kx:campaign:kx-1 total)
	[ -n "$t" ] && [ "$t" -gt 0 ]
}
# The kill must land mid-submission, after part of it is in Redis: the
# input stops after 200,000 of its 400,000 recipients until the gate file
# exists (bounded), so the submission cannot finish before Redis is gone
# however fast or slow the machine is (a fixed pause raced on a loaded one).
rm -f "$T/kx.gate"
exec 3< <( { gen 400000 | head -n 200001
	for _ in $(seq 600); do [ -e "$T/kx.gate" ] && break; sleep 0.1; done
	gen 400000 | tail -n +200002; } 2>/dev/null)
"$CTL" --redis "redis://127.0.0.1:$P2" --ns kx: submit --quiet "${CAMP[@]}" --id kx-1 - <&3 >"$T/kx.out" 2>"$T/kx.err" &
p=$!
mp_wait_for 30 started2 || mp_fail "redis-kill test: submission did not start"
kill -KILL "$R2PID"
touch "$T/kx.gate"
rc=0; wait $p || rc=$?
exec 3<&-
expect_rc "submit with redis gone" 2 $rc
has "redis lost mid-submission is reported" "$T/kx.err" "mailpumpctl: submission failed: redis 127.0.0.1:$P2:"
has "and what to do about it" "$T/kx.err" "campaign kx-1 is left in state submitting"
has "with the commands" "$T/kx.err" "resume with 'mailpumpctl submit --append kx-1 FILE' (queued recipients are skipped) or cancel it with 'mailpumpctl cancel kx-1'"
start_redis2
t1=$($R2 hget kx:campaign:kx-1 total)
[ -n "$t1" ] && [ "$t1" -gt 0 ] && [ "$t1" -lt 400000 ] || mp_fail "after the crash: total '$t1'"
[ "$($R2 hget kx:campaign:kx-1 state)" = submitting ] && [ "$($R2 hget kx:campaign:kx-1:counts queued)" = "$t1" ] &&
	[ "$($R2 hlen kx:campaign:kx-1:rcpt)" = "$t1" ] || mp_fail "after the crash: counters disagree"
ok "after a crash mid-submission total == queued == rcpt entries ($t1)"
exec 3< <(gen 400000 2>/dev/null)
"$CTL" --redis "redis://127.0.0.1:$P2" --ns kx: --json --quiet submit --append kx-1 - <&3 >"$T/kx2.json" 2>"$T/kx2.err" ||
	mp_fail "append after the crash: $(cat "$T/kx2.err")"
exec 3<&-
check "append after the crash: only the missing recipients queued" "j[\"accepted\"] == 400000 - $t1 and j[\"duplicates\"] == $t1 and j[\"state\"] == \"running\"" "$T/kx2.json"
[ "$($R2 hget kx:campaign:kx-1 total)" = 400000 ] && [ "$($R2 hget kx:campaign:kx-1:counts queued)" = 400000 ] &&
	[ "$($R2 hlen kx:campaign:kx-1:rcpt)" = 400000 ] || mp_fail "append after the crash: counters"
n=$($R2 --raw xrange kx:campaign:kx-1:jobs - + | grep -o '"to":' | wc -l)
[ "$n" = 400000 ] || mp_fail "append after the crash: $n recipients in jobs, expected 400000"
ok "every recipient queued exactly once in jobs (400000)"

echo "ctl_submit: $pass checks passed"
