"""The checks of the IPv6 world (ipv6_lib.sh's v6_rig_start) that
ctl_ipv6_deliver and daemon_ipv6_ksock share: campaign "six" with N6
recipients at v6.test (an MX host with only AAAA), ND at dual.test (A
and AAAA) and NR at rt6.test (a static route to [V6]:2526)."""
import glob
from mpcheck import campaign, queues_empty


def sink(tmp, name):
    """recipient -> client addresses of the messages smtp-sink dumped"""
    got = {}
    for f in glob.glob("%s/%s/m.*" % (tmp, name)):
        head = open(f, "rb").read().split(b"\n\n", 1)[0].decode("utf-8", "replace")
        client = [l.split(":", 1)[1].strip() for l in head.splitlines() if l.startswith("X-Client-Addr:")]
        for l in head.splitlines():
            if l.startswith("X-Rcpt-Args:"):
                a = l.split(":", 1)[1].strip().split()[0].strip("<>").lower()
                got.setdefault(a, []).append(client[0] if client else "")
    return got


def check_world(chk, red, tmp, v6, n6, nd, nr, src6, src4):
    """Every recipient delivered once at the sink its address family and
    route call for, from the source address of that family, with its
    "ip" recorded; AAAA asked only for the IPv6-only host, and the routed
    domain never looked up."""
    check = chk.check
    rc, c, by = campaign(chk, red, "six", n6 + nd + nr)
    check(by == {"delivered": n6 + nd + nr}, "states %s" % by)
    queues_empty(chk, red)
    s6, s4, s6r = sink(tmp, "sink6"), sink(tmp, "sink4"), sink(tmp, "sink6r")
    for i in range(1, n6 + 1):
        a = "u%d@v6.test" % i
        j = rc.get(a, {})
        check(j.get("state") == "delivered" and j.get("code") == 250, "%s: %s" % (a, j))
        check(j.get("ip") == v6, "%s: ip %r, want %s" % (a, j.get("ip"), v6))
        check(j.get("mx") == "mx.v6.test", "%s: mx %r" % (a, j.get("mx")))
        check(len(s6.get(a, [])) == 1, "%s: %d messages at the IPv6 sink" % (a, len(s6.get(a, []))))
        check(a not in s4, "%s: at the IPv4 sink" % a)
        check(all(x == "ipv6:" + src6 for x in s6.get(a, [])), "%s: client %s, want ipv6:%s" % (a, s6.get(a), src6))
    for i in range(1, nd + 1):
        a = "d%d@dual.test" % i
        j = rc.get(a, {})
        check(j.get("state") == "delivered", "%s: %s" % (a, j))
        check(j.get("ip") == "127.0.0.1", "%s: ip %r (IPv4 preferred)" % (a, j.get("ip")))
        check(len(s4.get(a, [])) == 1, "%s: %d messages at the IPv4 sink" % (a, len(s4.get(a, []))))
        check(a not in s6, "%s: at the IPv6 sink" % a)
        check(all(x == src4 for x in s4.get(a, [])), "%s: client %s, want %s" % (a, s4.get(a), src4))
    for i in range(1, nr + 1):
        a = "r%d@rt6.test" % i
        j = rc.get(a, {})
        check(j.get("state") == "delivered" and j.get("code") == 250, "%s: %s" % (a, j))
        check(j.get("ip") == v6, "%s: ip %r, want %s (the route's)" % (a, j.get("ip"), v6))
        check(len(s6r.get(a, [])) == 1, "%s: %d messages at the route's sink" % (a, len(s6r.get(a, []))))
        check(a not in s6 and a not in s4, "%s: at a sink DNS would pick" % a)
        check(all(x == "ipv6:" + src6 for x in s6r.get(a, [])), "%s: client %s" % (a, s6r.get(a)))
    check(sum(len(v) for v in s6r.values()) == nr, "route sink holds %d messages" % sum(len(v) for v in s6r.values()))
    check(sum(len(v) for v in s6.values()) == n6, "IPv6 sink holds %d messages" % sum(len(v) for v in s6.values()))
    check(sum(len(v) for v in s4.values()) == nd, "IPv4 sink holds %d messages" % sum(len(v) for v in s4.values()))
    q = open(tmp + "/dnsq.log", errors="replace").read()
    check("query[AAAA] mx.v6.test" in q, "no AAAA query for the IPv6-only host")
    check("query[AAAA] mx.dual.test" not in q, "AAAA asked for a host with an A record")
    check("rt6.test" not in q, "rt6.test looked up in DNS despite its route")
