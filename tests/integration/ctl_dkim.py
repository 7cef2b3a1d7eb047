#!/usr/bin/python3
"""DKIM on the send path, end to end: mailpumpctl submit -> Redis ->
mp-deliver (kernel sockets, a signer thread) -> Postfix's smtp-sink, which
dumps every message it gets. Each dumped message is verified by an
independent implementation (python3-dkim), with the public keys that
mp-dkimsign publishes for the same key files.

 1. Keys are checked at start: a missing file, an EC key and an RSA-512
    key each stop mp-deliver with one line naming the file and the reason.
 2. 400 personalised recipients (two domains, a merge field in the
    Subject, the body and a custom header) signed with RSA-2048 and
    Ed25519 at once: every message arrives with two DKIM-Signature headers
    and both verify; h= lists the custom header; one message whose body is
    changed after the fact fails (a check that can fail).
 3. NS dkim in Redis says what this deliverer signs; under
    --dkim-mode required a campaign of another From domain is refused by
    submit (nothing written), and one submitted before the mode was known
    fails at dispatch with the reason, nothing sent; --dkim-domain signs
    it with a domain that has keys; under optional it is sent unsigned,
    with a warning at submit and in the deliverer's log.
usage: ctl_dkim.py MP_DELIVER MAILPUMPCTL MP_DKIMSIGN
"""
import glob
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpcheck import Scratch  # noqa: E402

try:
    import dkim
    import nacl.signing  # noqa: F401  (python3-dkim's Ed25519)
except ImportError as e:
    print("SKIP: %s (apt-get install python3-dkim python3-nacl)" % e)
    sys.exit(77)

DELIVER, CTL, SIGN = sys.argv[1:4]
if not os.path.exists("/usr/sbin/smtp-sink") or not shutil.which("redis-server"):
    print("SKIP: smtp-sink or redis-server not installed")
    sys.exit(77)

W = Scratch("mp-dkim-")
TMP, fail, check, wait_for, connects = W.tmp, W.fail, W.check, W.wait_for, W.port_open
RPORT, SPORT, SINK = W.redis_sink()
URL = "redis://127.0.0.1:%d" % RPORT


def redis(*args):
    return subprocess.run(["redis-cli", "-p", str(RPORT)] + list(args),
                          capture_output=True, text=True, timeout=30).stdout.strip()


wait_for("redis", lambda: redis("ping") == "PONG", 10)
wait_for("smtp-sink", lambda: connects(SPORT), 10)


def openssl(*args):
    p = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "openssl %s: %s" % (" ".join(args), p.stderr))


RSA = os.path.join(TMP, "rsa.pem")
ED = os.path.join(TMP, "ed.pem")
EC = os.path.join(TMP, "ec.pem")
SMALL = os.path.join(TMP, "rsa512.pem")
openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", RSA)
openssl("genpkey", "-algorithm", "ED25519", "-out", ED)
openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", EC)
openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:512", "-out", SMALL)

# the published TXT records of these keys (mp-dkimsign writes them as zone lines)
zdir = os.path.join(TMP, "zone")
os.mkdir(zdir)
p = subprocess.run([SIGN, "--from", "news@sender.test", "--subject", "x",
                    "--text", "/dev/null", "--domain", "sender.test",
                    "--key", RSA + ":rsa1", "--key", ED + ":ed1", zdir],
                   input="a@b.test\n", capture_output=True, text=True, timeout=60)
check(p.returncode == 0, "mp-dkimsign: " + p.stderr)
ZONE = {}
with open(os.path.join(zdir, "dns.zone")) as f:
    for line in f:
        owner, rdata = line.rstrip("\n").split(" IN TXT ", 1)
        ZONE[owner.encode()] = "".join(re.findall(r'"([^"]*)"', rdata)).encode()
check(len(ZONE) == 2, "two TXT records expected, got %r" % list(ZONE))


def dnsfunc(name, timeout=5):
    return ZONE.get(name)


def verifies(m, idx):
    try:
        return dkim.DKIM(m).verify(idx=idx, dnsfunc=dnsfunc)
    except dkim.DKIMException as e:
        print("  signature %d: %s" % (idx, e))
        return False


