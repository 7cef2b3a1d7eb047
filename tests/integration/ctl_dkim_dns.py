#!/usr/bin/python3
"""DKIM checked by opendkim with real DNS lookups, keys published from
mailpumpctl dkim-record.

 1. mailpumpctl dkim-record, from [dkim] of a daemon configuration (-c)
    and from --key: the record's p= is what the openssl CLI makes of the
    same file (RSA: base64 of the SubjectPublicKeyInfo DER of
    `openssl pkey -pubout`; Ed25519: the last 32 octets of that DER, RFC
    8463), k= is rsa / ed25519, every string is <= 255 octets; an unknown
    domain or selector, a missing file and an EC key are refused with a
    message naming what is wrong.
 2. The two records (as printed) are served by dnsmasq in a network
    namespace of the test's own, on its loopback, port 53 (the libc
    resolver of opendkim-testmsg has no port setting; the namespace makes
    the port ours). A 1,000-recipient personalised campaign is submitted
    with mailpumpctl, sent by mp-deliver (RSA-2048 + Ed25519, two
    signatures) to smtp-sink; each message is checked by opendkim-testmsg
    (Debian 12's opendkim 2.11 verifies ed25519-sha256) once with only its
    RSA signature and once with only its Ed25519 one, so each signature
    must verify on its own, its key fetched from dnsmasq (its query log
    shows the lookups). A changed body, a changed Subject and a selector
    not in DNS each fail, for both algorithms (checks that can fail).
usage: ctl_dkim_dns.py MP_DELIVER MAILPUMPCTL
"""
import base64
import glob
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dkimdns import DkimDns, only, tampered  # noqa: E402
from mpcheck import Scratch  # noqa: E402

DELIVER, CTL = sys.argv[1:3]
for prog in ["/usr/sbin/smtp-sink", "/usr/sbin/opendkim-testmsg", "/usr/sbin/dnsmasq"]:
    if not os.path.exists(prog):
        print("SKIP: %s not installed (scripts/install-deps)" % prog)
        sys.exit(77)
if not shutil.which("redis-server") or not shutil.which("ip"):
    print("SKIP: redis-server or ip not installed")
    sys.exit(77)
if os.geteuid() != 0:
    print("SKIP: needs root (a network namespace)")
    sys.exit(77)

T0 = time.monotonic()
W = Scratch("mp-dkimdns-")
TMP, fail, check, wait_for = W.tmp, W.fail, W.check, W.wait_for


def run(args, **kw):
    kw.setdefault("timeout", 60)
    return subprocess.run(args, capture_output=True, **kw)


def openssl(*args):
    p = run(["openssl"] + list(args))
    check(p.returncode == 0, "openssl %s: %s" % (" ".join(args), p.stderr))
    return p.stdout


RSA = os.path.join(TMP, "rsa.pem")
ED = os.path.join(TMP, "ed.pem")
EC = os.path.join(TMP, "ec.pem")
openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", RSA)
openssl("genpkey", "-algorithm", "ED25519", "-out", ED)
openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", EC)
CONF = os.path.join(TMP, "mailpump.conf")
with open(CONF, "w") as f:
    f.write("[dkim]\nmode = optional\n"
            "sender.test = rsa1 %s, ed1 %s\n"
            "ec.test = ec1 %s\n"
            "gone.test = g1 %s/missing.pem\n" % (RSA, ED, EC, TMP))


# 1. dkim-record against the openssl CLI
def record(*args):
    return run([CTL] + list(args), text=True)


RE_REC = re.compile(r'^([^ ]+) IN TXT \( ((?:"[^"]*" ?)+)\)$')


def parse(out, owner):
    m = RE_REC.match(out.strip())
    check(m is not None, "not a TXT record line: %r" % out)
    check(m.group(1) == owner, "owner %r, want %r" % (m.group(1), owner))
    strs = re.findall(r'"([^"]*)"', m.group(2))
    check(all(0 < len(s) <= 255 for s in strs), "a string over 255 octets: %r" % strs)
    return strs, dict(kv.strip().split("=", 1) for kv in "".join(strs).split(";"))


der = {k: openssl("pkey", "-in", k, "-pubout", "-outform", "DER") for k in (RSA, ED)}
RECS = {}
for sel, key, kt, p in [("rsa1", RSA, "rsa", base64.b64encode(der[RSA]).decode()),
                        ("ed1", ED, "ed25519", base64.b64encode(der[ED][-32:]).decode())]:
    owner = "%s._domainkey.sender.test." % sel
    r = record("-c", CONF, "dkim-record", "sender.test", sel)
    check(r.returncode == 0, "dkim-record %s: exit %d %s" % (sel, r.returncode, r.stderr))
    strs, tags = parse(r.stdout, owner)
    check(tags == {"v": "DKIM1", "k": kt, "p": p}, "%s: tags %r, want k=%s p=%s" %
          (sel, tags, kt, p))
    r2 = record("--key", key, "dkim-record", "sender.test", sel)
    check(r2.returncode == 0 and r2.stdout == r.stdout, "--key %s differs from -c" % key)
    RECS[owner[:-1]] = strs
