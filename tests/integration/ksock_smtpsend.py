#!/usr/bin/env python3
"""mp-smtpsend's CLI and JSON output against Postfix smtp-sink on loopback.

Every stdout line must parse as JSON; one record per recipient plus a last
summary whose counts match the records; smtp-sink's dump files prove what
was delivered (templates merged per recipient, --rcpt-per-txn grouping).
Also: TLS required against a server without STARTTLS, a refused port, a
server that never answers (--timeout: exit 2), usage errors (exit 1), a
recipient whose template field is missing (failed alone), --quiet.
TLS against a Python (OpenSSL) STARTTLS server: record fields, resumption
on the second connection, verify failure by reason, plaintext retry after
a broken handshake under opportunistic TLS.
Skips (77) when smtp-sink is not installed. Usage: ksock_smtpsend.py BIN
"""
import json
import os
import ssl
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpcheck import free_port  # noqa: E402

BIN = sys.argv[1]
FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL:", what, file=sys.stderr)


def run(args, timeout=60):
    # a fully qualified EHLO name, unless the case sets its own
    if "--helo" not in args:
        args = ["--helo", "client.test"] + args
    p = subprocess.run([BIN] + args, capture_output=True, text=True, timeout=timeout)
    recs, summary = [], None
    for line in p.stdout.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            check(False, "not JSON: %r" % line)
            continue
        if "summary" in obj:
            summary = obj["summary"]
        else:
            check(summary is None, "record after the summary")
            recs.append(obj)
    return p.returncode, recs, summary, p.stderr


def dumps(d):
    return sorted(os.listdir(d))


def wait_dumps(d, n, limit=20.0):
    """Wait until the sink has written n dump files (bounded), then read them.

    smtp-sink may finish a file after its 250 reached us; a loaded or
    sanitizer run must not turn that into a missing message."""
    end = time.monotonic() + limit
    while len(dumps(d)) < n and time.monotonic() < end:
        time.sleep(0.02)
    return read_dumps(d)


def read_dumps(d):
    out = []
    for f in dumps(d):
        with open(os.path.join(d, f), "rb") as fh:
            out.append(fh.read().decode("utf-8", "replace"))
        os.unlink(os.path.join(d, f))
    return out


def consistent(recs, summary, n):
    check(summary is not None, "summary line present")
    if summary is None:
        return
    check(summary["recipients"] == n, "summary recipients %s == %d" % (summary["recipients"], n))
    check(len(recs) == n, "records %d == %d" % (len(recs), n))
    for k in ("delivered", "deferred", "bounced", "failed"):
        got = sum(1 for r in recs if r["outcome"] == k)
        check(summary[k] == got, "summary %s %d == records %d" % (k, summary[k], got))
    for key in ("rcpt", "outcome", "stage", "code", "esc", "text", "session", "tls"):
        check(all(key in r for r in recs), "every record has %s" % key)
    for key in ("sessions", "tls_sessions", "resumed", "seconds", "msgs_per_s",
                "cpu_user_s", "cpu_sys_s"):
        check(key in summary, "summary has %s" % key)


def make_pki(d):
    """CA and a leaf for mx.test with the openssl CLI; returns (ca, cert, key)."""
    def sh(*a):
        subprocess.run(["openssl"] + list(a), check=True, capture_output=True)
    ca, cak = os.path.join(d, "ca.pem"), os.path.join(d, "ca.key")
    crt, key, csr = os.path.join(d, "mx.pem"), os.path.join(d, "mx.key"), os.path.join(d, "mx.csr")
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:mx.test\nbasicConstraints=CA:FALSE\n")
    sh("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", cak, "-out", ca, "-days", "30", "-subj", "/CN=Smtpsend Test CA")
    sh("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", key, "-out", csr, "-subj", "/CN=mx.test")
    sh("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", cak, "-CAcreateserial",
       "-out", crt, "-days", "30", "-extfile", ext)
    return ca, crt, key


