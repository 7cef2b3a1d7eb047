#!/usr/bin/env bash
# The safe-content fallback, end to end without DPDK: mailpumpctl submits
# a "required" appointment-reminder campaign with a fallback template into
# redis-server; mp-deliver delivers it to one real Postfix (postfix.sh
# harness) with three listeners: good TLS, no STARTTLS at all, and a
# self-signed certificate for a domain overridden to "verify".
#  - good.test gets the message over TLS 1.3, its merge fields in it;
#  - plain.test cannot do TLS: it gets the fallback, in plaintext, with
#    none of the main template's merge fields (the appointment and the
#    diagnosis are checked absent from every file in its maildirs), each
#    recipient recorded delivered_fallback with no TLS record;
#  - self.test (verify) gets the fallback over the TLS it has
#    (unverified: opportunistic), and that TLS record is the proof;
#  - counts, records and maildirs agree, the campaign is done, and
#    `mailpumpctl status` shows the fallback apart;
#  - submit refuses a fallback without a strict policy, a fallback under
#    "required", and a fallback without a body.
# usage: ctl_fallback.sh MP_DELIVER MAILPUMPCTL
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/postfix.sh"
mp_need_root
mp_need postfix redis-server
DELIVER=$1
CTL=$2

CNS=mpfbc$MP_SUFFIX
SNS=mpfbs$MP_SUFFIX
D=$MP_TMP/pf
NET=198.19.43
mp_netns "$CNS"
mp_netns "$SNS"
pf_link "$CNS" "$SNS" "$NET.1" || mp_fail "veth"
pf_make_certs "$D/certs" || mp_fail "certificates"
CA=$D/certs/ca.pem
pf_start "$SNS" "$D" \
	"ip=$NET.10;name=mx1.pf.test;tls=good;domains=good.test" \
	"ip=$NET.11;name=plain.pf.test;tls=none;domains=plain.test" \
	"ip=$NET.12;name=self.pf.test;tls=selfsigned;domains=self.test" ||
	mp_fail "pf_start"
MAILDIR=$(pf_maildir_root "$D")

