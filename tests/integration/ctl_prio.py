#!/usr/bin/python3
"""Scheduling across campaigns, end to end: a real redis-server, mailpumpctl,
mp-deliver and Postfix's smtp-sink on loopback (random free ports).

  1. A paused campaign P (10,000 recipients over 100 domains) and a
     campaign W outside its send window (the same size) are queued before
     a running campaign R (100). R finishes in the time it takes alone:
     at most 3x that plus 2 s (the bound stated in the README). Nothing of
     P or W is sent (Redis counters and the sink's files agree). Then
     `mailpumpctl resume P` and `mailpumpctl window W none` complete both,
     every recipient exactly once. R's first run has --retention 3: its
     keys expire 3 s after done, then list and export no longer know it.
  2. Priority: a bulk campaign B of 200,000 recipients is sending when a
     transactional campaign T of 1,000 is submitted. T completes while B
     delivers at most what the daemon held of B already (32 batches of
     100) plus 1.5 s of B's own rate (before the scheduler had priorities,
     T waited for all of B), and B keeps sending meanwhile.
  3. Fairness: a second bulk campaign F is submitted while B still sends.
     Over the middle 80% of F's run the two progress at rates within 2x of
     each other.

MP_PRIO_SCALE=N divides B (the sanitizer build is slower).
Usage: ctl_prio.py MP_DELIVER MAILPUMPCTL
"""
import datetime
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
import mpcheck  # noqa: E402

DELIVER, CTL = sys.argv[1], sys.argv[2]
SCALE = int(os.environ.get("MP_PRIO_SCALE", "1"))
for prog in ("redis-server", "redis-cli"):
    if shutil.which(prog) is None:
        print("SKIP: %s not installed" % prog)
        sys.exit(77)
if not os.access("/usr/sbin/smtp-sink", os.X_OK):
    print("SKIP: smtp-sink not installed (postfix)")
    sys.exit(77)

W = mpcheck.Scratch("mp-prio.")
TMP, fail, spawn, wait_for, port_open = W.tmp, W.fail, W.spawn, W.wait_for, W.port_open
# one sink dumps every message to a file (phase 1), one only answers
# (phases 2 and 3: 200,000 files would measure the disk)
RPORT, SPORT, SINKDIR = W.redis_sink()
CPORT = mpcheck.free_port()
URL = "redis://127.0.0.1:%d" % RPORT
spawn("csink", ["/usr/sbin/smtp-sink", "-u", "nobody", "127.0.0.1:%d" % CPORT, "256"])


def redis(*args):
    return subprocess.run(["redis-cli", "-p", str(RPORT), "--raw"] + [str(a) for a in args],
                          capture_output=True, text=True, check=True).stdout.splitlines()


wait_for("the second sink", lambda: port_open(CPORT), 10)

TEXT = os.path.join(TMP, "text.txt")
with open(TEXT, "w") as f:
    f.write("Hello {{name}}, this is campaign {{camp}}.\n")


def recipients(name, n, domains, tag):
    path = os.path.join(TMP, name + ".csv")
    with open(path, "w") as f:
        f.write("email,name,camp\n")
        for i in range(n):
            f.write("%s%d@d%d.%s.test,N%d,%s\n" % (tag, i, i % domains, tag, i, tag))
    return path


def submit(cid, csv, *extra):
    p = subprocess.run([CTL, "--redis", URL, "submit", "--quiet", "--id", cid,
                        "--from", "news@sender.test", "--subject", "camp " + cid,
                        "--text", TEXT] + list(extra) + [csv],
                       capture_output=True, text=True)
    if p.returncode != 0:
        fail("submit %s: exit %d: %s" % (cid, p.returncode, p.stderr[-2000:]))


def ctl(*args):
    p = subprocess.run([CTL, "--redis", URL] + list(args), capture_output=True, text=True)
    if p.returncode != 0:
        fail("mailpumpctl %s: exit %d: %s" % (" ".join(args), p.returncode, p.stderr))
    return p.stdout


def counts(cid):
    c = redis("hgetall", "mp:campaign:%s:counts" % cid)
    return {k: int(v) for k, v in zip(c[0::2], c[1::2])}


def state(cid):
    return (redis("hget", "mp:campaign:" + cid, "state") or [""])[0]


