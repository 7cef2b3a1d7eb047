#!/usr/bin/env bash
# The Postfix harness (postfix.sh) proves itself with clients we did not
# write: openssl s_client sees each listener's TLS personality (TLS 1.3 and
# a verified chain on the good one; expired, wrong name, self-signed and
# TLS 1.0-only failing for exactly that reason; no STARTTLS on the plain
# one) and a resumed second session; python3 smtplib delivers over
# STARTTLS into per-user and catch-all maildirs, dot-unstuffed and with
# Postfix's TLS Received header; a listener's domain list and the relay
# restriction refuse foreign recipients; mailboxes added while smtpd
# processes hold the table open are used by every one of them at once;
# stopping the instance leaves no
# Postfix process behind.
#
# usage: postfix_harness.sh
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/postfix.sh"
mp_need_root
mp_need postfix

CNS=mppfc$MP_SUFFIX
SNS=mppfs$MP_SUFFIX
D=$MP_TMP/pf
mp_netns "$CNS"
mp_netns "$SNS"
pf_link "$CNS" "$SNS" || mp_fail "veth"
pf_make_certs "$D/certs" || mp_fail "certificates"
pf_start "$SNS" "$D" \
	"ip=198.19.20.10;name=mx1.pf.test;tls=good" \
	"ip=198.19.20.11;name=plain.pf.test;tls=none" \
	"ip=198.19.20.12;name=old.pf.test;tls=expired" \
	"ip=198.19.20.13;name=bad.pf.test;tls=badname" \
	"ip=198.19.20.14;name=self.pf.test;tls=selfsigned" \
	"ip=198.19.20.15;name=legacy.pf.test;tls=tls10" \
	"ip=198.19.20.16;name=only-a.pf.test;tls=good;domains=a.test" \
	"ip=198.19.20.17;name=b.pf.test;tls=good;domains=b.test" ||
	mp_fail "pf_start"
C="ip netns exec $CNS"
CA=$D/certs/ca.pem

# sc IP NAME [s_client args]: one STARTTLS handshake with verification.
sc() {
	local ip=$1 name=$2
	shift 2
	(sleep 0.5; echo QUIT) | $C timeout 15 openssl s_client -starttls smtp \
		-connect "$ip:25" -servername "$name" -verify_hostname "$name" \
		-CAfile "$CA" -verify_return_error "$@" 2>&1
}
expect() {  # NAME PATTERN OUTPUT
	grep -q -- "$2" <<<"$3" || { echo "$3" | tail -15 >&2; mp_fail "$1: no '$2'"; }
	echo "ok: $1"
}

out=$(sc 198.19.20.10 mx1.pf.test)
expect "good: TLS 1.3" "New, TLSv1.3" "$out"
expect "good: verified" "Verify return code: 0 (ok)" "$out"
out=$(sc 198.19.20.10 mx1.pf.test -tls1_2)
expect "good: TLS 1.2 offered too" "New, TLSv1.2" "$out"
expect "expired" "certificate has expired" "$(sc 198.19.20.12 old.pf.test)"
expect "badname" "hostname mismatch" "$(sc 198.19.20.13 bad.pf.test)"
expect "selfsigned" "self-signed certificate" "$(sc 198.19.20.14 self.pf.test)"
expect "tls10: modern client refused" "alert protocol version" \
	"$(sc 198.19.20.15 legacy.pf.test -no_tls1 -no_tls1_1)"
expect "tls10: TLS 1.0 client served" "New, TLSv1.0, " \
	"$(sc 198.19.20.15 legacy.pf.test -tls1 -cipher DEFAULT:@SECLEVEL=0)"
expect "none: no STARTTLS" "Didn't find STARTTLS" "$(sc 198.19.20.11 plain.pf.test)"

# Resumption: a ticket from the first session resumes the second (both
# TLS 1.3 tickets and the TLS 1.2 path), served by different smtpd
# processes through tlsmgr's keys.
for v in -tls1_3 -tls1_2; do
	sc 198.19.20.10 mx1.pf.test $v -sess_out "$MP_TMP/sess$v" >/dev/null
	[ -s "$MP_TMP/sess$v" ] || mp_fail "no session saved ($v)"
	expect "resumed ($v)" "^Reused, TLSv1" "$(sc 198.19.20.10 mx1.pf.test $v -sess_in "$MP_TMP/sess$v")"
done

pf_add_mailboxes "$D" u1@a.test U2@B.test || mp_fail "pf_add_mailboxes"
pf_add_mailboxes "$D" "../x@a.test" 2>/dev/null && mp_fail "pf_add_mailboxes took a path"

$C python3 - "$CA" <<'PY' || mp_fail "smtplib"
import smtplib, ssl, sys

ca = sys.argv[1]
body = b"line one\r\n.starts with a dot\r\n.\r\n..\r\n" + b"x" * 998 + b"\r\nlast\r\n"
msg = (b"From: sender@pf.test\r\nTo: list@a.test\r\nSubject: harness\r\n"
       b"Message-ID: <h1@pf.test>\r\n\r\n" + body)

def session(ip, name, tls=True):
    s = smtplib.SMTP(local_hostname="client.pf.test", timeout=15)
    s.connect(ip, 25)
    s._host = name  # SNI and name check
    s.ehlo()
    if tls:
        s.starttls(context=ssl.create_default_context(cafile=ca))
        s.ehlo()
    return s