class TlsSmtp:
    """A small SMTP server with STARTTLS (Python's ssl, i.e. OpenSSL) on
    loopback, one thread per connection. mode "tls": a real handshake;
    "badtls": answers STARTTLS with 220 and then bytes that are no TLS."""

    def __init__(self, mode, cert, key):
        self.mode = mode
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        if mode == "tls12":
            self.ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.ls.settimeout(0.1)
        self.port = self.ls.getsockname()[1]
        self.stop = threading.Event()
        self.msgs = 0
        self.mails = 0
        self.threads = []
        self.th = threading.Thread(target=self.accept)
        self.th.start()

    def accept(self):
        while not self.stop.is_set():
            try:
                c, _ = self.ls.accept()
            except OSError:
                continue
            t = threading.Thread(target=self.conn, args=(c,))
            t.start()
            self.threads.append(t)

    def conn(self, c):
        c.settimeout(10)
        f = c.makefile("rwb")
        tls = False
        try:
            if self.mode == "implicit":
                c = self.ctx.wrap_socket(c, server_side=True)
                f = c.makefile("rwb")
                tls = True
            f.write(b"220 mx.test ESMTP py\r\n")
            f.flush()
            while True:
                line = f.readline()
                if not line:
                    break
                cmd = line.strip().upper()
                if cmd.startswith(b"EHLO"):
                    f.write(b"250-mx.test\r\n250-PIPELINING\r\n")
                    if not tls:
                        f.write(b"250-STARTTLS\r\n")
                    f.write(b"250 8BITMIME\r\n")
                elif cmd == b"STARTTLS" and not tls:
                    f.write(b"220 2.0.0 ready\r\n")
                    f.flush()
                    if self.mode == "badtls":
                        c.sendall(b"this is not a TLS record\r\n" * 4)
                        break
                    c = self.ctx.wrap_socket(c, server_side=True)
                    f = c.makefile("rwb")
                    tls = True
                    continue
                elif cmd.startswith(b"MAIL"):
                    self.mails += 1
                    f.write(b"250 2.1.0 ok\r\n")
                elif cmd.startswith(b"RCPT"):
                    f.write(b"250 2.1.5 ok\r\n")
                elif cmd == b"DATA":
                    f.write(b"354 go\r\n")
                    f.flush()
                    while True:
                        b = f.readline()
                        if not b or b == b".\r\n":
                            break
                    if not b:
                        break
                    self.msgs += 1
                    f.write(b"250 2.0.0 queued\r\n")
                elif cmd == b"RSET":
                    f.write(b"250 2.0.0 ok\r\n")
                elif cmd == b"QUIT":
                    f.write(b"221 2.0.0 bye\r\n")
                    f.flush()
                    break
                else:
                    f.write(b"502 5.5.2 what\r\n")
                f.flush()
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.th.join()
        for t in self.threads:
            t.join(15)
        self.ls.close()


