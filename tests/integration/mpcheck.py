"""Checks shared by the integration tests that deliver into the Postfix
harness (postfix.sh): what the maildirs hold, what Redis says about a
campaign, and pf_check's assertions over one mp-smtpsend / mp-dpsend run.
The tests' Python runs through mp_py (lib.sh), which puts this folder on
the module path; each rule is written here once, and each test adds its
own assertions around it.

  Maildir(root)          files(addr), count(domain, user), only(addr),
                         message(addr): what virtual(8) delivered
  untrace(data)          a delivered file split into (trace headers, the
                         message as the client sent it)
  Redis(ns, port)        redis-cli inside a network namespace:
                         r(*args), hall(key), ints(key)
  Checks()               check(cond, what) collects failures; report()
                         prints them all and exits 1 if there were any
  campaign(...)          the rules every finished campaign keeps
  maildirs_agree(...)    Redis and the maildirs agree recipient by recipient
  queues_empty(...)      no job and no retry left
  tls_all_13, tls_no_starttls, tls_handshake_fails
                         per-domain TLS counters of one listener personality
  free_port()            a free TCP port on 127.0.0.1
  Scratch(prefix)        a Python test's temporary directory and the
                         processes it starts (killed at exit), with fail,
                         check, wait_for, spawn, port_open and
                         redis_sink (redis-server + smtp-sink)
  send_check(...)        pf_check (pf_check.sh): run asserts over one
                         sender run's JSON lines
"""
import atexit
import difflib
import email
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from email import policy

TRACE = (b"return-path:", b"x-original-to:", b"delivered-to:", b"received:")
# every state a recipient record can be in (ctl_keys.h)
STATES = ("queued", "deferred", "delivered", "bounced", "failed", "cancelled",
          "delivered_fallback")


class Maildir:
    """The harness's virtual_mailbox_base: <domain>/<user>/{new,cur}/."""

    def __init__(self, root):
        self.root = root

    def _glob(self, dom, user):
        return (glob.glob(os.path.join(self.root, dom, user, "new", "*")) +
                glob.glob(os.path.join(self.root, dom, user, "cur", "*")))

    def files(self, addr):
        """The messages in addr's own maildir."""
        user, dom = addr.lower().split("@")
        return sorted(self._glob(dom, user))

    def count(self, dom="*", user="*"):
        """Messages delivered to a domain (every domain by default), to
        every user of it or one (user="_any": the catch-all)."""
        return len(self._glob(dom, user))

    def only(self, addr):
        """The file of addr's one message; AssertionError (addr, files)
        unless there is exactly one."""
        f = self.files(addr)
        assert len(f) == 1, (addr, f)
        return f[0]

    def message(self, addr):
        """(trace headers, message as sent) of addr's one message."""
        with open(self.only(addr), "rb") as f:
            return untrace(f.read())



def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

