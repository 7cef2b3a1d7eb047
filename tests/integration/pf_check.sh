# shellcheck shell=bash
# Checks shared by the tests that send into the Postfix harness
# (postfix_tls.sh with mp-smtpsend, dpsend_postfix.sh with mp-dpsend);
# sourced after lib.sh and postfix.sh.
#
#   pf_make_traps DIR
#       DIR/traps.eml: a message whose body is full of dot-stuffing traps
#       (lone ".", "..", leading dots, a 998-octet line and one that
#       stuffing makes 999, a final "." line); traps-crlf.eml the same
#       with CRLF, traps-nonl.eml without the final newline.
#   pf_check JSON MAILDIR NAME PYTHON
#       run PYTHON (asserts) over the JSON lines of one mp-smtpsend /
#       mp-dpsend run: r = recipient records, s = summary, M = maildir
#       root; helpers files(addr), count(domain), untrace(bytes) (trace
#       headers split off: the message as the client sent it),
#       exact(addrs, src_bytes, tls=None) (each delivered once, byte-exact),
#       fail(msg).

pf_make_traps() {
	python3 - "$1" <<'PY'
import sys
d = sys.argv[1]
body = [
    b".", b"..", b"...", b".leading dot", b" .space then dot", b"ends with a dot.",
    b".\t.tab", b"x" * 998, b"." + b"y" * 997, b"." * 500, b"", b"", b"after two blank lines",
    b"=2E not an escape", b"From the beginning of a line", b"-- ", b"last line before a final dot", b".",
]
head = [
    b"From: Mailpump Test <sender@pf.test>",
    b"To: Undisclosed recipients:;",
    b"Subject: dot-stuffing traps",
    b"Date: Tue, 01 Dec 2026 12:00:00 +0000",
    b"Message-ID: <traps@pf.test>",
    b"MIME-Version: 1.0",
    b"Content-Type: text/plain; charset=us-ascii",
]
lf = b"\n".join(head) + b"\n\n" + b"\n".join(body) + b"\n"
open(d + "/traps.eml", "wb").write(lf)
open(d + "/traps-crlf.eml", "wb").write(lf.replace(b"\n", b"\r\n"))
open(d + "/traps-nonl.eml", "wb").write(lf[:-1])
PY
}

pf_check() {
	python3 - "$1" "$2" "$3" "$4" <<'PY' || mp_fail "$3 (see $1)"
import email, glob, json, os, sys
from email import policy

lines = [json.loads(l) for l in open(sys.argv[1])]
r = [l for l in lines if "rcpt" in l]
s = lines[-1]["summary"]
M = sys.argv[2]
TRACE = (b"return-path:", b"x-original-to:", b"delivered-to:", b"received:")

def files(addr):
    user, dom = addr.lower().split("@")
    return sorted(glob.glob(os.path.join(M, dom, user, "new", "*")) +
                  glob.glob(os.path.join(M, dom, user, "cur", "*")))

def count(dom):
    return len(glob.glob(os.path.join(M, dom, "*", "new", "*")) +
               glob.glob(os.path.join(M, dom, "*", "cur", "*")))

def untrace(data):
    """The message as the client sent it: Postfix's trace headers removed
    from the top (with their continuation lines)."""
    lines = data.split(b"\n")
    i = 0
    trace = []
    while i < len(lines) and lines[i].lower().startswith(TRACE):
        j = i + 1
        while j < len(lines) and lines[j][:1] in (b" ", b"\t"):
            j += 1
        trace.append(b"\n".join(lines[i:j]))
        i = j
    return trace, b"\n".join(lines[i:])

def exact(addrs, src, tls=None):
    """Each address delivered exactly once, the file byte-exact against
    src after the trace headers, received over TLS version tls if given."""
    for a in addrs:
        f = files(a)
        assert len(f) == 1, (a, f)
        trace, msg = untrace(open(f[0], "rb").read())
        assert b"Delivered-To: " + a.encode() in trace, (a, trace)
        if tls is not None:
            assert any(b"using " + tls.encode() in t for t in trace), (a, trace)
        if msg != src:
            import difflib
            d = difflib.diff_bytes(difflib.unified_diff, src.split(b"\n"), msg.split(b"\n"), lineterm=b"")
            fail("%s differs:\n%s" % (a, b"\n".join(list(d)[:20]).decode("latin-1")))

def fail(msg):
    print("FAIL:", sys.argv[3], "-", msg)
    sys.exit(1)

try:
    exec(sys.argv[4])
except AssertionError as e:
    fail("assertion: %s" % (e.args[0] if e.args else "?"))
print("ok: %-58s %s" % (sys.argv[3], {k: s[k] for k in ("recipients", "delivered", "deferred", "sessions", "resumed")}))
PY
}
