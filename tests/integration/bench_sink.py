#!/usr/bin/env python3
"""mp-sink (bench/sink.c) counts whole messages and rejects damaged ones.

Starts mp-sink on loopback with an ECDSA certificate made on the spot and
talks to it over raw sockets: a good message after STARTTLS (250, counted
ok), the same message with one body byte changed (554, corrupt), one
without X-Bench-Digest (554, corrupt + no_digest), a message whose
dot-stuffed lines are unstuffed correctly (250), one sent as two BDAT
chunks (250), a resumed TLS 1.3 handshake with the first connection's
ticket, and a plaintext transaction. The stats file must show exactly
those counts. A second sink with --bounce-rate 1, --latency 200 and
--no-pipelining --no-chunking answers RCPT with 550, hides the
extensions, holds its greeting at least 150 ms (a lower bound only) and
keeps held replies in command order across separate writes.
Also: mkmsg.py's messages verify, and bad options exit 1.
Usage: bench_sink.py MP_SINK MKMSG_PY
"""
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpcheck import free_port  # noqa: E402

SINK, MKMSG = sys.argv[1], sys.argv[2]
FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL:", what, file=sys.stderr)


class Smtp:
    """Line-at-a-time SMTP client over a socket that can switch to TLS."""

    def __init__(self, port, timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                d = self.s.recv(65536)
                if not d:
                    raise EOFError("server closed")
                self.buf += d
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode())
            if len(line) < 4 or line[3:4] != b"-":
                return int(lines[-1][:3]), lines

    def cmd(self, text):
        self.s.sendall(text.encode() + b"\r\n")
        return self.reply()

    def starttls(self, ctx, session=None):
        code, _ = self.cmd("STARTTLS")
        check(code == 220, "STARTTLS answered %d" % code)
        self.s = ctx.wrap_socket(self.s, server_hostname="sink.bench.test", session=session)

    def send_data(self, raw):
        """DATA with dot-stuffing; returns the final reply code."""
        code, _ = self.cmd("DATA")
        check(code == 354, "DATA answered %d" % code)
        body = raw.replace(b"\r\n.", b"\r\n..")
        if body.startswith(b"."):
            body = b"." + body
        self.s.sendall(body + b".\r\n")
        return self.reply()[0]

    def txn(self, raw, rcpt="u@sink.bench.test"):
        check(self.cmd("MAIL FROM:<a@client.test>")[0] == 250, "MAIL")
        check(self.cmd("RCPT TO:<%s>" % rcpt)[0] == 250, "RCPT")
        return self.send_data(raw)


def make_cert(d):
    def run(*a):
        subprocess.run(["openssl"] + list(a), check=True, capture_output=True, cwd=d)
    run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "key.pem")
    run("req", "-x509", "-new", "-key", "key.pem", "-out", "cert.pem", "-days", "2",
        "-subj", "/CN=sink.bench.test", "-addext", "subjectAltName=DNS:sink.bench.test")


def start_sink(d, name, extra):
    port = free_port()
    stats = os.path.join(d, name + ".json")
    p = subprocess.Popen([SINK, "--listen", "127.0.0.1:%d" % port, "--stats", stats] + extra)
    for _ in range(100):
        if os.path.exists(stats):
            break
        time.sleep(0.05)
    check(os.path.exists(stats), "%s: stats file at start" % name)
    return p, port, stats


def stop_sink(p, stats):
    p.send_signal(signal.SIGTERM)
    check(p.wait(timeout=10) == 0, "sink exit status")
    with open(stats) as f:
        return json.load(f)