s = session("198.19.20.10", "mx1.pf.test")
assert s.sock.version() == "TLSv1.3", s.sock.version()
refused = s.sendmail("sender@pf.test", ["u1@a.test", "u2@b.test", "other@a.test"], msg)
assert refused == {}, refused
try:
    s.sendmail("sender@pf.test", ["x@elsewhere.test"], msg)
    raise SystemExit("relay to elsewhere.test accepted")
except smtplib.SMTPRecipientsRefused as e:
    assert e.recipients["x@elsewhere.test"][0] == 554, e.recipients
s.quit()

s = session("198.19.20.11", "plain.pf.test", tls=False)
assert not s.has_extn("starttls"), "plain listener offers STARTTLS"
s.sendmail("sender@pf.test", ["plain@b.test"], msg)
s.quit()

s = session("198.19.20.16", "only-a.pf.test")
try:
    s.sendmail("sender@pf.test", ["u2@b.test"], msg)
    raise SystemExit("only-a listener accepted b.test")
except smtplib.SMTPRecipientsRefused as e:
    assert e.recipients["u2@b.test"][0] == 554, e.recipients
s.sendmail("sender@pf.test", ["a2@a.test"], msg)
s.quit()
print("ok: smtplib sessions")
PY

pf_wait_queue_empty "$D" 30 || mp_fail "queue did not drain"
[ "$(pf_maildir_count "$D")" -eq 5 ] || mp_fail "expected 5 deliveries, got $(pf_maildir_count "$D")"
[ "$(pf_maildir_count "$D" a.test)" -eq 3 ] || mp_fail "a.test deliveries"
M=$(pf_maildir_root "$D")
python3 - "$M" <<'PY' || mp_fail "maildir contents"
import glob, os, sys

root = sys.argv[1]
body = b"line one\n.starts with a dot\n.\n..\n" + b"x" * 998 + b"\nlast\n"

def one(path):
    files = glob.glob(os.path.join(root, path, "new", "*"))
    assert len(files) == 1, (path, files)
    data = open(files[0], "rb").read()
    head, _, got = data.partition(b"\n\n")
    assert got == body, (path, got[:200])
    return head

h = one("a.test/u1")
assert b"Delivered-To: u1@a.test" in h and b"using TLSv1.3" in h, h
h = one("b.test/u2")
assert b"Delivered-To: u2@b.test" in h, h
h = one("b.test/_any")
assert b"Delivered-To: plain@b.test" in h and b"using TLS" not in h, h
anyfiles = glob.glob(os.path.join(root, "a.test/_any/new/*"))
assert len(anyfiles) == 2, anyfiles
print("ok: maildirs byte-exact, per-user and catch-all")
PY

# Mailboxes added while smtpd processes hold the table open, in the same
# second as the table they opened (PF_TEST_MTIME forces what a fast
# machine does by chance; an in-place rebuild then went unnoticed and a
# share of the new users fell through to the catch-all, or got 550 under
# PF_UNKNOWN=reject). Five idle smtpd processes of the plain listener have
# the old table open; every new user must land in its own maildir.
$C python3 - <<'PY' || mp_fail "open five smtpd sessions"
import smtplib
ss = [smtplib.SMTP("198.19.20.11", 25, local_hostname="client.pf.test", timeout=15) for _ in range(5)]
for s in ss:
    s.ehlo()
    assert s.rcpt("warm@b.test")[0] in (250, 503)
for s in ss:
    s.quit()
PY
for i in $(seq -w 1 200); do echo "swap$i@b.test"; done >"$MP_TMP/swap.txt"
PF_TEST_MTIME=$(stat -c %Y "$D/conf/mailboxes.db") pf_add_mailboxes "$D" -f "$MP_TMP/swap.txt" ||
	mp_fail "pf_add_mailboxes (same second)"
$C python3 - "$MP_TMP/swap.txt" <<'PY' || mp_fail "smtplib after the swap"
import smtplib, sys, threading
rcpts = [l.strip() for l in open(sys.argv[1])]
errs = []
def one(part):
    try:
        s = smtplib.SMTP("198.19.20.11", 25, local_hostname="client.pf.test", timeout=30)
        s.sendmail("sender@pf.test", part, b"Subject: swap\r\n\r\nswap\r\n")
        s.quit()
    except Exception as e:
        errs.append(repr(e))
ts = [threading.Thread(target=one, args=(rcpts[k::5],)) for k in range(5)]
for t in ts: t.start()
for t in ts: t.join()
assert not errs, errs
PY
pf_wait_queue_empty "$D" 60 || mp_fail "queue did not drain after the swap"
python3 - "$M" "$MP_TMP/swap.txt" <<'PY' || mp_fail "mailboxes added at run time not used by every daemon"
import glob, os, sys
root = sys.argv[1]
miss = [a for a in (l.strip() for l in open(sys.argv[2]))
        if len(glob.glob(os.path.join(root, "b.test", a.split("@")[0], "new", "*"))) != 1]
anyb = len(glob.glob(os.path.join(root, "b.test/_any/new/*")))
assert not miss and anyb == 1, "%d of 200 not in their own maildir (%s...), b.test/_any holds %d" % (len(miss), miss[:3], anyb)
print("ok: 200 mailboxes added in the same second, each used at once")
PY

pid=$PF_MASTER_PID
pf_stop "$D"
kill -0 -- "-$pid" 2>/dev/null && mp_fail "Postfix processes left after pf_stop"
echo "ok: stopped"
exit 0