def delivered(cid):
    return counts(cid).get("delivered", 0)


daemon_n = 0


def start_daemon(sink_port):
    global daemon_n
    daemon_n += 1
    return spawn("deliver%d" % daemon_n,
                 [DELIVER, "--redis", URL, "--helo", "client.sender.test",
                  "--consumer", "prio%d" % daemon_n, "--route", "*=127.0.0.1:%d" % sink_port,
                  "--max-conns", "4", "--log-level", "warn", "--stats"])


def stop_daemon(p):
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(60)
    except subprocess.TimeoutExpired:
        fail("mp-deliver did not stop within 60 s of SIGTERM")
    if rc != 0:
        fail("mp-deliver exited %d" % rc)


def run_until_done(cid, timeout):
    t0 = time.monotonic()
    wait_for("campaign %s done" % cid, lambda: state(cid) == "done", timeout, 0.02)
    return time.monotonic() - t0


def sink_files(tag):
    """messages the dumping sink holds for campaign tag, by recipient"""
    got = {}
    for f in glob.glob(SINKDIR + "/m.*"):
        with open(f, errors="replace") as fh:
            data = fh.read()
        if ("Subject: camp %s\n" % tag) not in data.replace("\r\n", "\n"):
            continue
        for line in data.splitlines():
            if line.startswith("To: "):
                got[line[4:].strip().strip("<>")] = got.get(line[4:].strip().strip("<>"), 0) + 1
                break
    return got


chk = mpcheck.Checks()

# --- 1. paused and out-of-window campaigns do not hold up a running one ---
d = start_daemon(SPORT)
submit("r0", recipients("r0", 100, 10, "r0"), "--retention", "3")
t_alone = run_until_done("r0", 120)
stop_daemon(d)
# retention: r0's keys expire 3 s after done (checked gone below)
R0_KEYS = ["mp:campaign:r0" + k for k in ("", ":rcpt", ":counts", ":jobs")]
for k in R0_KEYS:
    t = int(redis("pttl", k)[0])
    chk.check(0 < t <= 3000, "retention 3 s: %s pttl %d" % (k, t))

submit("p", recipients("p", 10000, 100, "p"))
ctl("pause", "p")
now = datetime.datetime.now(datetime.timezone.utc)
w0 = (now + datetime.timedelta(hours=3)).strftime("%H:%M")
w1 = (now + datetime.timedelta(hours=4)).strftime("%H:%M")
submit("w", recipients("w", 10000, 100, "w"), "--window", "%s-%s" % (w0, w1))
submit("r1", recipients("r1", 100, 10, "r1"))
d = start_daemon(SPORT)
t_with = run_until_done("r1", 120)
bound = 3 * t_alone + 2
print("R alone %.2f s, R behind a paused P and a closed-window W %.2f s (bound %.2f s)"
      % (t_alone, t_with, bound))
chk.check(t_with <= bound, "R took %.2f s behind P and W, alone %.2f s" % (t_with, t_alone))
time.sleep(2)   # P and W would have had time to send
for cid in ("p", "w"):
    c = counts(cid)
    chk.check(c.get("queued") == 10000 and c.get("delivered", 0) == 0,
              "%s held: counts %s" % (cid, c))
chk.check(state("p") == "paused" and state("w") == "running",
          "states p=%s w=%s" % (state("p"), state("w")))
time.sleep(1)
chk.check(not sink_files("p") and not sink_files("w"), "the sink holds messages of P or W")
chk.check(len(sink_files("r1")) == 100, "the sink does not hold R's 100 messages")
chk.report()

ctl("resume", "p")
ctl("window", "w", "none")
t_pw = run_until_done("p", 300) if state("p") != "done" else 0
run_until_done("w", 300)
print("after resume / window none: P and W done in %.1f s" % t_pw)
for cid in ("p", "w"):
    mpcheck.campaign(chk, mpcheck.Redis(None, RPORT), cid, 10000)
    c = counts(cid)
    chk.check(c.get("delivered") == 10000, "%s after release: %s" % (cid, c))
    wait_for("sink files of " + cid, lambda: len(sink_files(cid)) >= 10000, 30, 0.5)
    got = sink_files(cid)
    chk.check(len(got) == 10000 and set(got.values()) == {1},
              "%s at the sink: %d recipients, %d duplicated"
              % (cid, len(got), sum(1 for v in got.values() if v > 1)))