check(len(RECS["rsa1._domainkey.sender.test"]) == 2, "RSA-2048 record not in two strings")
for args, code, want in [
        (["-c", CONF, "dkim-record", "other.test", "rsa1"], 3, "no key for domain 'other.test'"),
        (["-c", CONF, "dkim-record", "sender.test", "nope"], 3, "no selector 'nope' (it has: rsa1, ed1)"),
        (["-c", CONF, "dkim-record", "gone.test", "g1"], 1, "missing.pem: No such file"),
        (["-c", CONF, "dkim-record", "ec.test", "ec1"], 1, "EC key"),
        (["--key", EC, "dkim-record", "ec.test", "ec1"], 1, "EC key"),
        (["-c", TMP + "/none.conf", "dkim-record", "a.test", "s"], 1, "none.conf"),
        (["-c", CONF, "dkim-record", "sender.test"], 1, "expected DOMAIN SELECTOR")]:
    r = record(*args)
    check(r.returncode == code and want in r.stderr and r.stdout == "",
          "%s: exit %d %r, want %d and %r" % (" ".join(args), r.returncode, r.stderr, code, want))
print("ok 1: dkim-record p= matches openssl pkey -pubout (RSA SPKI, Ed25519 raw), "
      "strings <= 255; unknown domain/selector, missing file, EC key refused")

# 2. the records in DNS (dnsmasq in a namespace of ours), a campaign, opendkim
DNS = DkimDns(TMP, RECS)

RPORT, SPORT, SINK = W.redis_sink()
URL = "redis://127.0.0.1:%d" % RPORT


def redis(*args):
    return run(["redis-cli", "-p", str(RPORT)] + list(args), text=True).stdout.strip()


N = 1000
with open(os.path.join(TMP, "rcpts.csv"), "w") as f:
    f.write("email,first,code\n")
    for i in range(N):
        f.write("u%d@%s.test,Name%d,C%04d\n" % (i, "abc"[i % 3], i, i * 7))
with open(os.path.join(TMP, "body.txt"), "w") as f:
    f.write("Hello {{first}},\n\nyour code is {{code}}.  \n.\n..dots\n\n\n")
sub = run([CTL, "--redis", URL, "submit", "--id", "dns", "--from", "news@sender.test",
           "--subject", "Code {{code}} for {{first}}", "--text",
           os.path.join(TMP, "body.txt"), "--header", "X-Campaign: c-{{code}}", "--quiet",
           os.path.join(TMP, "rcpts.csv")], text=True)
check(sub.returncode == 0, "submit: " + sub.stderr)
t = time.monotonic()
r = run([DELIVER, "--redis", URL, "--route", "*=127.0.0.1:%d" % SPORT,
         "--helo", "mailer.sender.test", "--until-idle", "--timeout", "200",
         "--retry-base", "1", "--max-conns", "8", "--msgs-per-conn", "50",
         "--dkim", "sender.test=rsa1 %s, ed1 %s" % (RSA, ED)], text=True, timeout=240)
send_s = time.monotonic() - t
check(r.returncode == 0, "mp-deliver exit %d: %s" % (r.returncode, r.stderr[-2000:]))
got = redis("hget", "mp:campaign:dns:counts", "delivered")
check(got == str(N), "delivered %s of %d" % (got, N))


def dumped():
    out = []
    for path in sorted(glob.glob(SINK + "/m.*")):
        with open(path, "rb") as f:
            raw = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        i = raw.find(b"DKIM-Signature:")
        out.append((path, raw[i:] if i >= 0 else raw))
    return out


msgs = dumped()
check(len(msgs) == N, "sink got %d messages, want %d" % (len(msgs), N))
t = time.monotonic()
seen = set()
for path, m in msgs:
    check(len(re.findall(rb"^DKIM-Signature:", m, re.M)) == 2, "%s: not two signatures" % path)
    for alg in (b"rsa-sha256", b"ed25519-sha256"):
        rc, why = DNS.verify(only(m, alg))
        check(rc == 0, "%s: %s does not verify: exit %d %s" % (path, alg.decode(), rc, why))
    seen.add(re.search(rb"^To: .*$", m, re.M).group(0))
verify_s = time.monotonic() - t
check(len(seen) == N, "personalised To: %d distinct of %d" % (len(seen), N))
for sel in ("rsa1", "ed1"):
    check(DNS.queries(sel) >= N, "dnsmasq answered %d queries for %s" % (DNS.queries(sel), sel))
nq = DNS.queries()

# checks that can fail: body, Subject, a selector not in DNS
path, m = msgs[0]
bads = tampered(m)
for what, bad in bads.items():
    for alg in (b"rsa-sha256", b"ed25519-sha256"):
        rc, why = DNS.verify(only(bad, alg))
        check(rc != 0, "%s still verifies with %s" % (what, alg.decode()))
        print("  %s, %s: exit %d (%s)" % (what, alg.decode(), rc, why))
print("ok 2: %d messages sent by mp-deliver in %.1f s, each RSA-2048 and Ed25519 "
      "signature verified alone by opendkim-testmsg over DNS (%d TXT queries, %.1f s); "
      "changed body / Subject / unpublished selector fail" % (N, send_s, nq, verify_s))
print("PASS (%.0f s)" % (time.monotonic() - T0))