def deliver(*extra, timeout=120):
    args = [DELIVER, "--redis", URL, "--route", "*=127.0.0.1:%d" % SPORT,
            "--helo", "mailer.sender.test", "--until-idle", "--timeout", "100",
            "--retry-base", "1", "--max-conns", "4", "--msgs-per-conn", "20"] + list(extra)
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


KEYS = "sender.test=rsa1 %s, ed1 %s" % (RSA, ED)

# 1. keys checked at start, before anything is sent
for spec, want in [("sender.test=rsa1 %s/missing.pem" % TMP, "missing.pem"),
                   ("sender.test=ec1 " + EC, "ec.pem"),
                   ("sender.test=small " + SMALL, "rsa512.pem"),
                   ("sender.test=rsa1", "expected SELECTOR FILE")]:
    r = deliver("--dkim", spec)
    check(r.returncode == 1, "--dkim %s: exit %d, want 1" % (spec, r.returncode))
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    check(len(lines) == 1 and want in lines[0],
          "--dkim %s: want one line naming %s, got %r" % (spec, want, r.stderr))
print("ok 1: bad keys refused at start: missing, EC, RSA-512, no file")

# 2. a personalised campaign signed twice, every message verified
N = 400
with open(os.path.join(TMP, "rcpts.csv"), "w") as f:
    f.write("email,first,code\n")
    for i in range(N):
        f.write("u%d@%s.test,Name%d,C%04d\n" % (i, "ab"[i % 2], i, i * 7))
with open(os.path.join(TMP, "body.txt"), "w") as f:
    f.write("Hello {{first}},\n\nyour code is {{code}}.  \n.\n..dots\n\n\n")
sub = subprocess.run([CTL, "--redis", URL, "submit", "--id", "signed", "--from",
                      "news@sender.test", "--subject", "Code {{code}} for {{first}}",
                      "--text", os.path.join(TMP, "body.txt"), "--header",
                      "X-Campaign: c-{{code}}", "--quiet", os.path.join(TMP, "rcpts.csv")],
                     capture_output=True, text=True, timeout=60)
check(sub.returncode == 0, "submit: " + sub.stderr)
r = deliver("--dkim", KEYS)
check(r.returncode == 0, "mp-deliver exit %d: %s" % (r.returncode, r.stderr[-2000:]))
check(redis("hget", "mp:campaign:signed:counts", "delivered") == str(N),
      "delivered %s of %d" % (redis("hget", "mp:campaign:signed:counts", "delivered"), N))
check(redis("hget", "mp:dkim", "domains") == "sender.test" and
      redis("hget", "mp:dkim", "mode") == "optional", "NS dkim not published")


def dumped():
    out = []
    for path in sorted(glob.glob(SINK + "/m.*")):
        with open(path, "rb") as f:
            # smtp-sink stores LF line ends: back to the CRLF of the wire
            raw = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        # smtp-sink puts its own X-Client-* lines and a Received before the message
        i = raw.find(b"DKIM-Signature:")
        j = raw.find(b"From:") if i < 0 else i
        out.append((path, raw[j:] if j >= 0 else raw))
    return out


msgs = dumped()
check(len(msgs) == N, "sink got %d messages, want %d" % (len(msgs), N))
seen = set()
for path, m in msgs:
    sigs = re.findall(rb"^DKIM-Signature:", m, re.M)
    check(len(sigs) == 2, "%s: %d signatures" % (path, len(sigs)))
    for idx in range(2):
        check(verifies(m, idx), "%s: signature %d does not verify" % (path, idx))
    hdr = m.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ")
    check(re.search(rb"a=rsa-sha256;", hdr) and re.search(rb"a=ed25519-sha256;", hdr),
          "%s: not one RSA and one Ed25519 signature" % path)
    hl = re.search(rb"[;\s]h=([^;]*);", hdr).group(1).replace(b" ", b"").lower().split(b":")
    check(b"x-campaign" in hl and hl.count(b"from") == 2 and b"reply-to" not in hl,
          "%s: h= %r" % (path, hl))
    seen.add(re.search(rb"^To: .*$", m, re.M).group(0))
