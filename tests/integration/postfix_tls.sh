#!/usr/bin/env bash
# mp-smtpsend against real Postfix smtpd with STARTTLS, client and server in
# their own network namespaces (postfix.sh harness):
#  - 1,000 messages over 50 concurrent sessions under "verify": every
#    recipient delivered exactly once into its own maildir, every file
#    byte-exact against the source after Postfix's trace headers, with a
#    body full of dot-stuffing traps (lone ".", "..", leading dots, a
#    998-octet line and one that stuffing makes 999, a final "." line);
#    every JSON TLS record TLSv1.3, verify ok;
#  - the same message from a CRLF file and one without a final newline;
#  - template + CSV personalisation checked per recipient (Subject, decoded
#    text, quoted CSV field, UTF-8 through RFC 2047 / quoted-printable);
#  - verify against the wrong CA, wrong host name, expired certificate,
#    self-signed and TLS 1.0-only servers: each deferred at stage "tls"
#    with its reason in the JSON and nothing delivered; "required" refuses
#    the TLS 1.0 and no-STARTTLS servers but delivers (encrypted) to the
#    unverifiable ones while still recording why they did not verify;
#  - opportunistic to a server without STARTTLS: plaintext delivery, tls null;
#  - opportunistic with --tls-min-opportunistic 1.0 to the TLS 1.0-only
#    server: delivered over TLS 1.0;
#  - a second connection to the same server resumes the TLS session.
#
# usage: postfix_tls.sh MP_SMTPSEND
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/postfix.sh"
. "$(dirname "$0")/pf_check.sh"
mp_need_root
mp_need postfix
SEND=$1
[ -x "$SEND" ] || mp_fail "mp-smtpsend not found: $SEND"

CNS=mppfc$MP_SUFFIX
SNS=mppfs$MP_SUFFIX
D=$MP_TMP/pf
mp_netns "$CNS"
mp_netns "$SNS"
pf_link "$CNS" "$SNS" || mp_fail "veth"
pf_make_certs "$D/certs" || mp_fail "certificates"
CA=$D/certs/ca.pem
# One domain per listener, so "nothing delivered to them" is a count.
pf_start "$SNS" "$D" \
	"ip=198.19.20.10;name=mx1.pf.test;tls=good;domains=a.test,b.test,tpl.test,resume.test" \
	"ip=198.19.20.11;name=plain.pf.test;tls=none;domains=plain.test" \
	"ip=198.19.20.12;name=old.pf.test;tls=expired;domains=expired.test" \
	"ip=198.19.20.13;name=bad.pf.test;tls=badname;domains=badname.test" \
	"ip=198.19.20.14;name=self.pf.test;tls=selfsigned;domains=selfsigned.test" \
	"ip=198.19.20.15;name=legacy.pf.test;tls=tls10;domains=tls10.test" ||
	mp_fail "pf_start"
MAILDIR=$(pf_maildir_root "$D")

# send NAME SERVER_NAME IP ARGS...: one mp-smtpsend run from the client
# namespace (pf_run in pf_check.sh); its JSON lines end up in $OUT.
send() {
	local name=$1 host=$2 ip=$3
	shift 3
	pf_run "$name" 0 "$CNS" "$SEND" --server "$host:25" --connect "$ip" \
		--from sender@pf.test --helo client.pf.test --timeout 300 "$@"
}

# check NAME PYTHON: assert over the last run's records r (list of dicts),
# summary s and maildir root M (pf_check in pf_check.sh).
check() {
	pf_check "$OUT" "$MAILDIR" "$1" "$2"
}

# --- the trap message ------------------------------------------------------
pf_make_traps "$MP_TMP"
python3 - "$MP_TMP" <<'PY'
import sys
d = sys.argv[1]
with open(d + "/bulk.txt", "w") as f:
    for i in range(1000):
        f.write("bulk%04d@%s\n" % (i, "a.test" if i % 2 else "b.test"))
with open(d + "/crlf.txt", "w") as f:
    for i in range(10):
        f.write("crlf%02d@a.test\n" % i)
PY
pf_add_mailboxes "$D" -f "$MP_TMP/bulk.txt" || mp_fail "mailboxes"
pf_add_mailboxes "$D" -f "$MP_TMP/crlf.txt" || mp_fail "mailboxes"
pf_add_mailboxes "$D" nonl@a.test || mp_fail "mailboxes"

# --- 1,000 messages, 50 sessions, verify -------------------------------------
# Server-side view of the concurrency, sampled while the run lasts.
( for _ in $(seq 3000); do
	ip netns exec "$SNS" ss -Htn state established '( sport = :25 )' | wc -l
	sleep 0.05
  done >"$MP_TMP/conc.txt" ) &
