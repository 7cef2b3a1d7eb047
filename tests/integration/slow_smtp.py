#!/usr/bin/env python3
"""A slow SMTP server for the daemon's concurrency test: asyncio, one
listener, the greeting held back --delay seconds after accept (so a client
piles up open sessions), then a plain RFC 5321 dialogue without STARTTLS
that accepts every message. Writes a JSON line with the peak of concurrent
connections and the message count to --stats when it gets SIGTERM (and
every second).

usage: slow_smtp.py --ip IP --port PORT --delay SECONDS --stats FILE
"""
import argparse
import asyncio
import json
import os
import signal

state = {"conns": 0, "peak": 0, "msgs": 0, "accepted": 0}


def dump(path):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.rename(tmp, path)


async def session(reader, writer, delay):
    state["conns"] += 1
    state["accepted"] += 1
    state["peak"] = max(state["peak"], state["conns"])
    try:
        await asyncio.sleep(delay)
        writer.write(b"220 slow.test ESMTP slow\r\n")
        await writer.drain()
        data = False
        while True:
            line = await asyncio.wait_for(reader.readline(), 120)
            if not line:
                break
            if data:
                if line == b".\r\n":
                    data = False
                    state["msgs"] += 1
                    writer.write(b"250 2.0.0 queued\r\n")
                continue
            cmd = line[:4].upper()
            if cmd in (b"EHLO", b"HELO"):
                writer.write(b"250-slow.test\r\n250 ENHANCEDSTATUSCODES\r\n")
            elif cmd == b"DATA":
                data = True
                writer.write(b"354 go ahead\r\n")
            elif cmd == b"QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 2.0.0 ok\r\n")
            await writer.drain()
    except (asyncio.TimeoutError, ConnectionError):
        pass
    finally:
        state["conns"] -= 1
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ip", required=True)
    ap.add_argument("--port", type=int, default=25)
    ap.add_argument("--delay", type=float, default=20)
    ap.add_argument("--stats", required=True)
    a = ap.parse_args()
    srv = await asyncio.start_server(lambda r, w: session(r, w, a.delay), a.ip, a.port,
                                     backlog=16384)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    dump(a.stats)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 1)
        except asyncio.TimeoutError:
            pass
        dump(a.stats)
    srv.close()
    dump(a.stats)


asyncio.run(main())