class Scratch:
    """A Python test's own world: a temporary directory (kept when
    MP_KEEP_TMP is set) and the processes it starts, each killed by its
    Popen at exit; SIGTERM and SIGINT end the test through that exit."""

    def __init__(self, prefix):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.procs = []
        atexit.register(self.cleanup)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        signal.signal(signal.SIGINT, lambda *_: sys.exit(1))

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if os.environ.get("MP_KEEP_TMP"):
            print("kept", self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, *names):
        return os.path.join(self.tmp, *names)

    def logs(self):
        """The end of each of its logs, on stderr."""
        for f in sorted(glob.glob(self.path("*.log"))):
            with open(f, errors="replace") as fh:
                tail = fh.read()[-3000:]
            print("--- %s\n%s" % (f, tail), file=sys.stderr)

    def fail(self, msg):
        self.logs()
        print("FAIL: " + msg, flush=True)
        sys.exit(1)

    def check(self, ok, msg):
        if not ok:
            self.fail(msg)

    def wait_for(self, what, cond, timeout, step=0.05):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return
            time.sleep(step)
        self.fail("timed out waiting for %s (%s s)" % (what, timeout))

    def spawn(self, name, argv, **kw):
        """Start argv with its output in <tmp>/<name>.log."""
        log = open(self.path(name + ".log"), "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, **kw)
        self.procs.append(p)
        return p

    @staticmethod
    def port_open(port, host="127.0.0.1"):
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            return False

    def redis_sink(self, conc=256):
        """redis-server and an smtp-sink dumping every message to
        <tmp>/sink/m.*, both on 127.0.0.1 and answering. Returns
        (redis port, sink port, sink directory)."""
        rport, sport = free_port(), free_port()
        self.spawn("redis", ["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", self.tmp])
        sink = self.path("sink")
        os.mkdir(sink)
        os.chmod(self.tmp, 0o711)
        os.chmod(sink, 0o777)
        self.spawn("sink", ["/usr/sbin/smtp-sink", "-u", "nobody", "-d", sink + "/m.",
                            "127.0.0.1:%d" % sport, str(conc)])
        self.wait_for("redis-server", lambda: self.port_open(rport), 20)
        self.wait_for("smtp-sink", lambda: self.port_open(sport), 20)
        return rport, sport, sink


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


class Redis:
    """redis-cli --raw against 127.0.0.1:port inside network namespace ns
    (None: this one)."""

    def __init__(self, ns, port):
        self.ns, self.port = ns, str(port)

    def r(self, *a):
        pre = ["ip", "netns", "exec", self.ns] if self.ns else []
        return subprocess.run(pre + ["redis-cli", "-p", self.port, "--raw"] +
                              list(a), capture_output=True, text=True, check=True).stdout.splitlines()

    def hall(self, key):
        h = self.r("hgetall", key)
        return dict(zip(h[0::2], h[1::2]))

    def ints(self, key):
        return {k: int(v) for k, v in self.hall(key).items()}


class Checks:
    """Failures collected, so one run names all of them."""

    def __init__(self):
        self.fails = []

    def check(self, cond, what):
        if not cond:
            self.fails.append(what)

    def report(self):
        """Print the failures (the first 40) and exit 1 if there were any."""
        if not self.fails:
            return
        for f in self.fails[:40]:
            print("FAIL:", f)
        print("%d failures" % len(self.fails))
        sys.exit(1)


def campaign(chk, red, camp, total, dups=False):
    """Campaign camp as every finished one must be: total recipient
    records, none still queued or deferred, the counts hash equal to the
    records state by state, the campaign's state "done" and, unless dups,
    no duplicate delivery counted. Returns (records by address, counts,
    number of records per state)."""
    rc = {k: json.loads(v) for k, v in red.hall("mp:campaign:%s:rcpt" % camp).items()}
    c = red.ints("mp:campaign:%s:counts" % camp)
    by = {}
    for j in rc.values():
        by[j["state"]] = by.get(j["state"], 0) + 1
    chk.check(len(rc) == total, "%s: %d recipients, want %d" % (camp, len(rc), total))
    for st in STATES:
        chk.check(c.get(st, 0) == by.get(st, 0),
                  "%s: count %s %d vs %d records" % (camp, st, c.get(st, 0), by.get(st, 0)))
    chk.check(by.get("queued", 0) == 0 and by.get("deferred", 0) == 0, "%s: not final %s" % (camp, by))
    state = red.r("hget", "mp:campaign:" + camp, "state")
    chk.check(state == ["done"], "%s: campaign not done: %s" % (camp, state))
    if not dups:
        chk.check(c.get("dup_deliveries", 0) == 0, "%s: dup_deliveries %s" % (camp, c.get("dup_deliveries")))
    return rc, c, by


def queues_empty(chk, red):
    """Nothing left to do: no job in mp:jobs or in a campaign's stream, no
    recipient in mp:retry."""
    streams = ["mp:jobs"] + sorted(red.r("keys", "mp:campaign:*:jobs"))
    jobs = {k: red.r("xlen", k) for k in streams}
    retry = red.r("zcard", "mp:retry")
    chk.check(all(v == ["0"] for v in jobs.values()), "jobs left: %s" % jobs)
    chk.check(retry == ["0"], "retries left: %s" % retry)


def maildirs_agree(chk, md, rc):
    """Recipient by recipient the maildirs agree with Redis: each delivered
    recipient (the message or its fallback) has exactly one message in its
    own maildir, every other none. Returns each recipient's files."""
    got = {}
    for a, j in rc.items():
        f = got[a] = md.files(a)
        if j["state"] in ("delivered", "delivered_fallback"):
            chk.check(len(f) == 1, "%s delivered, %d messages in its maildir" % (a, len(f)))
        else:
            chk.check(len(f) == 0, "%s %s but %d messages" % (a, j["state"], len(f)))
    return got


# Per-domain TLS counters (mp:tls:<domain>, Redis.ints) of one listener:
def tls_all_13(t):
    """STARTTLS with a good certificate: every session offered STARTTLS and
    negotiated TLS 1.3, nothing delivered in plaintext."""
    return (t.get("sessions", 0) > 0 and t.get("starttls_offered") == t["sessions"] and
            t.get("tls_ok") == t["sessions"] and t.get("version:TLSv1.3") == t["sessions"] and
            t.get("plaintext_deliveries", 0) == 0)


def tls_no_starttls(t, plain):
    """No STARTTLS offered: no TLS session, plain deliveries in plaintext."""
    return (t.get("no_starttls", 0) > 0 and t.get("tls_ok", 0) == 0 and
            t.get("plaintext_deliveries", 0) == plain)


def tls_handshake_fails(t, plain):
    """STARTTLS offered, every handshake failed (a TLS 1.0-only server),
    plain deliveries in plaintext on a new connection."""
    return (t.get("starttls_offered", 0) > 0 and t.get("tls_failed", 0) > 0 and
            t.get("tls_ok", 0) == 0 and t.get("plaintext_deliveries", 0) == plain)


def send_check(jsonf, root, name, code):
    """pf_check: exec code (asserts) over the JSON lines of one sender run
    in jsonf, with the names pf_check.sh lists; print ok with the summary,
    or FAIL with name and exit 1."""
    out = [json.loads(l) for l in open(jsonf)]
    r = [l for l in out if "rcpt" in l]
    s = out[-1]["summary"]
    md = Maildir(root)
    here = os.path.dirname(jsonf)

    def fail(msg):
        print("FAIL:", name, "-", msg)
        sys.exit(1)

    def path(fname):
        """A file beside the run's JSON (in the test's $MP_TMP)."""
        return os.path.join(here, fname)

    def read(fname):
        with open(path(fname), "rb") as f:
            return f.read()

    def addrs(fname):
        """The addresses in a file beside the JSON, one a line."""
        with open(path(fname)) as f:
            return [l.strip() for l in f]

    def exact(want, src, tls=None):
        """Each address delivered exactly once, the file byte-exact against
        src after the trace headers, received over TLS version tls if given."""
        for a in want:
            trace, msg = md.message(a)
            assert b"Delivered-To: " + a.encode() in trace, (a, trace)
            if tls is not None:
                assert any(b"using " + tls.encode() in t for t in trace), (a, trace)
            if msg != src:
                d = difflib.diff_bytes(difflib.unified_diff, src.split(b"\n"), msg.split(b"\n"), lineterm=b"")
                fail("%s differs:\n%s" % (a, b"\n".join(list(d)[:20]).decode("latin-1")))

    def verified_bulk(n, sessions, per_conn):
        """n distinct recipients, each delivered (250) over TLS 1.3 with
        the chain verified, over exactly sessions TLS sessions of at most
        per_conn messages each."""
        assert s["recipients"] == n and s["delivered"] == n, s
        assert s["sessions"] == sessions and s["tls_sessions"] == sessions, s
        assert len(r) == n and len({x["rcpt"] for x in r}) == n, len(r)
        per = {}
        for x in r:
            assert x["outcome"] == "delivered" and x["code"] == 250, x
            t = x["tls"]
            assert t and t["version"] == "TLSv1.3" and t["verify"] == "ok", x
            per[x["session"]] = per.get(x["session"], 0) + 1
        assert len(per) == sessions and max(per.values()) <= per_conn, per

    def tls_refused(reason):
        """Every recipient deferred at stage tls, verify = reason, the
        reason in the text."""
        for x in r:
            assert x["outcome"] == "deferred" and x["stage"] == "tls", x
            assert x["tls"] and x["tls"]["verify"] == reason, x
            assert reason in x["text"], x

    def resumed():
        """Two recipients, two sessions, delivered: the second session
        resumed the first's (verified) TLS session. Returns both records,
        by session."""
        assert len(r) == 2 and s["delivered"] == 2 and s["sessions"] == 2, s
        a, b = sorted(r, key=lambda x: x["session"])
        assert a["tls"]["resumed"] is False and b["tls"]["resumed"] is True, (a["tls"], b["tls"])
        assert b["tls"]["verify"] == "ok" and s["resumed"] == 1, (b["tls"], s)
        return a, b

    g = {"r": r, "s": s, "M": root, "files": md.files, "count": md.count, "message": md.message,
         "untrace": untrace, "exact": exact, "fail": fail, "path": path, "read": read, "addrs": addrs,
         "verified_bulk": verified_bulk, "tls_refused": tls_refused, "resumed": resumed,
         "email": email, "policy": policy, "json": json, "sys": sys}
    try:
        exec(code, g)
    except AssertionError as e:
        # (a tuple message must not be taken for the format's arguments)
        fail("assertion: %s" % (e.args[0] if e.args else "?",))
    print("ok: %-58s %s" % (name, {k: s[k] for k in ("recipients", "delivered", "deferred", "sessions", "resumed")}))
