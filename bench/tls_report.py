#!/usr/bin/env python3
"""Turn a bench/tls_bench.sh results directory into results.md,
results.json, sweep.png and handshakes.png.

Input (OUT/): env.json, raw/openssl_speed.txt, raw/run.json and one
directory per measurement raw/<scenario>/<contender>/ with meta.json
(what was run), sink.json (what mp-sink counted: the only source of
message counts, so a contender's own claims never enter a number),
cpu.json (mp-cpurun: wall clock and CPU of a single-process contender)
and out.json (the contender's summary line).

Definitions (also written into results.md):
  wall       first byte of the contender's work (process start; for
             Postfix the postqueue -f) to the sink counting the last
             message (sink last_msg_ts)
  msgs/s     sink-verified messages / wall
  per core   sink-verified messages (or handshakes) / contender CPU
             seconds (user+sys of all its processes), i.e. the rate one
             fully busy core would give
  cycles     contender CPU seconds x cpu MHz (/proc/cpuinfo) / count; for
             the DPDK worker its own busy-cycle counter when the summary
             has "busy_cycles"
  crypto bound (client side, one core, openssl speed):
    full TLS 1.3 handshake = 1 X25519 keygen + 1 X25519 derive (each
      costed as one "ecdhx25519" op) + 2 signature verifies with the
      server's key type (CertificateVerify + the leaf certificate's
      signature by its CA): t = 2/x25519 + 2/verify; bound = 1/t
    resumed (psk_dhe_ke) = 1 keygen + 1 derive: bound = x25519/2
    message of S bytes on a reused connection (100 per connection, the
      first handshake amortised): t = S/aead + t_resumed/100
    bulk = AES-128-GCM bytes/s x 8
  The sink's side of a full handshake (one signature + 2 X25519) is
  shown too: on a 2-core machine it can be the limit (RSA-2048 signing).
"""
import glob
import json
import math
import os
import subprocess
import sys

OUT = sys.argv[1]
CONTENDERS = ["dpdk", "smtpsend", "postfix", "nodemailer"]
LABEL = {
    "dpdk": "mailpump (DPDK, 1 worker lcore)",
    "smtpsend": "mp-smtpsend (kernel sockets, 1 thread)",
    "postfix": "Postfix smtp + tlsproxy",
    "nodemailer": "Nodemailer pool",
}


def load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def last_json_line(path):
    try:
        lines = [l for l in open(path).read().splitlines() if l.strip()]
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None


def crypto(env):
    sp = {}
    for line in open(os.path.join(OUT, "raw", "openssl_speed.txt")):
        f = line.strip().split(":")
        if f[0] == "+F2" and f[2] == "2048":
            sp["rsa2048_sign"], sp["rsa2048_verify"] = float(f[3]), float(f[4])
        elif f[0] == "+F4" and f[2] == "256":
            sp["ecdsap256_sign"], sp["ecdsap256_verify"] = float(f[3]), float(f[4])
        elif f[0] == "+F5":
            sp["x25519"] = float(f[3])
        elif f[0] == "+F" and f[2] == "AES-128-GCM":
            sp["aes128gcm_Bps"] = float(f[3])
        elif f[0] == "+F" and f[2] == "ChaCha20-Poly1305":
            sp["chacha20poly1305_Bps"] = float(f[3])
    x = sp["x25519"]
    t_res = 2 / x
    b = {
        "speed": sp,
        "full_ecdsa_hs_s": 1 / (2 / x + 2 / sp["ecdsap256_verify"]),
        "full_rsa_hs_s": 1 / (2 / x + 2 / sp["rsa2048_verify"]),
        "resumed_hs_s": 1 / t_res,
        "sink_full_ecdsa_hs_s": 1 / (2 / x + 1 / sp["ecdsap256_sign"]),
        "sink_full_rsa_hs_s": 1 / (2 / x + 1 / sp["rsa2048_sign"]),
        "bulk_gbit_s": sp["aes128gcm_Bps"] * 8 / 1e9,
        "formula": "full = 1/(2/x25519 + 2/verify); resumed = x25519/2; "
                   "message = 1/(bytes/aead + (2/x25519)/100); bulk = aead*8",
    }
    for size, name in ((1024, "1k"), (10240, "10k"), (102400, "100k")):
        b["msg_%s_s" % name] = 1 / (size / sp["aes128gcm_Bps"] + t_res / 100)
    return b