def main():
    d = tempfile.mkdtemp(prefix="mp-sinktest.")
    procs = []
    try:
        make_cert(d)
        msg = os.path.join(d, "m.eml")
        subprocess.run([sys.executable, MKMSG, "3000", msg], check=True)
        raw = open(msg, "rb").read()
        check(b"\r\n." in raw, "mkmsg body has lines starting with a dot")
        hdr, body = raw.split(b"\r\n\r\n", 1)
        check(("sha256=" + hashlib.sha256(body).hexdigest()).encode() in hdr,
              "mkmsg digest describes its body")

        # usage errors
        for bad in ([], ["--listen", "nonsense"], ["--listen", "127.0.0.1:1", "--cert", "x"],
                    ["--listen", "127.0.0.1:1", "--defer-rate", "0.7", "--bounce-rate", "0.7"]):
            r = subprocess.run([SINK] + bad, capture_output=True)
            check(r.returncode == 1, "bad options %r exit 1 (got %d)" % (bad, r.returncode))

        p, port, stats = start_sink(d, "a", ["--threads", "2", "--cert", os.path.join(d, "cert.pem"),
                                             "--key", os.path.join(d, "key.pem")])
        procs.append(p)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3

        c = Smtp(port)
        check(c.reply()[0] == 220, "greeting")
        code, lines = c.cmd("EHLO client.test")
        check(code == 250 and "250-STARTTLS" in lines, "EHLO offers STARTTLS")
        check("250-PIPELINING" in lines and "250-CHUNKING" in lines, "PIPELINING and CHUNKING offered")
        c.starttls(ctx)
        code, lines = c.cmd("EHLO client.test")
        check(code == 250 and "250-STARTTLS" not in lines, "no STARTTLS after TLS")
        check(c.txn(raw) == 250, "good message accepted")
        bad = bytearray(raw)
        bad[-10] = ord("#") if bad[-10] != ord("#") else ord("%")
        check(c.txn(bytes(bad)) == 554, "damaged message rejected with 554")
        nodig = raw.replace(b"X-Bench-Digest:", b"X-Other-Header:")
        check(c.txn(nodig) == 554, "message without digest rejected with 554")
        # truncated body: same digest header, last line missing
        check(c.txn(raw[:-78]) == 554, "truncated message rejected with 554")
        # BDAT in two chunks, split inside the header section
        check(c.cmd("MAIL FROM:<a@client.test>")[0] == 250, "MAIL before BDAT")
        check(c.cmd("RCPT TO:<u@sink.bench.test>")[0] == 250, "RCPT before BDAT")
        c.s.sendall(b"BDAT 100\r\n" + raw[:100])
        check(c.reply()[0] == 250, "first BDAT chunk")
        c.s.sendall(b"BDAT %d LAST\r\n" % (len(raw) - 100) + raw[100:])
        check(c.reply()[0] == 250, "BDAT LAST accepted")
        check(c.cmd("QUIT")[0] == 221, "QUIT")
        sess = c.s.session
        c.s.close()

        # resumption with the ticket of the first connection
        c = Smtp(port)
        c.reply()
        c.cmd("EHLO client.test")
        c.starttls(ctx, session=sess)
        check(c.s.session_reused, "second handshake resumed")
        c.cmd("EHLO client.test")
        check(c.txn(raw) == 250, "message on the resumed session")
        c.cmd("QUIT")
        c.s.close()

        # plaintext, and a pipelined batch: MAIL, RCPT, DATA in one write
        c = Smtp(port)
        c.reply()
        c.cmd("EHLO client.test")
        c.s.sendall(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<u@sink.bench.test>\r\nDATA\r\n")
        codes = [c.reply()[0] for _ in range(3)]
        check(codes == [250, 250, 354], "pipelined MAIL/RCPT/DATA answered %r" % codes)
        c.s.sendall(raw.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        check(c.reply()[0] == 250, "plaintext message accepted")
        c.cmd("QUIT")
        c.s.close()

        st = stop_sink(p, stats)
        procs.remove(p)
        want = {"messages_ok": 4, "messages_corrupt": 3, "messages_no_digest": 1,
                "connections": 3, "handshakes_full": 1, "handshakes_resumed": 1,
                "bdat_messages": 1, "plaintext_messages": 1, "tls_messages": 3,
                "rcpt_ok": 7, "bytes_ok": 4 * len(raw), "complete": True}
        for k, v in want.items():
            check(st.get(k) == v, "stats %s = %r, want %r" % (k, st.get(k), v))
        check(st["tls_versions"]["TLSv1.3"] == 2, "two TLS 1.3 handshakes")
        check(st["groups"]["X25519"] >= 1, "X25519 negotiated")

        # bounce everything, hold replies, no extensions
        p, port, stats = start_sink(d, "b", ["--bounce-rate", "1", "--latency", "200",
                                             "--no-pipelining", "--no-chunking"])
        procs.append(p)
        t0 = time.monotonic()
        c = Smtp(port)
        check(c.reply()[0] == 220, "greeting with latency")
        check(time.monotonic() - t0 >= 0.15, "greeting held by --latency")
        code, lines = c.cmd("EHLO client.test")
        check("250-PIPELINING" not in lines and "250-CHUNKING" not in lines
              and "250-STARTTLS" not in lines, "extensions hidden: %r" % lines)
        c.cmd("MAIL FROM:<a@client.test>")
        check(c.cmd("RCPT TO:<u@sink.bench.test>")[0] == 550, "RCPT bounced")
        check(c.cmd("DATA")[0] == 554, "DATA without recipients refused")
        check(c.cmd("BDAT 10 LAST")[0] == 502, "BDAT refused when CHUNKING is off")
        # held replies keep their order, pipelined in one write or not
        c.s.sendall(b"RSET\r\nMAIL FROM:<a@client.test>\r\n")
        c.s.sendall(b"RCPT TO:<u@sink.bench.test>\r\n")
        c.s.sendall(b"DATA\r\nNOOP\r\n")
        codes = [c.reply()[0] for _ in range(5)]
        check(codes == [250, 250, 550, 554, 250], "held replies in order: %r" % codes)
        c.cmd("QUIT")
        c.s.close()
        st = stop_sink(p, stats)
        procs.remove(p)
        check(st["rcpt_bounced"] == 2 and st["messages_ok"] == 0, "bounces counted, nothing ok")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        subprocess.run(["rm", "-rf", d])
    if FAILS:
        print("%d check(s) failed" % len(FAILS), file=sys.stderr)
        sys.exit(1)
    print("bench_sink: all checks passed")


if __name__ == "__main__":
    main()
