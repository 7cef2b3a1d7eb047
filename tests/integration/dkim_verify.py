#!/usr/bin/python3
"""DKIM signatures of our rendered messages, checked by an independent
verifier: python3-dkim (dkim.verify), with a dnsfunc that answers from the
zone-file TXT records mp-dkimsign printed for its keys.

Keys come from the openssl CLI: RSA-1024, RSA-2048, RSA-4096, Ed25519.
For each key alone and for RSA-2048 + Ed25519 together, 120 personalised
messages (UTF-8 names, quoted-printable and 8bit bodies, lines starting
with dots, multipart, an unsubscribe URL) are rendered and signed by
mp-dkimsign and every signature must verify. Then each message is
tampered with: a changed body, a changed Subject or To, a second From
(top or bottom) must fail; a relaxed-equivalent change (re-cased and
re-spaced headers, trailing blanks in the body) and headers added that we
did not sign (an absent Reply-To, Cc or X-Mailer, a relay's X- header)
must pass; h= lists what is present and nothing absent.
Over-signing is shown without python3-dkim's own guard (it appends a From
to every h=): with the guard off, a second From still fails our
signature, while a python3-dkim signature that does not over-sign lets
it through, so the check can tell the two apart. --split (prepare on one
thread, sign on another) must give byte-identical messages.

Skips (77) when python3-dkim or PyNaCl (its Ed25519) cannot be imported.
Usage: dkim_verify.py MP-DKIMSIGN
"""
import atexit
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import dkim
    import nacl.signing  # noqa: F401  (python3-dkim's Ed25519)
except ImportError as e:
    print("SKIP: %s (apt-get install python3-dkim python3-nacl)" % e)
    sys.exit(77)

BIN = sys.argv[1]
FAILS = []
N = 120
T = 1796000000
TMP = tempfile.mkdtemp(prefix="mp-dkim-verify-")
atexit.register(shutil.rmtree, TMP, True)


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL:", what, file=sys.stderr)


def genkey(name, *opts):
    path = os.path.join(TMP, name + ".pem")
    subprocess.run(["openssl", "genpkey", "-out", path] + list(opts),
                   check=True, capture_output=True, timeout=300)
    return path


def recipients():
    rnd = random.Random(8463)
    firsts = ["Ann", "Zoë", "José", "Анна", "李", "O'Brien", "Ann  Marie",
              ".dot", "Bob", "Ünal", "Chloé"]
    out = []
    for i in range(N):
        first = rnd.choice(firsts)
        note = rnd.choice([
            "short note",
            "trailing blanks   ",
            "line one\\n.line two starts with a dot\\n\\n",
            "long " + "x" * rnd.randint(900, 1300),
            "euro € and tabs\there",
            "",
        ])
        out.append("rcpt%03d@example.net\tfirst=%s\tlast=Nr %d\tcode=C%04d\tnote=%s"
                   % (i, first, i, rnd.randint(0, 9999), note))
    return "\n".join(out) + "\n"


TEXT = ("Hello {{first}} {{last}},\n\nYour code is {{code}}.   \n{{note}}\n"
        ".\n..leading dots\n\tTabbed  line\t\n\n\n")
HTML = "<p>Hello {{first}}</p>\n<p>{{note}}</p>\n"


def sign(name, keys, split=False, multipart=True, extra=()):
    out = os.path.join(TMP, name)
    os.mkdir(out)
    with open(os.path.join(TMP, "body.txt"), "w") as f:
        f.write(TEXT)
    with open(os.path.join(TMP, "body.html"), "w") as f:
        f.write(HTML)
    args = [BIN, "--from", "news@example.com", "--from-name", "News {{first}}",
            "--subject", "Hello {{first}}, your code {{code}}",
            "--text", os.path.join(TMP, "body.txt"), "--time", str(T),
            "--header", "X-Campaign: spring-{{code}}", "--sign", "X-Mailer"]
    if multipart:
        args += ["--html", os.path.join(TMP, "body.html"),
                 "--unsub", "https://example.com/u?c={{code}}&e={{email}}"]
    for k in keys:
        args += ["--key", k]
    if split:
        args.append("--split")
    args += list(extra) + [out]
    p = subprocess.run(args, input=recipients(), capture_output=True,
                       text=True, timeout=300)
    check(p.returncode == 0, "%s: mp-dkimsign exit %d: %s" % (name, p.returncode, p.stderr))
    stats = json.loads(p.stdout.splitlines()[-1]) if p.returncode == 0 else {}
    zone = {}
    with open(os.path.join(out, "dns.zone")) as f:
        for line in f:
            owner, rdata = line.rstrip("\n").split(" IN TXT ", 1)
            strings = re.findall(r'"([^"]*)"', rdata)
            check(all(len(s) <= 255 for s in strings), "TXT string over 255")
            check(rdata == " ".join('"%s"' % s for s in strings),
                  "TXT rdata is not quoted strings: %r" % rdata)
            zone[owner.encode()] = "".join(strings).encode()
    msgs = []
    for i in range(N):
        with open(os.path.join(out, "%05d.eml" % i), "rb") as f:
            msgs.append(f.read())
    return msgs, zone, stats