def tls_cases(tmp, msg):
    ca, crt, key = make_pki(tmp)
    srv = TlsSmtp("tls", crt, key)
    try:
        base = ["--server", "mx.test:%d" % srv.port, "--connect", "127.0.0.1",
                "--from", "s@client.test", "--message", msg]
        # an EHLO name that is not fully qualified is refused before any connection
        for bad in ("localhost", "vm", "[127.0.0.1]"):
            rc, recs, summ, err = run(["--helo", bad] + base + ["--rcpt", "a@dest.test"])
            check(rc != 0 and "--helo" in err and "fully qualified" in err and not recs,
                  "--helo %s refused (%d, %s)" % (bad, rc, err.strip()))
        # verify against our CA; one message per connection: the second resumes
        rc, recs, summ, err = run(base + ["--rcpt", "a@dest.test", "--rcpt", "b@dest.test",
                                          "--tls", "verify", "--ca", ca,
                                          "--msgs-per-conn", "1"])
        check(rc == 0, "tls verify exit 0 (%s)" % err)
        consistent(recs, summ, 2)
        check(all(r["outcome"] == "delivered" for r in recs), "tls verify: delivered %s" % recs)
        t = [r["tls"] for r in recs if r["tls"]]
        check(len(t) == 2, "tls record on both")
        if t:
            check(all(x["version"] == "TLSv1.3" and x["verify"] == "ok" and
                      x["subject"] == "CN=mx.test" and x["issuer"] == "CN=Smtpsend Test CA" and
                      x["not_after"].endswith("Z") and x["cipher"] and x["group"]
                      for x in t), "tls record fields %s" % t)
            check(sorted(x["resumed"] for x in t) == [False, True], "second connection resumed")
        check(summ and summ["tls_sessions"] == 2 and summ["resumed"] == 1,
              "summary: 2 TLS sessions, 1 resumed")
        check(srv.msgs == 2, "server got 2 messages")
        # verify with the system store: unknown CA, nothing sent
        mails = srv.mails
        rc, recs, summ, err = run(base + ["--rcpt", "a@dest.test", "--tls", "verify"])
        consistent(recs, summ, 1)
        r = recs[0] if recs else {}
        check(r.get("outcome") == "deferred" and r.get("stage") == "tls" and
              r.get("tls") and r["tls"]["verify"] == "unknown-ca" and
              "unknown-ca" in r.get("text", ""), "verify failure by reason: %s" % r)
        check(srv.mails == mails, "no MAIL after a failed verification")
        # opportunistic: the same certificate is good enough, reason kept
        rc, recs, summ, err = run(base + ["--rcpt", "a@dest.test"])
        r = recs[0] if recs else {}
        check(r.get("outcome") == "delivered" and r.get("tls") and
              r["tls"]["verify"] == "unknown-ca", "opportunistic under TLS, verify noted: %s" % r)
    finally:
        srv.close()
    # implicit TLS (port 465 style)
    srv = TlsSmtp("implicit", crt, key)
    try:
        rc, recs, summ, err = run(["--server", "mx.test:%d" % srv.port, "--connect", "127.0.0.1",
                                   "--from", "s@client.test", "--message", msg, "--ca", ca,
                                   "--rcpt", "a@dest.test", "--implicit-tls", "--tls", "verify"])
        consistent(recs, summ, 1)
        r = recs[0] if recs else {}
        check(r.get("outcome") == "delivered" and r.get("tls") and
              r["tls"]["verify"] == "ok", "implicit TLS delivered: %s" % r)
    finally:
        srv.close()
    # a TLS 1.2 server: fine by default, refused with --tls-min 1.3
    srv = TlsSmtp("tls12", crt, key)
    try:
        base = ["--server", "mx.test:%d" % srv.port, "--connect", "127.0.0.1",
                "--from", "s@client.test", "--message", msg, "--ca", ca, "--rcpt", "a@dest.test"]
        rc, recs, summ, err = run(base + ["--tls", "verify"])
        r = recs[0] if recs else {}
        check(r.get("outcome") == "delivered" and r.get("tls") and
              r["tls"]["version"] == "TLSv1.2", "TLS 1.2 server: delivered under 1.2: %s" % r)
        rc, recs, summ, err = run(base + ["--tls", "required", "--tls-min", "1.3"])
        r = recs[0] if recs else {}
        check(r.get("outcome") == "deferred" and r.get("stage") == "tls" and
              r.get("tls") and r["tls"]["verify"] == "protocol-version",
              "--tls-min 1.3 against a 1.2 server: deferred, protocol-version: %s" % r)
    finally:
        srv.close()
    # a broken handshake under opportunistic TLS: retried in plaintext
    srv = TlsSmtp("badtls", crt, key)
    try:
        rc, recs, summ, err = run(["--server", "mx.test:%d" % srv.port, "--connect", "127.0.0.1",
                                   "--from", "s@client.test", "--message", msg,
                                   "--rcpt", "a@dest.test", "--rcpt", "b@dest.test",
                                   "--rcpt", "c@dest.test", "--sessions", "2"])
        consistent(recs, summ, 3)
        check(all(r["outcome"] == "delivered" and r["tls"] is None for r in recs),
              "bad handshake: delivered in plaintext %s" % recs)
        check(summ and summ["plaintext_fallback_sessions"] >= 1, "fallback session counted")
        check(srv.msgs == 3, "server got 3 plaintext messages (%d)" % srv.msgs)
        rc, recs, summ, err = run(["--server", "mx.test:%d" % srv.port, "--connect", "127.0.0.1",
                                   "--from", "s@client.test", "--message", msg,
                                   "--rcpt", "a@dest.test", "--tls", "required"])
        r = recs[0] if recs else {}
        check(r.get("outcome") == "deferred" and r.get("stage") == "tls",
              "bad handshake, required: deferred at tls %s" % r)
    finally:
        srv.close()


