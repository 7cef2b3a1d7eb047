#!/usr/bin/env bash
# DKIM through the DPDK daemon, checked by opendkim with real DNS lookups:
# mailpumpctl submits a 1,000-recipient personalised campaign (From
# sender.test, a merge field in Subject, body and a custom header);
# mailpump (one DPDK worker lcore on the veth rig, userspace TCP, STARTTLS,
# the [dkim] signer thread) signs every message with RSA-2048 and Ed25519
# and delivers it to Postfix (daemon_lib.sh). The keys' TXT records, as
# `mailpumpctl dkim-record -c CONF` prints them, are served by dnsmasq in a
# namespace of the test's own (dkimdns.py); opendkim-testmsg verifies each
# delivered message once with only its RSA signature and once with only
# its Ed25519 one, and fails a changed body, a changed Subject and a
# selector not in DNS for both.
# MP_DAEMON_SCALE=K divides the recipient count (the sanitizer build).
# usage: daemon_dkim.sh MAILPUMP MAILPUMPCTL
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/postfix.sh"
. "$(dirname "$0")/daemon_lib.sh"
mp_need_root
mp_need postfix redis-server openssl
[ -x /usr/sbin/opendkim-testmsg ] || { echo "SKIP: opendkim-testmsg not installed (scripts/install-deps)" >&2; exit 77; }
[ -x /usr/sbin/dnsmasq ] || { echo "SKIP: dnsmasq not installed (scripts/install-deps)" >&2; exit 77; }
DM_MAILPUMP=$1
CTL=$2
SCALE=${MP_DAEMON_SCALE:-1}
N=$((1000 / SCALE))

# shellcheck disable=SC2034 # read by postfix.sh
PF_DOMAINS="d0.test d1.test"
dm_setup
# dkimdns.py's namespace and resolv.conf, gone on any exit even if it is killed
DK_NS=mpdk$MP_SUFFIX
MP_NETNS+=("$DK_NS")
trap 'rm -rf "/etc/netns/$DK_NS"; mp_cleanup' EXIT

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$MP_TMP/rsa.pem" 2>/dev/null ||
	mp_fail "openssl RSA"
openssl genpkey -algorithm ED25519 -out "$MP_TMP/ed.pem" || mp_fail "openssl Ed25519"
CONF=$MP_TMP/mailpump.conf
dm_conf "$CONF" "[routes]" "d0.test = 198.19.60.140" "d1.test = 198.19.60.140" \
	"[dkim]" "sender.test = rsa1 $MP_TMP/rsa.pem, ed1 $MP_TMP/ed.pem"

python3 - "$MP_TMP" "$N" <<'PY'
import sys
d, n = sys.argv[1], int(sys.argv[2])
with open(d + "/rcpts.csv", "w") as f, open(d + "/boxes", "w") as b:
    f.write("email,first,code\n")
    for i in range(n):
        addr = "u%05d@d%d.test" % (i, i % 2)
        f.write("%s,Name%05d,C%d\n" % (addr, i, i * 7919 % 100000))
        b.write(addr + "\n")
PY
pf_add_mailboxes "$DM_D" -f "$MP_TMP/boxes" || mp_fail "mailboxes"
printf 'Hello {{first}},\n\nyour code is {{code}}.  \n.\n..dots\n\n\n' >"$MP_TMP/body.txt"
ip netns exec "$DM_RNS" "$CTL" --redis "$DM_URL" submit --id signed --from news@sender.test \
	--subject 'Code {{code}} for {{first}}' --text "$MP_TMP/body.txt" --tls opportunistic \
	--header 'X-Campaign: c-{{code}}' --quiet "$MP_TMP/rcpts.csv" \
	>"$MP_TMP/submit.log" 2>&1 || mp_fail "submit: $(cat "$MP_TMP/submit.log")"

T0=$(date +%s.%N)
dm_start a "$DM_TAP_A" 198.19.60.2/26 198.19.60.1 "$CONF" --lcores 0,1 --until-idle --timeout 600s
dm_wait_exit "$DM_PID" 700 || mp_fail "daemon did not finish within 700 s"
T1=$(date +%s.%N)
[ "$DM_RC" -eq 0 ] || mp_fail "daemon exit $DM_RC: $(tail -5 "$MP_TMP/a.log")"
grep -q 'event=dkim ' "$MP_TMP/a.log" || mp_fail "daemon did not start its signer"
[ "$(R hget mp:campaign:signed:counts delivered)" = "$N" ] ||
	mp_fail "delivered $(R hget mp:campaign:signed:counts delivered) of $N"
pf_wait_delivered "$DM_D" "$N" 300 || mp_fail "postfix delivered $(pf_maildir_count "$DM_D") of $N"
ELAPSED=$(python3 -c "print('%.1f' % ($T1 - $T0))")

mp_py - "$CTL" "$CONF" "$DM_MAILDIR" "$N" "$MP_TMP" "$ELAPSED" "$DK_NS" <<'PY' || mp_fail "checks"
import glob, re, signal, sys, time
from dkimdns import DkimDns, only, records, tampered
from mpcheck import untrace
ctl, conf, root, n, tmp, elapsed, ns = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
dns = DkimDns(tmp, records(ctl, conf, "sender.test", ["rsa1", "ed1"]), ns)
files = sorted(glob.glob(root + "/*/*/new/*") + glob.glob(root + "/*/*/cur/*"))
assert len(files) == n, "maildirs hold %d, want %d" % (len(files), n)
t, seen, bad = time.monotonic(), set(), []
for path in files:
    with open(path, "rb") as f:
        m = untrace(f.read())[1].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if len(re.findall(rb"^DKIM-Signature:", m, re.M)) != 2:
        bad.append("%s: not two signatures" % path)
        continue
    for alg in (b"rsa-sha256", b"ed25519-sha256"):
        rc, why = dns.verify(only(m, alg))
        if rc != 0:
            bad.append("%s: %s: exit %d %s" % (path, alg.decode(), rc, why))
    seen.add(re.search(rb"^To: .*$", m, re.M).group(0))
vt = time.monotonic() - t
assert not bad, "%d failures, first: %s" % (len(bad), bad[:3])
assert len(seen) == n, "personalised To: %d distinct of %d" % (len(seen), n)
for sel in ("rsa1", "ed1"):
    assert dns.queries(sel) >= n, "dnsmasq answered %d queries for %s" % (dns.queries(sel), sel)
for what, m2 in tampered(m).items():
    for alg in (b"rsa-sha256", b"ed25519-sha256"):
        rc, why = dns.verify(only(m2, alg))
        assert rc != 0, "%s still verifies with %s" % (what, alg.decode())
        print("  %s, %s: exit %d (%s)" % (what, alg.decode(), rc, why))
print("ok: %d messages from the DPDK daemon in %s s, every RSA-2048 and Ed25519 signature "
      "verified alone by opendkim-testmsg over DNS (%d TXT queries, %.1f s); changed body / "
      "Subject / unpublished selector fail" % (n, elapsed, dns.queries(), vt))
PY
echo PASS
