"""DKIM verified by opendkim with real DNS lookups, for the tests that
deliver signed mail (daemon_dkim.sh).

  DkimDns(tmp, records)  dnsmasq serving records {owner: [strings]} on
                         port 53 of the loopback of a network namespace of
                         its own (ns, default mpdkim<pid>; opendkim-testmsg's libc resolver takes
                         /etc/resolv.conf, which has no port: `ip netns
                         exec` puts /etc/netns/NAME/resolv.conf there);
                         verify(msg) -> (exit, message) of
                         opendkim-testmsg; queries() -> TXT queries it
                         answered; close() (also at exit)
  records(ctl, conf, domain, selectors)  what `mailpumpctl dkim-record`
                         prints for them, as {owner: [strings]}
  only(msg, alg)         msg with only its signature of a=alg
  tampered(msg)          {what: msg changed after signing}
Needs root, ip, /usr/sbin/dnsmasq and /usr/sbin/opendkim-testmsg.
"""
import atexit
import os
import re
import shutil
import subprocess
import time


def records(ctl, conf, domain, selectors):
    out = {}
    for sel in selectors:
        p = subprocess.run([ctl, "-c", conf, "dkim-record", domain, sel],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, "dkim-record %s %s: %s" % (domain, sel, p.stderr)
        m = re.match(r'^([^ ]+)\. IN TXT \( ((?:"[^"]*" ?)+)\)$', p.stdout.strip())
        assert m, "dkim-record output %r" % p.stdout
        out[m.group(1)] = re.findall(r'"([^"]*)"', m.group(2))
    return out


class DkimDns:
    def __init__(self, tmp, recs, ns=None):
        self.ns = ns or "mpdkim%d" % os.getpid()
        self.etc = "/etc/netns/" + self.ns
        self.log = os.path.join(tmp, "dnsmasq.log")
        self.proc = None
        atexit.register(self.close)
        subprocess.run(["ip", "netns", "add", self.ns], check=True, timeout=30)
        subprocess.run(["ip", "-n", self.ns, "link", "set", "lo", "up"], check=True, timeout=30)
        os.makedirs(self.etc)
        with open(self.etc + "/resolv.conf", "w") as f:
            f.write("nameserver 127.0.0.1\noptions timeout:2 attempts:2\n")
        conf = os.path.join(tmp, "dnsmasq.conf")
        with open(conf, "w") as f:
            for owner, strs in recs.items():
                f.write("txt-record=%s,%s\n" % (owner, ",".join('"%s"' % s for s in strs)))
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "/usr/sbin/dnsmasq", "-k", "--conf-file=" + conf,
             "--port=53", "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv",
             "--no-hosts", "--user=root", "--log-queries", "--log-facility=" + self.log],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if os.path.exists(self.log) and "started" in open(self.log).read():
                return
            time.sleep(0.05)
        raise RuntimeError("dnsmasq did not start")

    def verify(self, msg):
        p = subprocess.run(["ip", "netns", "exec", self.ns, "/usr/sbin/opendkim-testmsg"],
                           input=msg, capture_output=True, timeout=30)
        return p.returncode, p.stderr.decode(errors="replace").strip()

    def queries(self, selector=None):
        with open(self.log) as f:
            log = f.read()
        pat = r"query\[TXT\] " + (re.escape(selector) + r"\._domainkey\." if selector else "")
        return len(re.findall(pat, log))

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        subprocess.run(["ip", "netns", "del", self.ns], stderr=subprocess.DEVNULL)
        shutil.rmtree(self.etc, ignore_errors=True)


def only(m, alg):
    head, body = m.split(b"\r\n\r\n", 1)
    fields = re.split(rb"\r\n(?![ \t])", head)
    keep = [f for f in fields if not f.lower().startswith(b"dkim-signature:") or
            re.search(rb"a=" + alg + rb";", re.sub(rb"\s", b"", f))]
    assert len(keep) == len(fields) - 1, "not one %s signature of two" % alg
    return b"\r\n".join(keep) + b"\r\n\r\n" + body


def tampered(m):
    head, body = m.split(b"\r\n\r\n", 1)
    out = {
        "changed body": head + b"\r\n\r\n" + body.replace(b"code", b"c0de", 1),
        "changed Subject": re.sub(rb"^(Subject: .)", rb"\1x", head, count=1, flags=re.M) +
        b"\r\n\r\n" + body,
        "selector not in DNS": re.sub(rb"(s=[^;\s]+);", rb"\1x;", head) + b"\r\n\r\n" + body,
    }
    for what, bad in out.items():
        assert bad != m, what + ": nothing changed"
    return out
