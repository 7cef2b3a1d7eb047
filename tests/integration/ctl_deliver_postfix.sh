#!/usr/bin/env bash
# End to end without DPDK: mailpumpctl submits campaigns into redis-server,
# mp-deliver (control plane + kernel-socket SMTP engine) delivers them to
# one real Postfix with four smtpd listeners in a server namespace, client
# and server joined by a veth (postfix.sh harness); dnsmasq in the client
# namespace answers MX queries. What it proves:
#  - 2,000 recipients over eight domains: static routes for five, MX for
#    one whose preferred MX refuses connections (fallback to the next MX
#    within the same attempt), a null MX and an NXDOMAIN domain (bounced
#    without a connection), unknown users (550 -> bounced), and a domain
#    whose MX host cannot be resolved for now (deferred, retried, failed at
#    the maximum age); every recipient ends in
#    exactly one final state, counters add up, campaign done, no job or
#    retry left, one event per recipient;
#  - Redis and the maildirs agree: per domain the delivered count equals
#    the messages in the maildirs, each delivered recipient has exactly one
#    message in its own maildir and each bounced one none;
#  - per-domain TLS counters reflect each listener: STARTTLS + TLS 1.3 and
#    verified on the good one, no STARTTLS and plaintext deliveries on the
#    plain one, verify failures by reason (self-signed, expired), and a
#    TLS record on every delivered recipient that went over TLS; a TLS
#    1.0-only listener fails the handshake (we require 1.2) and gets the
#    mail in plaintext on a new connection under "opportunistic";
#  - a recipient whose merge field would inject a header fails alone with
#    a reason naming the field; its batch neighbour is delivered;
#  - a campaign with --return-path and --verp: each message's envelope
#    sender (Postfix's Return-Path) is bounces+user=domain@pf.test, its
#    From unchanged; other campaigns keep From as the envelope sender;
#  - a "verify" campaign: delivered (verified) to the good listener, never
#    in plaintext or to a bad certificate: those recipients are retried and
#    failed at the campaign's maximum age with the TLS reason.
# usage: ctl_deliver_postfix.sh MP_DELIVER MAILPUMPCTL
. "$(dirname "$0")/lib.sh"
# shellcheck disable=SC2034 # read by postfix.sh: unknown users get 550
PF_UNKNOWN=reject
. "$(dirname "$0")/postfix.sh"
mp_need_root
mp_need postfix redis-server dnsmasq
DELIVER=$1
CTL=$2

CNS=mpdc$MP_SUFFIX
SNS=mpds$MP_SUFFIX
D=$MP_TMP/pf
NET=198.19.42
mp_netns "$CNS"
mp_netns "$SNS"
pf_link "$CNS" "$SNS" "$NET.1" || mp_fail "veth"
pf_make_certs "$D/certs" || mp_fail "certificates"
CA=$D/certs/ca.pem
pf_start "$SNS" "$D" \
	"ip=$NET.10;name=mx1.pf.test;tls=good;domains=a.test,b.test,mx.test,verp.test" \
	"ip=$NET.11;name=plain.pf.test;tls=none;domains=plain.test" \
	"ip=$NET.12;name=self.pf.test;tls=selfsigned;domains=self.test" \
	"ip=$NET.13;name=old.pf.test;tls=expired;domains=old.test" \
	"ip=$NET.14;name=legacy.pf.test;tls=tls10;domains=legacy.test" ||
	mp_fail "pf_start"
# the preferred MX of mx.test: an address with nobody listening
ip -n "$SNS" addr add "$NET.20/24" dev "$PF_SERVER_IF"
MAILDIR=$(pf_maildir_root "$D")

# DNS for the client: MX records, host names of the listeners
ip netns exec "$CNS" dnsmasq --keep-in-foreground --conf-file=/dev/null \
	--no-resolv --no-hosts --pid-file= --listen-address=127.0.0.1 \
	--bind-interfaces --port=5300 --local=/test/ --local-ttl=60 \
	--host-record=mx1.pf.test,$NET.10 --host-record=plain.pf.test,$NET.11 \
	--host-record=self.pf.test,$NET.12 --host-record=old.pf.test,$NET.13 \
	--host-record=legacy.pf.test,$NET.14 --host-record=dead.pf.test,$NET.20 \
	--mx-host=mx.test,dead.pf.test,10 --mx-host=mx.test,mx1.pf.test,20 \
	--mx-host=null.test,.,0 --mx-host=tempfail.test,mx.other.example,10 \
	>"$MP_TMP/dnsmasq.log" 2>&1 &