SAMPLER=$!
MP_PIDS+=("$SAMPLER")
send "bulk" mx1.pf.test 198.19.20.10 --rcpt-file "$MP_TMP/bulk.txt" \
	--message "$MP_TMP/traps.eml" --sessions 50 --msgs-per-conn 20 --tls verify --ca "$CA"
kill "$SAMPLER" 2>/dev/null
wait "$SAMPLER" 2>/dev/null
PEAK=$(sort -n "$MP_TMP/conc.txt" | tail -1)
echo "info: peak established SMTP connections seen by the server: $PEAK"
[ "${PEAK:-0}" -ge 2 ] || mp_fail "the server never saw two sessions at once"
check "bulk, verify with the right CA: 1000 delivered, 50 TLS 1.3 sessions" '
verified_bulk(1000, 50, 20)
for x in r:
    assert x["esc"].startswith("2."), x
    t = x["tls"]
    assert t["cipher"].startswith("TLS_") and "pf.test" in t["subject"], t
    assert "mailpump ca" in t["issuer"], t
'
pf_wait_queue_empty "$D" 300 || mp_fail "queue did not drain after the bulk run"
check "bulk maildirs: each recipient once, byte-exact" '
assert count("a.test") + count("b.test") == 1000, (count("a.test"), count("b.test"))
exact(addrs("bulk.txt"), read("traps.eml"), tls="TLSv1.3")
'

# --- line-ending variants ------------------------------------------------------
send "crlf" mx1.pf.test 198.19.20.10 --rcpt-file "$MP_TMP/crlf.txt" \
	--message "$MP_TMP/traps-crlf.eml" --sessions 3 --tls verify --ca "$CA"
send "nonl" mx1.pf.test 198.19.20.10 --rcpt nonl@a.test \
	--message "$MP_TMP/traps-nonl.eml" --tls verify --ca "$CA"
pf_wait_queue_empty "$D" 60 || mp_fail "queue did not drain"
check "CRLF source and missing final newline: same bytes delivered" '
src = read("traps.eml")
for a in ["crlf%02d@a.test" % i for i in range(10)] + ["nonl@a.test"]:
    assert message(a)[1] == src, a
'