RPORT=$(ip netns exec "$CNS" python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ip netns exec "$CNS" redis-server --port "$RPORT" --bind 127.0.0.1 --save '' \
	--appendonly no --dir "$MP_TMP" >"$MP_TMP/redis.log" 2>&1 &
MP_PIDS+=($!)
R() { ip netns exec "$CNS" redis-cli -p "$RPORT" --raw "$@"; }
mp_wait_for 10 R ping || mp_fail "redis did not start"
URL=redis://127.0.0.1:$RPORT
CTLN() { ip netns exec "$CNS" "$CTL" --redis "$URL" "$@"; }

N=30
{
	echo "email,first,appointment,diagnosis"
	for dom in good.test plain.test self.test; do
		for i in $(seq 1 $N); do echo "u$i@$dom,F$i,APPT-$dom-$i-0930,DIAG-$dom-$i-SECRET"; done
	done
} >"$MP_TMP/rcpts.csv"
cut -d, -f1 "$MP_TMP/rcpts.csv" | tail -n +2 >"$MP_TMP/boxes"
pf_add_mailboxes "$D" -f "$MP_TMP/boxes" || mp_fail "mailboxes"
printf 'Dear {{first}},\n\nyour appointment: {{appointment}}\nfindings: {{diagnosis}}\n' \
	>"$MP_TMP/main.txt"
printf 'Dear {{first}},\n\nthere is a new message from your clinic.\nPlease log in or call us to read it.\n' \
	>"$MP_TMP/fallback.txt"

# refused at submit, each with its reason, and nothing created
out=$(CTLN submit --id bad1 --from clinic@pf.test --subject 'Reminder' --text "$MP_TMP/main.txt" \
	--fallback-subject 'A message' --fallback-text "$MP_TMP/fallback.txt" --quiet "$MP_TMP/rcpts.csv" 2>&1) &&
	mp_fail "a fallback under opportunistic was accepted"
echo "$out" | grep -q "a fallback needs tls_policy required or verify" || mp_fail "bad1: $out"
out=$(CTLN submit --id bad2 --from clinic@pf.test --subject 'Reminder' --text "$MP_TMP/main.txt" \
	--tls required --fallback-subject 'A message' --fallback-text "$MP_TMP/fallback.txt" \
	--fallback-tls required --quiet "$MP_TMP/rcpts.csv" 2>&1) && mp_fail "a required fallback was accepted"
echo "$out" | grep -q "fallback_tls_policy 'required': expected none or opportunistic" || mp_fail "bad2: $out"
out=$(CTLN submit --id bad3 --from clinic@pf.test --subject 'Reminder' --text "$MP_TMP/main.txt" \
	--tls required --fallback-subject 'A message' --quiet "$MP_TMP/rcpts.csv" 2>&1) &&
	mp_fail "a fallback without a body was accepted"
echo "$out" | grep -q "the fallback needs fallback_subject and fallback_text" || mp_fail "bad3: $out"
[ "$(R exists mp:campaign:bad1 mp:campaign:bad2 mp:campaign:bad3)" = 0 ] || mp_fail "a refused campaign was created"
echo "ok: submit refuses a fallback without a strict policy, a strict fallback, one without a body"

CTLN submit --id remind --from clinic@pf.test --subject 'Your appointment, {{first}}' \
	--text "$MP_TMP/main.txt" --tls required --tls-override self.test=verify \
	--fallback-subject 'A message from your clinic' --fallback-text "$MP_TMP/fallback.txt" \
	--quiet "$MP_TMP/rcpts.csv" >"$MP_TMP/submit.log" 2>&1 || mp_fail "submit: $(cat "$MP_TMP/submit.log")"
[ "$(R hget mp:campaign:remind fallback_tls_policy)" = opportunistic ] || mp_fail "fallback policy not stored"

ROUTES="good.test=$NET.10,plain.test=$NET.11,self.test=$NET.12"
ip netns exec "$CNS" timeout 300 "$DELIVER" --redis "$URL" --consumer fb \
	--route "$ROUTES" --ca "$CA" --helo client.pf.test \
	--max-conns 2 --msgs-per-conn 20 --retry-base 1 --connect-timeout 5000 \
	--until-idle --timeout 240 --stats >"$MP_TMP/deliver.out" 2>"$MP_TMP/deliver.log" ||
	mp_fail "mp-deliver exited $?: $(tail -3 "$MP_TMP/deliver.log")"
grep -q "\"fallbacks\":$((2 * N))," "$MP_TMP/deliver.out" ||
	mp_fail "fallbacks: $(grep -o '"fallbacks":[0-9]*' "$MP_TMP/deliver.out")"
pf_wait_delivered "$D" $((3 * N)) 60 || mp_fail "postfix delivered $(pf_maildir_count "$D") of $((3 * N))"

mp_py - "$RPORT" "$MAILDIR" "$CNS" "$N" <<'PY' || mp_fail "checks"
import sys
from mpcheck import Checks, Maildir, Redis, campaign, maildirs_agree, queues_empty
port, M, ns, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
red, mdir, chk = Redis(ns, port), Maildir(M), Checks()
check = chk.check
rc, c, by = campaign(chk, red, "remind", 3 * n)
check(by == {"delivered": n, "delivered_fallback": 2 * n}, "states %s" % by)
maildirs_agree(chk, mdir, rc)
for i in range(1, n + 1):
    for dom in ("good.test", "plain.test", "self.test"):
        a = "u%d@%s" % (i, dom)
        j = rc[a]
        trace, msg = mdir.message(a)
        received = b"\n".join(trace)
        appt, diag = ("APPT-%s-%d-0930" % (dom, i)).encode(), ("DIAG-%s-%d-SECRET" % (dom, i)).encode()
        if dom == "good.test":
            check(j["state"] == "delivered" and j["tls"] is not None and
                  j["tls"]["version"] == "TLSv1.3", "%s: %s" % (a, j))
            check(appt in msg and diag in msg and b"Subject: Your appointment, F%d" % i in msg,
                  a + ": the message is not the main template's")
            check(b"using TLSv1.3" in received, a + ": not over TLS: %r" % received)
            continue
        check(j["state"] == "delivered_fallback", "%s: %s" % (a, j))
        check(b"Subject: A message from your clinic" in msg and b"Dear F%d," % i in msg,
              a + ": not the fallback")
        # nothing of the main template: no sensitive field, no main subject
        check(b"APPT-" not in msg and b"DIAG-" not in msg and b"Your appointment" not in msg,
              a + ": the fallback carries the main message's content")
        if dom == "plain.test":
            check(j["tls"] is None and b"using TLS" not in received,
                  a + ": plain.test went over TLS? %s %r" % (j["tls"], received))
        else:
            # the TLS it has, unverified: the record is the proof
            check(j["tls"] is not None and j["tls"]["verify"] == "self-signed" and
                  b"using TLS" in received, "%s: %s" % (a, j["tls"]))
# no file anywhere holds a sensitive field of a domain that got the fallback
for dom in ("plain.test", "self.test"):
    for i in range(1, n + 1):
        for f in mdir.files("u%d@%s" % (i, dom)):
            data = open(f, "rb").read()
            check(b"SECRET" not in data and b"0930" not in data, f + ": sensitive content")
queues_empty(chk, red)
chk.report()
print("ok: %d delivered over TLS, %d delivered_fallback (%d in plaintext), maildirs agree" %
      (n, 2 * n, n))
PY
st=$(CTLN status remind)
echo "$st" | grep -q "delivered_fallback $((2 * N)) " || mp_fail "status: $st"
echo "ok: mailpumpctl status shows $((2 * N)) delivered_fallback"
echo PASS