def bound_for(scen, bnd):
    if scen.startswith("hs_full_"):
        return bnd["full_%s_hs_s" % scen.split("_")[-1]]
    if scen.startswith("hs_resumed_"):
        return bnd["resumed_hs_s"]
    if scen.startswith("msg_"):
        return bnd["msg_%s_s" % scen.split("_")[1]]
    if scen.startswith("sweep_"):
        return bnd["msg_1k_s"]
    return None


def measure(rundir, env):
    m = load(os.path.join(rundir, "meta.json"), {})
    r = dict(m)
    r.setdefault("status", "error")
    if r["status"] in ("not built yet", "not installed"):
        return r
    sink = load(os.path.join(rundir, "sink.json"), {})
    cpu = load(os.path.join(rundir, "cpu.json"), {})
    summ = (last_json_line(os.path.join(rundir, "out.json")) or {}).get("summary", {})
    hz = env.get("cpu_mhz", 0) * 1e6
    ok = sink.get("messages_ok", 0)
    hs = sink.get("handshakes_full", 0) + sink.get("handshakes_resumed", 0)
    start = m.get("start_ts", cpu.get("start_ts"))
    end = sink.get("last_msg_ts", 0)
    r.update({
        "ok": ok, "corrupt": sink.get("messages_corrupt", 0),
        "hs_full": sink.get("handshakes_full", 0),
        "hs_resumed": sink.get("handshakes_resumed", 0),
        "connections": sink.get("connections", 0),
        "bytes_ok": sink.get("bytes_ok", 0),
        "claimed_delivered": summ.get("delivered"),
    })
    if "cpu_s" in m:
        r["cpu_s"] = m["cpu_s"]
    elif cpu:
        r["cpu_s"] = cpu["user_s"] + cpu["sys_s"]
    if "rss_kib" not in m and cpu:
        r["rss_kib"] = cpu.get("maxrss_kib")
    if start and end and end > start and ok > 0:
        wall = end - start
        r["wall_s"] = wall
        r["msgs_s"] = ok / wall
        r["hs_s"] = hs / wall
        r["gbit_s"] = r["bytes_ok"] * 8 / wall / 1e9
        scpu = sink.get("cpu_user_s", 0) + sink.get("cpu_sys_s", 0)
        r["sink_busy"] = scpu / max(wall, 1e-9)
    c = r.get("cpu_s")
    if c and ok:
        r["cpu_s_per_1000"] = c / ok * 1000
        r["msgs_per_core_s"] = ok / c
        r["cycles_per_msg"] = c * hz / ok
        if hs:
            r["hs_per_core_s"] = hs / c
            r["cycles_per_hs"] = c * hz / hs
    if summ.get("busy_cycles"):
        r["cycles_per_msg"] = summ["busy_cycles"] / max(ok, 1)
        if hs:
            r["cycles_per_hs"] = summ["busy_cycles"] / hs
        r["cycles_source"] = "worker busy cycles"
    if r.get("rss_kib") and r.get("sessions"):
        r["rss_kib_per_session"] = r["rss_kib"] / r["sessions"]
    if r.get("sink_busy", 0) >= 0.9:
        r["note"] = (r.get("note", "") + " sink-bound: the sink's core was busy").strip()
    if str(r.get("scenario", "")).startswith("hs_resumed_") and r["hs_full"] and not r["hs_resumed"]:
        r["note"] = (r.get("note", "") + " client does not resume TLS sessions").strip()
    if ok < r.get("count", 0) and r["status"] == "ok":
        r["status"] = "incomplete"
    if summ.get("delivered") is not None and summ["delivered"] != ok:
        r["note"] = (r.get("note", "") + " sender claims %d delivered, sink verified %d"
                     % (summ["delivered"], ok)).strip()
    return r


def fmt(v, nd=0):
    if v is None:
        return "–"
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return "–"
    if nd == 0:
        return "{:,.0f}".format(v)
    return "{:,.{}f}".format(v, nd)