# --- template + CSV ------------------------------------------------------------
python3 - "$MP_TMP" <<'PY'
import csv, sys
d = sys.argv[1]
rows = [("tpl%02d@tpl.test" % i, "Name %d" % i, str(1000 + i)) for i in range(24)]
rows[3] = ("tpl03@tpl.test", "Smith, Jo", "1003")       # quoted CSV field
rows[5] = ("tpl05@tpl.test", "Zoë Ångström", "1005")    # UTF-8: RFC 2047 + QP
rows[7] = ("tpl07@tpl.test", ".Dot", "1007")             # merge value starting a line with "."
with open(d + "/tpl.csv", "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(("email", "name", "code"))
    w.writerows(rows)
open(d + "/tpl.txt", "w").write(
    "{{name}}\nHello {{name}},\n.your code is {{code}}\n.\n{{missing|nobody}}\nbye\n")
open(d + "/tpl.rcpts", "w").write("".join(r[0] + "\n" for r in rows))
PY
pf_add_mailboxes "$D" -f "$MP_TMP/tpl.rcpts" || mp_fail "mailboxes"
send "template" mx1.pf.test 198.19.20.10 --rcpt-csv "$MP_TMP/tpl.csv" \
	--subject "Hi {{name}} #{{code}}" --text "$MP_TMP/tpl.txt" --sessions 4 --tls verify --ca "$CA"
pf_wait_queue_empty "$D" 60 || mp_fail "queue did not drain"
check "template + CSV: personalised per recipient" '
import csv
rows = list(csv.DictReader(open(path("tpl.csv"), newline="")))
assert len(r) == len(rows) == 24 and s["delivered"] == 24, s
for row in rows:
    m = email.message_from_bytes(message(row["email"])[1], policy=policy.default)
    assert m["To"].addresses[0].addr_spec == row["email"], m["To"]
    assert str(m["Subject"]) == "Hi %s #%s" % (row["name"], row["code"]), (row, str(m["Subject"]))
    want = "%s\nHello %s,\n.your code is %s\n.\nnobody\nbye\n" % (row["name"], row["name"], row["code"])
    got = m.get_content()
    assert got == want, (row, got)
'

# --- TLS failures, verify and required -----------------------------------------
send "wrong CA" mx1.pf.test 198.19.20.10 --rcpt wrongca@resume.test \
	--message "$MP_TMP/traps.eml" --tls verify --ca "$D/certs/otherca.pem"
check "verify, wrong CA: unknown-ca, not delivered" '
assert len(r) == 1 and r[0]["outcome"] == "deferred" and r[0]["stage"] == "tls", r
assert r[0]["tls"]["verify"] == "unknown-ca", r[0]["tls"]
'
for c in "expired old.pf.test 198.19.20.12 expired" \
	"badname bad.pf.test 198.19.20.13 name-mismatch" \
	"selfsigned self.pf.test 198.19.20.14 self-signed" \
	"tls10 legacy.pf.test 198.19.20.15 protocol-version"; do
	read -r kind host ip reason <<<"$c"
	set -- "$kind" "$host" "$ip" "$reason"
	send "verify $1" "$2" "$3" --rcpt "v1@$1.test" --rcpt "v2@$1.test" \
		--message "$MP_TMP/traps.eml" --tls verify --ca "$CA"
	check "verify, $1 server: $4, not delivered" "
assert len(r) == 2 and s['delivered'] == 0, s
tls_refused('$4')
"
	send "required $1" "$2" "$3" --rcpt "q1@$1.test" --message "$MP_TMP/traps.eml" --tls required --ca "$CA"
	if [ "$1" = tls10 ]; then
		check "required, tls10 server: protocol-version, not delivered" "
assert len(r) == 1 and r[0]['outcome'] == 'deferred' and r[0]['stage'] == 'tls', r
assert r[0]['tls']['verify'] == 'protocol-version', r
"
	else
		# required means encrypted, not authenticated: delivered, with the
		# reason it would not have verified still on record.
		check "required, $1 server: encrypted delivery, verify=$4 recorded" "
assert len(r) == 1 and r[0]['outcome'] == 'delivered', r
assert r[0]['tls']['version'] == 'TLSv1.3' and r[0]['tls']['verify'] == '$4', r
"
	fi
done
send "verify plain" plain.pf.test 198.19.20.11 --rcpt v1@plain.test --message "$MP_TMP/traps.eml" --tls verify --ca "$CA"
check "verify, no STARTTLS: not delivered" '
assert len(r) == 1 and r[0]["outcome"] == "deferred" and r[0]["stage"] == "tls" and r[0]["tls"] is None, r
assert "STARTTLS" in r[0]["text"], r
'
send "required plain" plain.pf.test 198.19.20.11 --rcpt q1@plain.test --message "$MP_TMP/traps.eml" --tls required
check "required, no STARTTLS: not delivered" '
assert len(r) == 1 and r[0]["outcome"] == "deferred" and r[0]["tls"] is None, r
'
send "opportunistic plain" plain.pf.test 198.19.20.11 --rcpt o1@plain.test --message "$MP_TMP/traps.eml" --tls opportunistic
check "opportunistic, no STARTTLS: plaintext delivery, tls null" '
assert len(r) == 1 and r[0]["outcome"] == "delivered" and r[0]["tls"] is None, r
'

# the opportunistic floor below min_version: the TLS 1.0-only server gets
# TLS 1.0 instead of a plaintext fallback ("required" above still refused it)
send "opportunistic tls10, floor 1.0" legacy.pf.test 198.19.20.15 --rcpt o1@tls10.test \
	--message "$MP_TMP/traps.eml" --tls opportunistic --tls-min-opportunistic 1.0
check "opportunistic, tls10 server, floor 1.0: delivered over TLS 1.0" '
assert len(r) == 1 and r[0]["outcome"] == "delivered", r
assert r[0]["tls"] is not None and r[0]["tls"]["version"] == "TLSv1", r[0]["tls"]
'

# --- resumption ------------------------------------------------------------------
send "resume" mx1.pf.test 198.19.20.10 --rcpt r1@resume.test --rcpt r2@resume.test \
	--message "$MP_TMP/traps.eml" --sessions 1 --msgs-per-conn 1 --tls verify --ca "$CA"
check "second connection to the same server resumes" '
a, b = resumed()
assert a["session"] != b["session"], r
'

# --- what reached Postfix --------------------------------------------------------
pf_wait_queue_empty "$D" 60 || mp_fail "queue did not drain"
check "deliveries per server: none to the refused ones, TLS 1.0 only under the lowered floor" '
want = {"expired.test": 1, "badname.test": 1, "selfsigned.test": 1, "tls10.test": 1,
        "plain.test": 1, "resume.test": 2}
got = {d: count(d) for d in want}
assert got == want, got
'
pf_no_bare_lf "$D"
exit 0
