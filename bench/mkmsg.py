#!/usr/bin/env python3
"""Write a benchmark message: RFC 5322, CRLF line ends, about SIZE bytes,
with an "X-Bench-Digest: len=N; sha256=HEX" header describing the body
(the bytes after the blank line, CRLF line ends, as mp-sink sees them
after dot-unstuffing, the last line's CRLF included). Body lines are 76
characters; every 50th starts with a dot, so a sender that forgets to
dot-stuff damages the message and mp-sink counts it corrupt.

usage: mkmsg.py SIZE OUT [FROM] [TO]
"""
import hashlib
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    size = int(sys.argv[1])
    out = sys.argv[2]
    frm = sys.argv[3] if len(sys.argv) > 3 else "bench@client.bench.test"
    to = sys.argv[4] if len(sys.argv) > 4 else "rcpt@sink.bench.test"
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    hdr_est = 400
    lines = []
    n = 0
    i = 0
    while n < max(size - hdr_est, 80):
        row = bytes(alphabet[(i * 7 + k) % len(alphabet)] for k in range(76))
        if i % 50 == 7:
            row = b"." + row[1:]
        lines.append(row + b"\r\n")
        n += 78
        i += 1
    body = b"".join(lines)
    digest = hashlib.sha256(body).hexdigest()
    hdr = (
        f"From: Bench <{frm}>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: mailpump bench message ({size} bytes)\r\n"
        f"Date: Tue, 01 Dec 2026 12:00:00 +0000\r\n"
        f"Message-ID: <bench-{size}@client.bench.test>\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=us-ascii\r\n"
        f"X-Bench-Digest: len={len(body)}; sha256={digest}\r\n"
        f"\r\n"
    ).encode()
    with open(out, "wb") as f:
        f.write(hdr + body)


if __name__ == "__main__":
    main()