def main():
    env = load(os.path.join(OUT, "env.json"), {})
    run = load(os.path.join(OUT, "raw", "run.json"), {})
    bnd = crypto(env)
    runs = []
    for d in sorted(glob.glob(os.path.join(OUT, "raw", "*", "*"))):
        if os.path.isdir(d):
            runs.append(measure(d, env))
    by = {(r.get("scenario"), r.get("contender")): r for r in runs}
    scen_order = []
    for r in runs:
        if r.get("scenario") not in scen_order:
            scen_order.append(r["scenario"])

    def skey(s):
        groups = ["hs_full", "hs_resumed", "msg_", "sweep_", "bulk"]
        g = next((i for i, p in enumerate(groups) if s.startswith(p)), 9)
        n = s.split("_")[-1]
        num = {"1k": 1, "10k": 10, "100k": 100, "ecdsa": 0, "rsa": 1}.get(n)
        if num is None:
            num = int(n) if n.isdigit() else 0
        return (g, num)
    scen_order.sort(key=skey)

    have_dpdk = any(r.get("contender") == "dpdk" and r.get("status") == "ok" for r in runs)
    ref = "dpdk" if have_dpdk else "smtpsend"
    for r in runs:
        base = by.get((r.get("scenario"), ref))
        key = "hs_per_core_s" if r.get("scenario", "").startswith("hs_") else "msgs_per_core_s"
        if base and base.get(key) and r.get(key):
            r["ratio_vs_mailpump"] = r[key] / base[key]
            r["ratio_ref"] = ref

    md = []
    md.append("# mailpump TLS benchmark")
    md.append("")
    md.append("Date: %s. Machine: %s, %s cores, Linux %s; load average %s at start, %s at end%s."
              % (env.get("date"), env.get("cpu_model"), env.get("nproc"), env.get("kernel"),
                 env.get("loadavg_start"), run.get("loadavg_end", "?"),
                 " (the machine was shared with other jobs: absolute numbers are noisy)"
                 if float(str(env.get("loadavg_start", "0")).split()[0]) > 1 else ""))
    md.append("%s; Postfix %s; Node.js %s with Nodemailer %s. Mode: %s; run took %s s. "
              "Sink pinned to CPU %s, every contender process to CPU %s."
              % (env.get("openssl"), env.get("postfix"), env.get("node"), env.get("nodemailer"),
                 "QUICK (small counts)" if env.get("quick") else "full",
                 run.get("seconds", "?"), env.get("sink_cpu"), env.get("client_cpu")))
    md.append("")
    if not have_dpdk:
        md.append("**The DPDK contender (mp-dpsend) is not built yet: its rows say so and ratios "
                  "are against mp-smtpsend (mailpump's engine on kernel sockets) instead.**")
        md.append("")
    md.append("Every number of messages is what mp-sink verified (body length and SHA-256 "
              "against the message's X-Bench-Digest); a sender's own claim is never counted. "
              "*per core* = count / contender CPU seconds (all its processes); "
              "*wall* = contender start (Postfix: `postqueue -f` on a queue filled beforehand) "
              "to the sink counting the last message; cycles = CPU s × %s MHz / count; "
              "*sink busy* = sink CPU / wall (near 100%% means the sink's core was the limit); "
              "peak RSS: mp-cpurun's ru_maxrss for single processes, for Postfix the largest sum "
              "of its processes' VmRSS seen (shared pages counted in each process)."
              % fmt(env.get("cpu_mhz"), 0))
    md.append("")

    sp = bnd["speed"]
    md.append("## Crypto bound (openssl speed, one core)")
    md.append("")
    md.append("| primitive | ops/s |")
    md.append("|---|---:|")
    md.append("| X25519 derive | %s |" % fmt(sp["x25519"]))
    md.append("| ECDSA P-256 sign / verify | %s / %s |" % (fmt(sp["ecdsap256_sign"]), fmt(sp["ecdsap256_verify"])))
    md.append("| RSA-2048 sign / verify | %s / %s |" % (fmt(sp["rsa2048_sign"]), fmt(sp["rsa2048_verify"])))
    md.append("| AES-128-GCM (16 KB) | %s MB/s |" % fmt(sp["aes128gcm_Bps"] / 1e6))
    md.append("| ChaCha20-Poly1305 (16 KB) | %s MB/s |" % fmt(sp.get("chacha20poly1305_Bps", 0) / 1e6))
    md.append("")
    md.append("| bound per core | client side | sink side |")
    md.append("|---|---:|---:|")
    md.append("| full handshake, ECDSA P-256 (2 X25519 + 2 verifies) | %s/s | %s/s |"
              % (fmt(bnd["full_ecdsa_hs_s"]), fmt(bnd["sink_full_ecdsa_hs_s"])))
    md.append("| full handshake, RSA-2048 (2 X25519 + 2 verifies) | %s/s | %s/s |"
              % (fmt(bnd["full_rsa_hs_s"]), fmt(bnd["sink_full_rsa_hs_s"])))
    md.append("| resumed handshake (2 X25519) | %s/s | |" % fmt(bnd["resumed_hs_s"]))
    for n in ("1k", "10k", "100k"):
        md.append("| %s messages, 100 per connection | %s/s | |" % (n.upper().replace("K", " KB"), fmt(bnd["msg_%s_s" % n])))
    md.append("| bulk AES-128-GCM | %s Gbit/s | |" % fmt(bnd["bulk_gbit_s"], 1))
    md.append("")

    def table(title, scens, rate_col):
        rows = [s for s in scen_order if any(s.startswith(p) for p in scens)]
        if not rows:
            return
        md.append("## " + title)
        md.append("")
        md.append("| scenario | contender | status | verified ok (corrupt) | %s | per core | bound | × %s | CPU s / 1000 msgs | cycles/msg | cycles/hs | hs full/resumed | sink busy | peak RSS | note |"
                  % (rate_col, "mailpump" if have_dpdk else "mp-smtpsend"))
        md.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for s in rows:
            for c in CONTENDERS:
                r = by.get((s, c))
                if r is None:
                    continue
                hs_sc = s.startswith("hs_")
                if r.get("status") in ("not built yet", "not installed"):
                    md.append("| %s | %s | **%s** | | | | | | | | | | | | %s |"
                              % (s, LABEL[c], r["status"], r.get("note", "")))
                    continue
                if s.startswith("bulk"):
                    rate = fmt(r.get("gbit_s"), 2) + " Gbit/s"
                    pc = fmt((r.get("bytes_ok", 0) * 8 / r["cpu_s"] / 1e9) if r.get("cpu_s") else None, 2) + " Gbit/s"
                    b = fmt(bnd["bulk_gbit_s"], 1)
                elif hs_sc:
                    rate = fmt(r.get("hs_s")) + " hs/s"
                    pc = fmt(r.get("hs_per_core_s"))
                    b = fmt(bound_for(s, bnd))
                else:
                    rate = fmt(r.get("msgs_s"))
                    pc = fmt(r.get("msgs_per_core_s"))
                    b = fmt(bound_for(s, bnd))
                rss = r.get("rss_kib")
                rss_s = (fmt(rss / 1024, 1) + " MiB") if rss else "–"
                if rss and s.startswith("sweep_"):
                    rss_s += " (%s KiB/session)" % fmt(r.get("rss_kib_per_session"), 1)
                md.append("| %s | %s | %s | %s (%s) | %s | %s | %s | %s | %s | %s | %s | %s/%s | %s | %s | %s |" % (
                    s, LABEL[c], r.get("status"), fmt(r.get("ok")), fmt(r.get("corrupt")), rate, pc, b,
                    fmt(r.get("ratio_vs_mailpump"), 2), fmt(r.get("cpu_s_per_1000"), 2),
                    fmt(r.get("cycles_per_msg")), fmt(r.get("cycles_per_hs")) if hs_sc else "–",
                    fmt(r.get("hs_full")), fmt(r.get("hs_resumed")),
                    (fmt(100 * r["sink_busy"]) + "%") if r.get("sink_busy") is not None else "–",
                    rss_s, r.get("note", "")))
        md.append("")

    table("Handshakes (one message per connection, STARTTLS, TLS 1.3 X25519)", ["hs_"], "wall rate")
    table("Messages with connection reuse (100 per connection)", ["msg_"], "msgs/s (wall)")
    table("Concurrency sweep (sink answers after 50 ms, 1 KB, 100 per connection)", ["sweep_"], "msgs/s (wall)")
    table("Bulk (1 MB messages)", ["bulk"], "wall")

    # targets
    md.append("## Targets")
    md.append("")
    tg = []
    who = "dpdk" if have_dpdk else None

    def target(name, subject, value, goal, fmtv, detail=""):
        if value is None:
            verdict = "not measured"
        elif value >= goal if not name.startswith("mem") else value <= goal:
            verdict = "met"
        else:
            if name.startswith("mem"):
                verdict = "missed: %.1f× the allowance" % (value / goal)
            else:
                verdict = "missed: reaches %.0f%% of the goal" % (100 * value / goal)
        tg.append({"target": name, "subject": subject, "value": value, "goal": goal, "verdict": verdict})
        md.append("| %s | %s | %s | %s | %s | %s |" % (name, LABEL.get(subject, subject),
                                                      fmtv(value) if value is not None else "–",
                                                      fmtv(goal), verdict, detail))

    md.append("| target | contender | value | goal | verdict | where the cycles go |")
    md.append("|---|---|---:|---:|---|---|")
    subjects = [c for c in (["dpdk"] if have_dpdk else []) + ["smtpsend"]]
    for c in subjects:
        for cert in ("ecdsa", "rsa"):
            r = by.get(("hs_full_" + cert, c), {})
            v = r.get("hs_per_core_s")
            bound = bnd["full_%s_hs_s" % cert]
            detail = ""
            if r.get("cycles_per_hs"):
                crypto_c = env.get("cpu_mhz", 0) * 1e6 / bound
                detail = ("%s cycles per handshake, of which the crypto bound accounts for %s (%.0f%%); "
                          "the rest is TCP, SMTP, record layer and OpenSSL overhead"
                          % (fmt(r["cycles_per_hs"]), fmt(crypto_c), 100 * crypto_c / r["cycles_per_hs"]))
            target("full hs/s per core ≥ 70%% of bound (%s)" % cert.upper(), c,
                   None if v is None else v / bound, 0.70, lambda x: "%.0f%%" % (100 * x), detail)
        r10 = by.get(("msg_10k", c), {})
        pf = by.get(("msg_10k", "postfix"), {})
        ks = by.get(("msg_10k", "smtpsend"), {})
        if r10.get("msgs_per_core_s") and pf.get("msgs_per_core_s"):
            target("10 KB msgs/s per core ≥ 5× Postfix", c, r10["msgs_per_core_s"] / pf["msgs_per_core_s"],
                   5.0, lambda x: "%.2f×" % x,
                   "%s vs %s cycles/msg" % (fmt(r10.get("cycles_per_msg")), fmt(pf.get("cycles_per_msg"))))
        else:
            target("10 KB msgs/s per core ≥ 5× Postfix", c, None, 5.0, lambda x: "%.2f×" % x)
        if c == "dpdk":
            if r10.get("msgs_per_core_s") and ks.get("msgs_per_core_s"):
                target("10 KB msgs/s per core ≥ 1.5× kernel-socket engine", c,
                       r10["msgs_per_core_s"] / ks["msgs_per_core_s"], 1.5, lambda x: "%.2f×" % x)
        big = max((r for r in runs if r.get("contender") == c and r.get("scenario", "").startswith("sweep_")
                   and r.get("rss_kib_per_session")), key=lambda r: r["sessions"], default=None)
        if big:
            target("mem: ≤ 64 KiB per TLS session at %s sessions" % fmt(big["sessions"]), c,
                   big["rss_kib_per_session"], 64.0, lambda x: "%.1f KiB" % x,
                   "peak RSS %s MiB / %s sessions (includes the process's fixed RSS)"
                   % (fmt(big["rss_kib"] / 1024, 1), fmt(big["sessions"])))
    if not have_dpdk:
        target("10 KB msgs/s per core ≥ 1.5× kernel-socket engine", "dpdk", None, 1.5, lambda x: "%.2f×" % x,
               "DPDK contender not built yet")
    md.append("")
    md.append("The targets are mailpump-on-DPDK's; until that row exists they are shown for "
              "mp-smtpsend (the same SMTP/TLS engine on kernel sockets) as a reference point.")
    md.append("")
    perf = sorted(glob.glob(os.path.join(OUT, "perf_*.txt")))
    if perf:
        md.append("## Where the cycles go (perf, mp-smtpsend)")
        md.append("")
        for p in perf:
            md.append("`%s`:" % os.path.basename(p))
            md.append("")
            md.append("```")
            md.extend(open(p).read().rstrip().splitlines()[:25])
            md.append("```")
            md.append("")
    if os.path.exists(os.path.join(OUT, "sweep.dat")) or True:
        md.append("![concurrency sweep](sweep.png)")
        md.append("")
        md.append("![handshakes per core against the crypto bound](handshakes.png)")
        md.append("")

    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump({"env": env, "run": run, "crypto_bound": bnd, "runs": runs, "targets": tg,
                   "ratio_reference": ref}, f, indent=1)
    plots(runs, bnd, scen_order)