def dnsfunc(zone):
    def f(name, timeout=5):
        return zone.get(name)
    return f


def nsigs(m):
    return len(re.findall(rb"^DKIM-Signature:", m, re.M | re.I))


WHY = []     # python3-dkim's reasons for the last verify_all's failures


def verify(m, zone, idx):
    try:
        ok = dkim.DKIM(m).verify(idx=idx, dnsfunc=dnsfunc(zone))
        if not ok:
            WHY.append("signature %d does not verify" % idx)
        return ok
    except dkim.DKIMException as e:
        WHY.append("signature %d: %s" % (idx, e))
        return False


def verify_all(m, zone):
    del WHY[:]
    return [verify(m, zone, i) for i in range(nsigs(m))]


class NoFromGuard(dkim.DKIM):
    """python3-dkim adds a 'from' to every h= it verifies (Debian bug
    644046); without that guard only the signer's over-signing stops a
    second From."""

    class _List(list):
        def append(self, x):
            if x != b"from":
                list.append(self, x)

    def verify_headerprep(self, idx=0):
        prep = super().verify_headerprep(idx)
        if not prep:
            return prep
        sig, include, sigheaders = prep
        return sig, NoFromGuard._List(include), sigheaders


def split_msg(m):
    head, body = m.split(b"\r\n\r\n", 1)
    return head.split(b"\r\n"), body


def join_msg(lines, body):
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def edit_header(m, name, fn):
    lines, body = split_msg(m)
    for i, l in enumerate(lines):
        if l.lower().startswith(name.lower() + b":"):
            lines[i] = fn(l)
            break
    return join_msg(lines, body)


def add_header(m, line, top):
    lines, body = split_msg(m)
    if top:
        lines.insert(0, line)
    else:
        lines.append(line)
    return join_msg(lines, body)


def h_tags(m):
    out = []
    for s in re.findall(rb"^DKIM-Signature:(.*?)\r\n(?! )", m, re.M | re.S):
        tags = dict(t.strip().split(b"=", 1) for t in
                    re.sub(rb"\s+", b"", s).split(b";") if b"=" in t)
        out.append(tags)
    return out


def check_run(name, msgs, zone, algs, bits):
    ok = bad = 0
    for i, m in enumerate(msgs):
        what = "%s msg %d" % (name, i)
        tags = h_tags(m)
        check([t[b"a"].decode() for t in tags] == algs, "%s: a= %r" % (what, tags))
        res = verify_all(m, zone)
        check(res == [True] * len(algs), "%s: verify %r %s" % (what, res, WHY))
        ok += res.count(True)
        # h= names only what the message has; From once more
        lines, _ = split_msg(m)
        names = [l.split(b":", 1)[0].lower() for l in lines if l and l[:1] not in b" \t"]
        for t in tags:
            h = t[b"h"].split(b":")
            check(h.count(b"from") == names.count(b"from") + 1,
                  "%s: From not over-signed: %r" % (what, h))
            for n in set(h):
                check(n in names, "%s: h= lists absent %r" % (what, n))
            for n in (b"reply-to", b"list-unsubscribe", b"x-campaign", b"subject"):
                check((n in h) == (n in names), "%s: %r present %s, h= %r"
                      % (what, n, n in names, h))
            for n in (b"x-mailer", b"cc"):
                check(n not in h, "%s: h= lists absent %r" % (what, n))
            check(b"l" not in t, "%s: l= present" % what)
            check(t[b"c"] == b"relaxed/relaxed" and t[b"t"] == str(T).encode(),
                  "%s: c=/t= %r" % (what, t))
        # python3-dkim's view of the key size
        for idx, b in enumerate(bits):
            d = dkim.DKIM(m)
            d.verify(idx=idx, dnsfunc=dnsfunc(zone))
            check(d.keysize == b, "%s: key size %r != %d" % (what, d.keysize, b))
        if i % 4 != 0:
            continue
        # must fail
        lines, body = split_msg(m)
        tampered = {
            "body changed": join_msg(lines, body.replace(b"Your code", b"Your cod3", 1)),
            "body appended": join_msg(lines, body + b"P.S. click here\r\n"),
            "subject changed": edit_header(m, b"Subject", lambda l: l + b"!"),
            "to changed": edit_header(m, b"To", lambda l: l.replace(b"rcpt", b"evil", 1)),
            "second From on top": add_header(m, b"From: evil@example.org", True),
            "second From at the bottom": add_header(m, b"From: evil@example.org", False),
        }
        for k, t in tampered.items():
            res = verify_all(t, zone)
            check(res == [False] * len(algs), "%s: %s still verifies: %r" % (what, k, res))
            bad += res.count(False)
        # without python3-dkim's guard: our over-signing alone
        t = add_header(m, b"From: evil@example.org", True)
        for idx in range(len(algs)):
            check(not NoFromGuard(t).verify(idx=idx, dnsfunc=dnsfunc(zone)),
                  "%s: second From passes without the verifier's guard" % what)
        # must pass: relaxed-equivalent, or headers we did not sign
        same = {
            "headers re-cased and re-spaced": edit_header(
                edit_header(m, b"Subject", lambda l: b"SUBJECT:   " + l.split(b":", 1)[1].strip() + b"  "),
                b"Date", lambda l: l.replace(b" ", b"\t ")),
            "trailing blanks in the body": join_msg(lines, body.replace(b"\r\n", b"  \r\n", 3) + b"\r\n\r\n"),
            "absent Cc added": add_header(m, b"Cc: other@example.org", True),
            "absent X-Mailer added": add_header(m, b"X-Mailer: relay 1.0", False),
            "relay header added": add_header(m, b"X-Relay: yes", True),
        }
        if b"reply-to" not in names:
            same["absent Reply-To added"] = add_header(m, b"Reply-To: o@example.org", False)
        for k, t in same.items():
            res = verify_all(t, zone)
            check(res == [True] * len(algs), "%s: %s fails: %r %s" % (what, k, res, WHY))
            ok += res.count(True)
    print("%-12s %3d messages: %4d verified, %4d tampered rejected" % (name, len(msgs), ok, bad))