check(len(seen) == N, "personalised To: %d distinct of %d" % (len(seen), N))
path, m = msgs[0]
head, body = m.split(b"\r\n\r\n", 1)
bad = head + b"\r\n\r\n" + body.replace(b"your code", b"your c0de", 1)
check(bad != m and not verifies(bad, 0) and not verifies(bad, 1),
      "a changed body still verifies")
print("ok 2: %d messages, RSA-2048 + Ed25519, all verify; a changed body fails" % N)

# 3. required: refused at submit, failed at dispatch; optional: unsigned
for f in glob.glob(SINK + "/m.*"):
    os.unlink(f)
pre = subprocess.run([CTL, "--redis", URL, "submit", "--id", "early", "--from",
                      "news@other.test", "--subject", "s", "--text",
                      os.path.join(TMP, "body.txt"), "--quiet",
                      os.path.join(TMP, "rcpts.csv")], capture_output=True, text=True,
                     timeout=60)
check(pre.returncode == 0, "submit early: " + pre.stderr)
redis("hset", "mp:dkim", "mode", "required")
late = subprocess.run([CTL, "--redis", URL, "submit", "--id", "late", "--from",
                       "news@other.test", "--subject", "s", "--text",
                       os.path.join(TMP, "body.txt"), "--quiet",
                       os.path.join(TMP, "rcpts.csv")], capture_output=True, text=True,
                      timeout=60)
check(late.returncode != 0 and "no daemon has a key for d=other.test" in late.stderr,
      "submit under required: exit %d %r" % (late.returncode, late.stderr))
check(redis("exists", "mp:campaign:late") == "0", "a refused campaign was written")
r = deliver("--dkim", KEYS, "--dkim-mode", "required")
check(r.returncode == 0, "mp-deliver required: exit %d %s" % (r.returncode, r.stderr[-1500:]))
check(redis("hget", "mp:campaign:early:counts", "failed") == str(N),
      "early: failed %s of %d" % (redis("hget", "mp:campaign:early:counts", "failed"), N))
why = redis("hget", "mp:campaign:early:rcpt", "u3@b.test")
check("DKIM is required" in why and "d=other.test" in why, "reason: " + why)
check(len(dumped()) == 0, "a message of a refused campaign was sent")
print("ok 3: required: submit refuses, dispatch fails with the reason, nothing sent")


def submit(cid, subject, *extra):
    return subprocess.run([CTL, "--redis", URL, "submit", "--id", cid, "--from",
                           "news@other.test", "--subject", subject, "--text",
                           os.path.join(TMP, "body.txt"), "--quiet"] + list(extra) +
                          [os.path.join(TMP, "rcpts.csv")], capture_output=True,
                          text=True, timeout=60)


dd = submit("dd", "dd {{first}}", "--dkim-domain", "sender.test")
check(dd.returncode == 0, "submit with --dkim-domain under required: " + dd.stderr)
redis("hset", "mp:dkim", "mode", "optional")
uns = submit("uns", "uns {{first}}")
check(uns.returncode == 0 and "goes out unsigned" in uns.stderr,
      "submit under optional without a key: exit %d %r" % (uns.returncode, uns.stderr))
r = deliver("--dkim", KEYS)
check(r.returncode == 0, "mp-deliver: exit %d %s" % (r.returncode, r.stderr[-1500:]))
check("event=dkim_unsigned campaign=uns" in r.stderr, "no warning for the unsigned campaign")
msgs = dumped()
check(len(msgs) == 2 * N, "sink got %d, want %d" % (len(msgs), 2 * N))
nd = nu = 0
for path, m in msgs:
    head = m.split(b"\r\n\r\n", 1)[0]
    if re.search(rb"^Subject: dd ", head, re.M):
        nd += 1
        check(b"d=sender.test;" in head and verifies(m, 0),
              "%s: dd not signed with d=sender.test" % path)
    else:
        nu += 1
        check(b"DKIM-Signature:" not in head, "%s: uns is signed" % path)
check(nd == N and nu == N, "dd %d, uns %d" % (nd, nu))
print("ok 4: --dkim-domain signs another From domain with d=sender.test; "
      "optional sends a campaign without a key unsigned, with a warning")
print("PASS")