def main():
    if shutil.which("smtp-sink") is None:
        print("smtp-sink not installed: skipped")
        return 77
    tmp = tempfile.mkdtemp(prefix="mp_smtpsend_")
    os.chmod(tmp, 0o711)  # smtp-sink runs as nobody
    dumpdir = os.path.join(tmp, "dump")
    os.mkdir(dumpdir)
    os.chmod(dumpdir, 0o777)
    port = free_port()
    cmd = ["smtp-sink"]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]
    cmd += ["-d", dumpdir + "/%M%S.", "127.0.0.1:%d" % port, "64"]
    sink = subprocess.Popen(cmd)
    stall = None
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        server = ["--server", "mx.test:%d" % port, "--connect", "127.0.0.1"]

        # 1: template + CSV merge fields, 3 sessions
        csv = os.path.join(tmp, "r.csv")
        with open(csv, "w") as f:
            f.write("email,first\n")
            for i, name in enumerate(["Ann", "Bob", "Cy", "Dee", "Eve"]):
                f.write("u%d@dest.test,%s\n" % (i, name))
            f.write('"q@dest.test","Quo ""Q"""\n')
        text = os.path.join(tmp, "t.txt")
        with open(text, "w") as f:
            f.write("Hello {{first}}!\n.line with a dot\n")
        html = os.path.join(tmp, "t.html")
        with open(html, "w") as f:
            f.write("<p>Hello <b>{{first}}</b></p>\n")
        rc, recs, summ, err = run(server + ["--from", "s@client.test", "--rcpt-csv", csv,
                                            "--subject", "Hi {{first}}", "--text", text,
                                            "--html", html,
                                            "--sessions", "3", "--helo", "client.test"])
        check(rc == 0, "template run exit 0 (%d: %s)" % (rc, err))
        consistent(recs, summ, 6)
        check(sorted(r["rcpt"] for r in recs) ==
              sorted(["u%d@dest.test" % i for i in range(5)] + ["q@dest.test"]),
              "one record per CSV recipient")
        check(all(r["outcome"] == "delivered" and r["code"] == 250 and r["tls"] is None
                  for r in recs), "all delivered in plaintext (smtp-sink has no STARTTLS)")
        check(summ and summ["sessions"] == 3 and summ["tls_sessions"] == 0, "3 sessions, no TLS")
        bodies = wait_dumps(dumpdir, 6)
        check(len(bodies) == 6, "6 messages in the sink (%d)" % len(bodies))
        check(any("Hello Ann!" in b and "Subject: Hi Ann" in b for b in bodies), "merged for Ann")
        check(any('Hello Quo "Q"!' in b for b in bodies), "quoted CSV field merged")
        check(all("multipart/alternative" in b and "text/html" in b for b in bodies),
              "text and html parts")
        check(any("<b>Quo &quot;Q&quot;</b>" in b or "<b>Quo &#34;Q&#34;</b>" in b
                  or "Quo &quot;Q&quot;" in b for b in bodies), "html merge escaped")
        check(all("\n.line with a dot" in b for b in bodies), "dot line unstuffed at the sink")

        # 2: raw message, --count cycling, several recipients per message
        msg = os.path.join(tmp, "m.eml")
        with open(msg, "w") as f:
            f.write("From: s@client.test\nSubject: raw\n\nraw body\n..two dots\n")
        rfile = os.path.join(tmp, "r.txt")
        with open(rfile, "w") as f:
            f.write("# comment\na@dest.test\n\nb@dest.test\nc@dest.test\n")
        rc, recs, summ, err = run(server + ["--from", "s@client.test", "--rcpt-file", rfile,
                                            "--message", msg, "--count", "30",
                                            "--sessions", "4", "--msgs-per-conn", "2",
                                            "--rcpt-per-txn", "2"])
        check(rc == 0, "raw run exit 0")
        consistent(recs, summ, 30)
        check(all(r["outcome"] == "delivered" for r in recs), "raw: all delivered")
        check(sum(1 for r in recs if r["rcpt"] == "a@dest.test") == 10, "count cycles the list")
        check(summ and summ["sessions"] >= 8, "15 messages at 2 per connection: >= 8 sessions")
        bodies = wait_dumps(dumpdir, 15)
        check(len(bodies) == 15, "15 messages of 2 recipients (%d)" % len(bodies))
        check(all("\n..two dots\n" in b for b in bodies), "raw body intact")

        # 3: TLS required, server without STARTTLS: nothing delivered
        rc, recs, summ, err = run(server + ["--from", "s@client.test", "--rcpt", "x@dest.test",
                                            "--rcpt", "y@dest.test", "--message", msg,
                                            "--tls", "required"])
        check(rc == 0, "required run exit 0")
        consistent(recs, summ, 2)
        check(all(r["outcome"] == "deferred" and r["stage"] == "tls" and
                  "STARTTLS" in r["text"] for r in recs), "required: deferred at tls")
        # deferred before MAIL FROM: no DATA ever left, so nothing can be late
        check(len(read_dumps(dumpdir)) == 0, "required: no message reached the sink")

        # 4: refused port
        rc, recs, summ, err = run(["--server", "127.0.0.1:%d" % free_port(), "--from",
                                   "s@client.test", "--rcpt", "x@dest.test", "--message", msg])
        check(rc == 0, "refused run exit 0")
        consistent(recs, summ, 1)
        check(recs and recs[0]["outcome"] == "deferred" and recs[0]["stage"] == "connect" and
              "refused" in recs[0]["text"], "refused: deferred at connect")

        # 5: a missing merge field fails that recipient only
        with open(csv, "w") as f:
            f.write("email,first\nok@dest.test,Ann\nbad@dest.test\n")
        rc, recs, summ, err = run(server + ["--from", "s@client.test", "--rcpt-csv", csv,
                                            "--subject", "Hi {{first}}", "--text", text])
        consistent(recs, summ, 2)
        by = {r["rcpt"]: r for r in recs}
        check(by.get("ok@dest.test", {}).get("outcome") == "delivered", "good row delivered")
        bad = by.get("bad@dest.test", {})
        check(bad.get("outcome") == "failed" and bad.get("stage") == "local" and
              "first" in bad.get("text", ""), "row without the field failed locally: %s" % bad)
        read_dumps(dumpdir)

        # 6: --quiet prints the summary only
        p = subprocess.run([BIN, "--helo", "client.test"] + server + ["--from", "s@client.test", "--rcpt", "x@dest.test",
                                             "--message", msg, "--quiet"],
                           capture_output=True, text=True, timeout=30)
        lines = p.stdout.splitlines()
        check(len(lines) == 1 and "summary" in json.loads(lines[0]), "--quiet: one line")
        read_dumps(dumpdir)

        # 7: a server that accepts and never speaks: --timeout ends the run, exit 2
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(16)
        held = []
        stop = threading.Event()

        def hold():
            ls.settimeout(0.1)
            while not stop.is_set():
                try:
                    held.append(ls.accept()[0])
                except OSError:
                    pass
        stall = threading.Thread(target=hold)
        stall.start()
        t0 = time.time()
        rc, recs, summ, err = run(["--server", "127.0.0.1:%d" % ls.getsockname()[1], "--from",
                                   "s@client.test", "--rcpt", "x@dest.test", "--rcpt",
                                   "y@dest.test", "--rcpt", "z@dest.test", "--message", msg,
                                   "--sessions", "2", "--msgs-per-conn", "1",
                                   "--timeout", "1"])
        check(rc == 2, "timeout exit 2 (%d)" % rc)
        check(time.time() - t0 < 10, "timeout honoured")
        check(summ is not None and summ.get("timeout") is True and summ.get("unfinished") == 3,
              "summary says timeout, 3 unfinished: %s" % summ)
        consistent(recs, summ, 3)
        check(all(r["outcome"] == "deferred" and "--timeout" in r["text"] for r in recs),
              "timeout: every recipient deferred with the reason: %s" % recs)
        stop.set()
        stall.join()
        for c in held:
            c.close()
        ls.close()

        # 8: TLS: record fields, resumption, verify reasons, plaintext fallback
        tls_cases(tmp, msg)

        # 9: usage errors and --help
        for bad_args in ([], ["--server", "h:25", "--rcpt", "a@b.test", "--message", msg],
                         server + ["--from", "s@client.test", "--rcpt", "a@b.test",
                                   "--message", msg, "--tls", "sometimes"],
                         server + ["--from", "s@client.test", "--message", msg],
                         server + ["--from", "s@client.test", "--rcpt", "a@b.test"],
                         server + ["--from", "s@client.test", "--rcpt", "a@b.test",
                                   "--message", "/nonexistent/file"]):
            p = subprocess.run([BIN] + bad_args, capture_output=True, text=True, timeout=30)
            check(p.returncode == 1 and p.stderr.strip() != "",
                  "usage error exit 1 with a message: %s" % bad_args)
        p = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=30)
        check(p.returncode == 0 and "--rcpt-csv" in p.stdout and "--msgs-per-conn" in p.stdout,
              "--help documents the flags")
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    print("ksock_smtpsend: %d failures" % len(FAILS))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