def control_no_oversign(key):
    """python3-dkim's own signature of a small message, From signed once."""
    path, sel = key
    m = (b"From: a@example.com\r\nTo: b@example.net\r\nSubject: x\r\n\r\nbody\r\n")
    with open(path, "rb") as f:
        key = f.read()
    sig = dkim.sign(m, sel.encode(), b"example.com", key,
                    include_headers=[b"from", b"to", b"subject"])
    return sig + m


def main():
    keys = {
        "rsa1024": genkey("rsa1024", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"),
        "rsa2048": genkey("rsa2048", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"),
        "rsa4096": genkey("rsa4096", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"),
        "ed25519": genkey("ed25519", "-algorithm", "ED25519"),
    }
    runs = [
        ("rsa2048", ["rsa2048:s2048"], ["rsa-sha256"], [2048], {}),
        ("rsa1024", ["rsa1024:s1024"], ["rsa-sha256"], [1024], {}),
        ("rsa4096", ["rsa4096:s4096"], ["rsa-sha256"], [4096], {}),
        ("ed25519", ["ed25519:e1"], ["ed25519-sha256"], [256], {}),
        ("both", ["rsa2048:s2048", "ed25519:e1"], ["rsa-sha256", "ed25519-sha256"],
         [2048, 256], {}),
        ("text-only", ["ed25519:e1", "rsa2048:s2048"], ["ed25519-sha256", "rsa-sha256"],
         [256, 2048], {"multipart": False, "extra": ["--reply-to", "help@example.com"]}),
    ]
    total = 0
    zones = {}
    for name, ks, algs, bits, kw in runs:
        paths = [keys[k.split(":")[0]] + ":" + k.split(":")[1] for k in ks]
        msgs, zone, stats = sign(name, paths, **kw)
        zones[name] = zone
        if len(msgs) != N:
            continue
        check_run(name, msgs, zone, algs, bits)
        total += len(msgs)
        if name == "both":
            smsgs, _, sstats = sign("both-split", paths, split=True)
            check(smsgs == msgs, "--split gives other bytes than one call")
            if stats and sstats:
                print("both: one call %.0f us/msg; split: prepare %.1f us/msg, sign %.0f us/msg"
                      % (stats["prepare_us"] / N, sstats["prepare_us"] / N,
                         sstats["sign_us"] / N))
    # the control for the guard-off check, under the rsa2048 run's record
    c = control_no_oversign((keys["rsa2048"], "s2048"))
    check(NoFromGuard(c).verify(dnsfunc=dnsfunc(zones["rsa2048"])),
          "control: python3-dkim's own signature fails")
    t = add_header(c, b"From: evil@example.org", True)
    check(NoFromGuard(t).verify(dnsfunc=dnsfunc(zones["rsa2048"])),
          "control: without over-signing a second From should pass the guard-off verifier")
    check(not dkim.DKIM(t).verify(dnsfunc=dnsfunc(zones["rsa2048"])),
          "control: python3-dkim's guard should stop it")
    print("%d messages signed and verified" % total)
    if FAILS:
        print("%d failures" % len(FAILS), file=sys.stderr)
        sys.exit(1)


main()