def plots(runs, bnd, scen_order):
    sweep = sorted({r["sessions"] for r in runs if r.get("scenario", "").startswith("sweep_")
                    and r.get("sessions")})
    cols = [c for c in CONTENDERS if any(r.get("contender") == c and r.get("msgs_s") for r in runs)]
    with open(os.path.join(OUT, "sweep.dat"), "w") as f:
        f.write("# sessions " + " ".join(cols) + "\n")
        for n in sweep:
            vals = []
            for c in cols:
                r = next((r for r in runs if r.get("contender") == c
                          and r.get("scenario") == "sweep_%d" % n), {})
                vals.append("%.1f" % r["msgs_s"] if r.get("msgs_s") else "NaN")
            f.write("%d %s\n" % (n, " ".join(vals)))
    hs = [s for s in scen_order if s.startswith("hs_")]
    with open(os.path.join(OUT, "handshakes.dat"), "w") as f:
        f.write("# scenario bound " + " ".join(cols) + "\n")
        for s in hs:
            vals = []
            for c in cols:
                r = next((r for r in runs if r.get("contender") == c and r.get("scenario") == s), {})
                vals.append("%.1f" % r["hs_per_core_s"] if r.get("hs_per_core_s") else "NaN")
            f.write("%s %.1f %s\n" % (s, bound_for(s, bnd), " ".join(vals)))
    gp = ["set terminal pngcairo size 900,560 noenhanced" if has_cairo() else "set terminal png size 900,560",
          "set datafile missing 'NaN'",
          "set key top left", "set grid",
          "set output '%s'" % os.path.join(OUT, "sweep.png"),
          "set title 'Concurrency sweep: sink replies after 50 ms, 1 KB messages, STARTTLS'",
          "set logscale x", "set logscale y", "set xlabel 'concurrent sessions'",
          "set ylabel 'verified messages/s (wall)'"]
    if sweep and cols:
        gp.append("plot " + ", ".join("'%s' using 1:%d with linespoints lw 2 title '%s'"
                                       % (os.path.join(OUT, "sweep.dat"), i + 2, LABEL[c])
                                       for i, c in enumerate(cols)))
    else:
        gp.append("unset logscale\nset label 1 'no sweep data' at graph 0.4,0.5\nplot [1:10] 1 notitle\nunset label 1")
    gp += ["unset logscale", "set output '%s'" % os.path.join(OUT, "handshakes.png"),
           "set title 'TLS handshakes per contender CPU-second vs the crypto bound (client side)'",
           "set style data histogram", "set style histogram clustered gap 1",
           "set style fill solid 0.8 border -1", "set boxwidth 0.9", "set xtics rotate by -20",
           "set ylabel 'handshakes/s per core'", "set xlabel ''", "set logscale y", "set yrange [10:*]"]
    if hs and cols:
        gp.append("plot '%s' using 2:xtic(1) title 'crypto bound'" % os.path.join(OUT, "handshakes.dat")
                  + "".join(", '' using %d title '%s'" % (i + 3, LABEL[c]) for i, c in enumerate(cols)))
    else:
        gp.append("unset logscale\nset yrange [*:*]\nset style data lines\n"
                  "set label 1 'no handshake data' at graph 0.4,0.5\nplot [1:10] 1 notitle")
    with open(os.path.join(OUT, "plots.gp"), "w") as f:
        f.write("\n".join(gp) + "\n")
    r = subprocess.run(["gnuplot", os.path.join(OUT, "plots.gp")], capture_output=True, text=True)
    if r.returncode != 0:
        print("tls_report: gnuplot failed: " + r.stderr, file=sys.stderr)
        sys.exit(1)


def has_cairo():
    r = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True)
    return "pngcairo" in (r.stdout + r.stderr)


if __name__ == "__main__":
    main()
