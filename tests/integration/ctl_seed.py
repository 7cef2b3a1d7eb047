#!/usr/bin/env python3
"""Write a campaign into Redis the way section F of the contract says
(campaign hash, recipient hash with HSETNX-style "queued" entries, counts,
one jobs entry per batch of one domain), as RESP on stdout for
`redis-cli --pipe`. Test helper: the real submit path is mailpumpctl.

usage: ctl_seed.py --id ID --rcpts DOMAIN:N[,DOMAIN:N...] [--ns mp:]
       [--batch 100] [--tls-policy opportunistic] [--max-age S]
       [--state running] [--user-prefix u]
"""
import argparse
import json
import sys
import time


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--id", required=True)
    p.add_argument("--rcpts", required=True)
    p.add_argument("--ns", default="mp:")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--tls-policy", default="opportunistic")
    p.add_argument("--tls-overrides", default="")
    p.add_argument("--max-age", type=int, default=432000)
    p.add_argument("--state", default="running")
    p.add_argument("--user-prefix", default="u")
    p.add_argument("--from-addr", default="news@sender.test")
    a = p.parse_args()

    ns, cid = a.ns, a.id
    now = int(time.time() * 1000)
    w = sys.stdout.buffer
    rcpts = []
    for item in a.rcpts.split(","):
        dom, n = item.split(":")
        for i in range(int(n)):
            rcpts.append((dom, "%s%d@%s" % (a.user_prefix, i, dom), {"first": "F%d" % i, "n": i}))
    w.write(resp("HSET", ns + "campaign:" + cid,
                 "id", cid, "from", a.from_addr, "from_name", "Sender",
                 "reply_to", "", "subject", "Hello {{first}}",
                 "text", "Dear {{first}},\nyour number is {{n}}.\n.\nA line with a dot above.\n",
                 "html", "", "headers", "{}", "unsubscribe", "",
                 "tls_policy", a.tls_policy, "tls_overrides", a.tls_overrides,
                 "window", "", "max_age_s", a.max_age, "state", a.state,
                 "created_ms", now, "submitted_ms", now, "total", len(rcpts),
                 "invalid", 0, "duplicates_skipped", 0))
    w.write(resp("ZADD", ns + "campaigns", now, cid))
    for dom, addr, f in rcpts:
        w.write(resp("HSETNX", ns + "campaign:" + cid + ":rcpt", addr,
                     json.dumps({"state": "queued", "attempts": 0})))
    w.write(resp("HSET", ns + "campaign:" + cid + ":counts", "queued", len(rcpts),
                 "deferred", 0, "delivered", 0, "bounced", 0, "failed", 0,
                 "cancelled", 0, "dup_deliveries", 0, "attempts", 0))
    bydom = {}
    for dom, addr, f in rcpts:
        bydom.setdefault(dom, []).append({"to": addr, "f": f})
    for dom, lst in bydom.items():
        for i in range(0, len(lst), a.batch):
            w.write(resp("XADD", ns + "jobs", "*", "campaign", cid, "domain", dom,
                         "attempt", 0, "rcpts", json.dumps(lst[i:i + a.batch])))


main()