# r0's retention is over: its keys are gone, a listing forgets it, and
# export says it is unknown
chk.check(all(redis("exists", k) == ["0"] for k in R0_KEYS),
          "r0 kept keys after its retention: %s" % [k for k in R0_KEYS if redis("exists", k) != ["0"]])
lst = json.loads(ctl("--json", "list"))
chk.check("r0" not in [c["id"] for c in lst["campaigns"]], "list shows the expired r0")
chk.check(redis("zscore", "mp:campaigns", "r0") == [""], "mp:campaigns keeps the expired r0")
p = subprocess.run([CTL, "--redis", URL, "export", "r0"], capture_output=True, text=True)
chk.check(p.returncode == 3 and "unknown campaign 'r0'" in p.stderr,
          "export of an expired campaign: %d %s" % (p.returncode, p.stderr))
chk.report()
stop_daemon(d)

# --- 2. a transactional campaign overtakes a running bulk one ---
NB = 200000 // SCALE
NF = 20000   # not scaled: B's held 3,200 must not dominate F's run
d = start_daemon(CPORT)
b_csv = recipients("b", NB, 100, "b")
submit("b", b_csv, "--priority", "bulk")
wait_for("B sending", lambda: delivered("b") >= 5000 // SCALE, 300, 0.2)
t_csv = recipients("t", 1000, 10, "t")
ra, ta = delivered("b"), time.monotonic()
time.sleep(1)
b0 = delivered("b")
rate_b = (b0 - ra) / (time.monotonic() - ta)
t0 = time.monotonic()
submit("t", t_csv, "--priority", "transactional")
samples = []
while state("t") != "done":
    if time.monotonic() - t0 > 300:
        fail("T not done within 300 s: %s" % counts("t"))
    samples.append((time.monotonic() - t0, delivered("b"), delivered("t")))
    time.sleep(0.05)
t_t = time.monotonic() - t0
b1 = delivered("b")
# what the daemon holds of B already (its 32 batches of 100) goes on, and
# B sends at its own rate while T is submitted and seen (the intake
# re-reads NS active every 250 ms): 1.5 s of that
limit = 32 * 100 + int(1.5 * rate_b)
print("T (1,000, transactional) done in %.2f s while B delivered %d more (bound %d: "
      "3,200 held + 1.5 s at B's %d/s); B at %d of %d" % (t_t, b1 - b0, limit, rate_b, b1, NB))
chk.check(b1 - b0 <= limit, "B delivered %d while T ran (bound %d)" % (b1 - b0, limit))
chk.check(b1 > b0, "B sent nothing while T ran (starved)")
chk.check(b1 < NB, "B was done before T: the test proves nothing")
chk.report()

# --- 3. two bulk campaigns share evenly ---
f_csv = recipients("f", NF, 100, "f")
submit("f", f_csv, "--priority", "bulk")
trace = []
t0 = time.monotonic()
while state("f") != "done":
    if time.monotonic() - t0 > 600:
        fail("F not done within 600 s: %s" % counts("f"))
    trace.append((delivered("b"), delivered("f")))
    time.sleep(0.05)
lo = next(i for i, (_, f) in enumerate(trace) if f >= NF // 10)
hi = next((i for i, (_, f) in enumerate(trace) if f >= NF * 9 // 10), len(trace) - 1)
db = trace[hi][0] - trace[lo][0]
df = trace[hi][1] - trace[lo][1]
print("F (%d, bulk) beside B: over F's middle 80%% B delivered %d, F %d (ratio %.2f)"
      % (NF, db, df, db / df if df else float("inf")))
chk.check(df > 0 and db > 0 and 0.5 <= db / df <= 2.0,
          "equal priorities: B %d vs F %d over the same interval" % (db, df))
chk.check(state("b") != "done" or trace[hi][0] < NB, "B finished before F: no overlap measured")
run_until_done("b", 900)
for cid, n in (("b", NB), ("t", 1000), ("f", NF)):
    c = counts(cid)
    chk.check(c.get("delivered") == n, "%s: %s" % (cid, c))
stop_daemon(d)
mpcheck.queues_empty(chk, mpcheck.Redis(None, RPORT))
chk.report()
print("ctl_prio: ok")