MP_PIDS+=($!)

RPORT=$(ip netns exec "$CNS" python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ip netns exec "$CNS" redis-server --port "$RPORT" --bind 127.0.0.1 --save '' \
	--appendonly no --dir "$MP_TMP" >"$MP_TMP/redis.log" 2>&1 &
MP_PIDS+=($!)
R() { ip netns exec "$CNS" redis-cli -p "$RPORT" --raw "$@"; }
mp_wait_for 10 R ping || mp_fail "redis did not start"
URL=redis://127.0.0.1:$RPORT

# recipients: domain:count; bad.test users are unknown to Postfix
{
	echo "email,first"
	for spec in a.test:650 legacy.test:50 b.test:500 plain.test:300 self.test:200 old.test:150 \
		mx.test:100 null.test:20 nx.test:10; do
		dom=${spec%%:*}
		for i in $(seq 1 "${spec##*:}"); do echo "u$i@$dom,F$i"; done
	done
	for i in $(seq 1 20); do echo "nobody$i@b.test,N$i"; done
} >"$MP_TMP/main.csv"
{
	echo "email,first"
	for d in a.test old.test plain.test; do
		for i in $(seq 1 10); do echo "s$i@$d,S$i"; done
	done
	for i in $(seq 1 5); do echo "s$i@tempfail.test,T$i"; done
} >"$MP_TMP/strict.csv"
# mailboxes for everyone Postfix should accept
grep -v -e '^email' -e '^nobody' -e '@null.test' -e '@nx.test' -e '@tempfail.test' \
	"$MP_TMP/main.csv" "$MP_TMP/strict.csv" |
	cut -d: -f2 | cut -d, -f1 >"$MP_TMP/boxes"
echo crlf1@a.test >>"$MP_TMP/boxes"
echo crlf2@a.test >>"$MP_TMP/boxes"
printf 'email,first\nv1@verp.test,V1\nv2@verp.test,V2\nv3@verp.test,V3\n' >"$MP_TMP/verp.csv"
printf 'v1@verp.test\nv2@verp.test\nv3@verp.test\n' >>"$MP_TMP/boxes"
pf_add_mailboxes "$D" -f "$MP_TMP/boxes" || mp_fail "mailboxes"
printf 'Hello {{first}},\n\nyour message.\n.\n..a line starting with dots\n' >"$MP_TMP/body.txt"

ip netns exec "$CNS" "$CTL" --redis "$URL" submit --id main --from news@pf.test \
	--subject 'Hi {{first}}' --text "$MP_TMP/body.txt" --quiet "$MP_TMP/main.csv" \
	>"$MP_TMP/submit.log" 2>&1 || mp_fail "submit main"
ip netns exec "$CNS" "$CTL" --redis "$URL" submit --id strict --from news@pf.test \
	--subject 'Strict {{first}}' --text "$MP_TMP/body.txt" --tls verify --max-age 4 \
	--quiet "$MP_TMP/strict.csv" >>"$MP_TMP/submit.log" 2>&1 || mp_fail "submit strict"
# a return path apart from From, per recipient (VERP)
ip netns exec "$CNS" "$CTL" --redis "$URL" submit --id verp --from news@pf.test \
	--return-path bounces@pf.test --verp --subject 'V {{first}}' --text "$MP_TMP/body.txt" \
	--quiet "$MP_TMP/verp.csv" >>"$MP_TMP/submit.log" 2>&1 || mp_fail "submit verp"
[ "$(R hget mp:campaign:verp return_path)" = bounces@pf.test ] && [ "$(R hget mp:campaign:verp verp)" = 1 ] ||
	mp_fail "verp campaign: return_path/verp not stored"
[ "$(R hget mp:campaign:main total)" = 2000 ] || mp_fail "main: total $(R hget mp:campaign:main total)"
# a job written by some other application, with a header injection in a
# merge field used by the Subject: that recipient fails alone, its
# neighbour in the same batch is delivered
NOW=$(date +%s%3N)
R hset mp:campaign:raw id raw from news@pf.test subject 'Raw {{first}}' \
	text 'Hello {{first}}' tls_policy opportunistic state running \
	created_ms "$NOW" submitted_ms "$NOW" total 2 >/dev/null
R hset mp:campaign:raw:counts queued 2 deferred 0 delivered 0 bounced 0 failed 0 \
	cancelled 0 dup_deliveries 0 attempts 0 >/dev/null
for a in crlf1@a.test crlf2@a.test; do
	R hset mp:campaign:raw:rcpt "$a" '{"state":"queued","attempts":0}' >/dev/null
done
R xadd mp:jobs '*' campaign raw domain a.test attempt 0 \
	rcpts '[{"to":"crlf1@a.test","f":{"first":"x\r\nBcc: victim@evil.test"}},{"to":"crlf2@a.test","f":{"first":"Fine"}}]' >/dev/null

ROUTES="a.test=mx1.pf.test,b.test=mx1.pf.test,verp.test=mx1.pf.test,plain.test=plain.pf.test,self.test=self.pf.test,old.test=old.pf.test,legacy.test=legacy.pf.test"
ip netns exec "$CNS" timeout 600 "$DELIVER" --redis "$URL" --consumer e2e \
	--route "$ROUTES" --dns 127.0.0.1:5300 --ca "$CA" --helo client.pf.test \
	--max-conns 4 --msgs-per-conn 50 --retry-base 1 --connect-timeout 5000 \
	--until-idle --timeout 500 --stats >"$MP_TMP/deliver.out" 2>"$MP_TMP/deliver.log" ||
	mp_fail "mp-deliver exited $? $(cat "$MP_TMP/deliver.out")"
cat "$MP_TMP/deliver.out"
grep -q '"plaintext_retries":50,' "$MP_TMP/deliver.out" || mp_fail "legacy.test: not retried in plaintext"
grep -q '"mx_fallbacks":100,' "$MP_TMP/deliver.out" || mp_fail "mx.test: no MX fallback"
EXPECT=$((700 + 500 + 300 + 200 + 150 + 100 + 10 + 1 + 3))
pf_wait_delivered "$D" $EXPECT 120 || mp_fail "postfix delivered $(pf_maildir_count "$D") of $EXPECT"
pf_wait_queue_empty "$D" 60 || mp_fail "postfix queue not empty"

mp_py - "$RPORT" "$MAILDIR" "$CNS" <<'PY' || mp_fail "checks"
import json, sys
from mpcheck import (Checks, Maildir, Redis, campaign, maildirs_agree, queues_empty, tls_all_13,
                     tls_handshake_fails, tls_no_starttls)
port, M, ns = sys.argv[1], sys.argv[2], sys.argv[3]
red, mdir, chk = Redis(ns, port), Maildir(M), Checks()
r, hall, files, check = red.r, red.hall, mdir.files, chk.check

raw = {k: json.loads(v) for k, v in hall("mp:campaign:raw:rcpt").items()}
check(raw["crlf1@a.test"]["state"] == "failed" and "first" in raw["crlf1@a.test"]["text"] and
      len(files("crlf1@a.test")) == 0, "header injection: %s" % raw["crlf1@a.test"])
check(raw["crlf2@a.test"]["state"] == "delivered" and len(files("crlf2@a.test")) == 1,
      "neighbour of a bad recipient: %s" % raw["crlf2@a.test"])
check(r("hget", "mp:campaign:raw", "state") == ["done"], "raw campaign not done")

for camp, total in (("main", 2000), ("strict", 35)):
    rc, c, by = campaign(chk, red, camp, total)
    if camp == "main":
        check(by == {"delivered": 1950, "bounced": 50}, "main states %s" % by)
    maildirs_agree(chk, mdir, rc)
    for a, j in rc.items():
        if j["state"] == "delivered":
            dom = a.split("@")[1]
            if dom in ("plain.test", "legacy.test"):
                check(j["tls"] is None, a + ": plaintext but TLS record")
            else:
                check(j["tls"] is not None and j["tls"]["version"] == "TLSv1.3",
                      a + ": no TLS 1.3 record: %s" % j["tls"])
            check(j["code"] == 250, a + ": code %s" % j["code"])
    rcm = rc
    if camp == "main":
        check(rcm["u1@null.test"]["state"] == "bounced" and "null_mx" in rcm["u1@null.test"]["text"],
              "null MX: %s" % rcm["u1@null.test"])
        check(rcm["u1@nx.test"]["state"] == "bounced" and "nxdomain" in rcm["u1@nx.test"]["text"],
              "NXDOMAIN: %s" % rcm["u1@nx.test"])
        check(rcm["nobody1@b.test"]["state"] == "bounced" and rcm["nobody1@b.test"]["code"] == 550,
              "unknown user: %s" % rcm["nobody1@b.test"])
        check(rcm["u1@mx.test"]["mx"] == "mx1.pf.test", "mx.test via %s" % rcm["u1@mx.test"]["mx"])
        check(rcm["u5@self.test"]["tls"]["verify"] == "self-signed", "self.test verify %s" % rcm["u5@self.test"]["tls"])
    else:
        check(rc["s1@a.test"]["state"] == "delivered" and rc["s1@a.test"]["tls"]["verify"] == "ok",
              "strict a.test: %s" % rc["s1@a.test"])
        for d in ("old.test", "plain.test"):
            check(rc["s1@" + d]["state"] == "failed", "strict %s: %s" % (d, rc["s1@" + d]))
        check(rc["s1@old.test"]["attempts"] >= 2, "strict old.test retried: %s" % rc["s1@old.test"])
        check("expired" in rc["s1@old.test"]["text"], "strict old.test reason: %s" % rc["s1@old.test"]["text"])
        t = rc["s1@tempfail.test"]
        check(t["state"] == "failed" and t["attempts"] >= 2 and "tempfail" in t["text"],
              "DNS temporary failure deferred, then failed at max age: %s" % t)

# per domain: Redis delivered == maildir messages
rc = {k: json.loads(v) for k, v in hall("mp:campaign:main:rcpt").items()}
rc2 = {k: json.loads(v) for k, v in hall("mp:campaign:strict:rcpt").items()}
for dom in ("a.test", "b.test", "plain.test", "self.test", "old.test", "mx.test", "legacy.test"):
    in_redis = sum(1 for a, j in list(rc.items()) + list(rc2.items()) + list(raw.items())
                   if a.endswith("@" + dom) and j["state"] == "delivered")
    in_md = mdir.count(dom)
    check(in_redis == in_md, "%s: redis delivered %d, maildir %d" % (dom, in_redis, in_md))

# TLS counters per listener personality
t = {d: red.ints("mp:tls:" + d)
     for d in ("a.test", "plain.test", "self.test", "old.test", "mx.test", "legacy.test")}
a = t["a.test"]
check(tls_all_13(a) and not any(k.startswith("verify_fail") for k in a), "tls a.test %s" % a)
p = t["plain.test"]
check(tls_no_starttls(p, 300), "tls plain.test %s" % p)
s = t["self.test"]
check(s.get("tls_ok", 0) > 0 and s.get("verify_fail:self-signed") == s.get("tls_ok"), "tls self.test %s" % s)
o = t["old.test"]
check(o.get("verify_fail:expired", 0) >= o.get("tls_ok", 0) > 0, "tls old.test %s" % o)
l = t["legacy.test"]
check(tls_handshake_fails(l, 50), "tls legacy.test (TLS 1.0 only) %s" % l)
m = t["mx.test"]
check(m.get("connect_failed", 0) >= 1 and m.get("tls_ok", 0) >= 1, "tls mx.test %s" % m)
check(a.get("hs_count", 0) == a.get("tls_ok") and a.get("hs_ms_sum", -1) >= 0, "handshake time %s" % a)
queues_empty(chk, red)
ev = int(r("xlen", "mp:events")[0])
check(ev >= 2030, "events %d" % ev)
check("tls:a.test" not in r("smembers", "mp:tls:domains") and "a.test" in r("smembers", "mp:tls:domains"),
      "tls:domains %s" % r("smembers", "mp:tls:domains"))
chk.report()
print("ok: main 1950 delivered / 50 bounced, strict 10 delivered / 25 failed, maildirs agree")
PY
# the envelope sender as Postfix recorded it (virtual(8) writes Return-Path):
# VERP names each recipient; a campaign without one keeps its From
for u in v1 v2 v3; do
	f=$(find "$MAILDIR/verp.test/$u" -type f -path '*/new/*' | head -1)
	[ -n "$f" ] || mp_fail "verp: nothing for $u@verp.test"
	grep -q "^Return-Path: <bounces+$u=verp.test@pf.test>" "$f" ||
		mp_fail "verp: $u: $(grep -m1 '^Return-Path' "$f")"
	grep -q '^From: news@pf.test' "$f" || grep -q '^From: .*<news@pf.test>' "$f" ||
		mp_fail "verp: $u: From changed: $(grep -m1 '^From' "$f")"
done
f=$(find "$MAILDIR/a.test/u1" -type f -path '*/new/*' | head -1)
grep -q '^Return-Path: <news@pf.test>' "$f" || mp_fail "main: return path $(grep -m1 '^Return-Path' "$f")"
echo "ok: VERP return paths per recipient, From unchanged"

# retention and export: main is done, so its keys expire in 30 days (the
# default) and the export, in both formats, is the rcpt hash with its TLS
# records, recipient by recipient
ip netns exec "$CNS" "$CTL" --redis "$URL" export main >"$MP_TMP/export.csv" || mp_fail "export csv"
ip netns exec "$CNS" "$CTL" --redis "$URL" export main --format jsonl >"$MP_TMP/export.jsonl" ||
	mp_fail "export jsonl"
mp_py - "$RPORT" "$CNS" "$MP_TMP/export.csv" "$MP_TMP/export.jsonl" <<'PY' || mp_fail "retention / export"
import csv, json, sys
from mpcheck import Checks, Redis
port, ns, fcsv, fjsonl = sys.argv[1:5]
red, chk = Redis(ns, port), Checks()
r, check = red.r, chk.check
day30 = 30 * 86400 * 1000
for k in ("mp:campaign:main", "mp:campaign:main:rcpt", "mp:campaign:main:counts",
          "mp:campaign:main:jobs"):
    t = int(r("pttl", k)[0])
    check(day30 - 600000 < t <= day30, "%s: pttl %d, want 30 days" % (k, t))
# (field by field: the hash holds the body, whose lines --raw splits)
h = {f: (r("hget", "mp:campaign:main", f) or [""])[0] for f in ("expires_ms", "done_ms", "retention_s")}
check(int(h.get("expires_ms", 0)) - int(h["done_ms"]) in range(day30, day30 + 60000),
      "expires_ms %s done_ms %s" % (h.get("expires_ms"), h["done_ms"]))
check(h.get("retention_s") == "2592000", "retention_s %s" % h.get("retention_s"))
rc = {k: json.loads(v) for k, v in red.hall("mp:campaign:main:rcpt").items()}
rows = list(csv.DictReader(open(fcsv, newline="")))
lines = [json.loads(l) for l in open(fjsonl)]
check(len(rows) == 2000 and len(lines) == 2000, "export: %d csv rows, %d lines" % (len(rows), len(lines)))
by_csv = {x["email"]: x for x in rows}
by_js = {x.pop("email"): x for x in lines}
check(len(by_csv) == 2000 and len(by_js) == 2000, "export: a recipient twice")
tls_rows = 0
for a, j in rc.items():
    check(by_js.get(a) == j, "jsonl %s: %s vs %s" % (a, by_js.get(a), j))
    x = by_csv.get(a)
    if x is None:
        check(False, "csv: no row for " + a)
        continue
    for f in ("state", "esc", "text", "mx", "ip"):
        check(x[f] == str(j.get(f, "")), "csv %s %s: %r vs %r" % (a, f, x[f], j.get(f)))
    check(x["code"] == str(j["code"]) and x["attempts"] == str(j["attempts"]), "csv %s code/attempts" % a)
    t = j.get("tls")
    if t:
        tls_rows += 1
        for f in ("version", "cipher", "group", "verify", "subject", "issuer", "not_after"):
            check(x["tls_" + f] == str(t[f]), "csv %s tls_%s: %r vs %r" % (a, f, x["tls_" + f], t[f]))
    else:
        check(x["tls_version"] == "", "csv %s: a TLS version without a record" % a)
check(tls_rows > 1000, "only %d recipients with TLS proof" % tls_rows)
chk.report()
print("ok: main's keys expire in 30 days; export csv and jsonl match the rcpt hash (%d with TLS)" % tls_rows)
PY
echo "ctl_deliver_postfix: ok"
