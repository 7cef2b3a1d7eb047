#!/usr/bin/env bash
# TCP benchmark: the userspace stack (mp-tcpbench on DPDK net_af_xdp over
# a veth with offloads off, net_af_packet where AF_XDP cannot attach: the
# rig of tests/integration/rig.sh; MP_BENCH_NIC=tap for the old net_tap;
# one worker lcore) against Linux kernel sockets (mp-tcpkclient, one epoll
# thread, over a veth from a client namespace), both talking to the SAME
# mp-tcpserver in a server namespace, in one run:
#   short connections/s  connect, 100-byte request, 100-byte response, close
#   bulk Gbit/s          one connection sending --bytes, checked by the sink
# Each scenario alternates the two clients MP_BENCH_ROUNDS times (default
# 5) and keeps the median run of each. Prints a markdown table and one JSON
# line, and writes both to $MP_BENCH_RESULTS/tcp-<date>.{md,json} (default
# bench/results next to this script). Bounded: every client run has its
# own timeout, the whole run stays under 4 minutes.
#
# Topology (addresses from the tcpbench ranges):
#   server ns: veth 198.18.10.1/24 <- dp ns: mp-tcpbench 198.18.10.2 (DPDK on
#              the veth's other end; with MP_BENCH_NIC=tap a tap in the
#              server ns, mp-tcpbench in the server ns)
#              veth 198.18.11.1/24 <- client ns 198.18.11.2 (mp-tcpkclient)
# Pinning on a 2-core machine: the server on CPU 0, each client (every
# thread of mp-tcpbench, or the kernel client's one thread) on CPU 1.
# Client CPU is the process's user+sys time from the first connect to the
# last completion (getrusage); the worker's busy cycles are TSC cycles of
# loop iterations that did work, so they include time the worker was
# preempted on a loaded machine.
#
# usage: tcp_bench.sh MP_TCPBENCH MP_TCPKCLIENT MP_TCPSERVER
. "$(dirname "$0")/../tests/integration/lib.sh"
mp_need_root
BENCH=$1
KCLIENT=$2
SERVER=$3
RESULTS=${MP_BENCH_RESULTS:-$(cd "$(dirname "$0")" && pwd)/results}
ROUNDS=${MP_BENCH_ROUNDS:-5}
RR_CONNS=${MP_BENCH_RR_CONNS:-20000}
RR_CONC=${MP_BENCH_RR_CONC:-256}
BULK_BYTES=${MP_BENCH_BULK_BYTES:-$((256 * 1048576))}
RUN_TIMEOUT=${MP_BENCH_RUN_TIMEOUT:-20}
BENCH_START=$(date +%s)
LOAD_START=$(cut -d" " -f1 /proc/loadavg)

NS_S=mptbs$MP_SUFFIX
NS_C=mptbc$MP_SUFFIX
NS_D=mptbd$MP_SUFFIX
NIC=${MP_BENCH_NIC:-rig}
TAP=mptbt$MP_SUFFIX
VS=mptbvs$MP_SUFFIX
VC=mptbvc$MP_SUFFIX
DP_IP=198.18.10.2
TAP_IP=198.18.10.1
VS_IP=198.18.11.1
VC_IP=198.18.11.2

if [ "$(nproc)" -ge 2 ]; then
	SRV_CPU=0 CLI_CPU=1
else
	SRV_CPU=0 CLI_CPU=0
fi
# Every thread of mp-tcpbench (main lcore, worker lcore, EAL's control
# threads) on the client CPU, like the kernel client's one thread.
LCORES=0@$CLI_CPU,1@$CLI_CPU

mp_netns "$NS_S"
mp_netns "$NS_C"
if [ "$NIC" = tap ]; then
	ip netns exec "$NS_S" ip tuntap add dev "$TAP" mode tap multi_queue
	ip netns exec "$NS_S" ip addr add $TAP_IP/24 dev "$TAP"
	ip netns exec "$NS_S" ip link set "$TAP" up
	DP_NS=$NS_S VDEV="net_tap_b$MP_SUFFIX,iface=$TAP" NIC_NAME="net_tap"
else
	mp_netns "$NS_D"
	mp_rig_veth "$NS_S" "mptbd$MP_SUFFIX" "$TAP" "$NS_D"
	ip netns exec "$NS_S" ip addr add $TAP_IP/24 dev "$TAP"
	DP_NS=$NS_D VDEV=$(mp_rig_vdev "b$MP_SUFFIX") NIC_NAME="$MP_RIG_PMD on a veth (offloads off)"
fi
ip link add "$VS" netns "$NS_S" type veth peer name "$VC" netns "$NS_C" ||
	mp_fail "cannot create the veth pair"
ip netns exec "$NS_S" ip addr add $VS_IP/24 dev "$VS"
ip netns exec "$NS_S" ip link set "$VS" up
ip netns exec "$NS_C" ip addr add $VC_IP/24 dev "$VC"
ip netns exec "$NS_C" ip link set "$VC" up
# A good kernel client has the whole port range and reuses TIME_WAIT
# ports (the userspace stack does both: RFC 6191 reuse, a bounded pool).
ip netns exec "$NS_C" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" \
	net.ipv4.tcp_tw_reuse=1
ip netns exec "$NS_S" sysctl -qw net.core.somaxconn=65535 \
	net.ipv4.tcp_max_syn_backlog=65535

SRV_PIDS=()
start_server() {  # PORT MODE
	ip netns exec "$NS_S" taskset -c $SRV_CPU "$SERVER" 0.0.0.0 "$1" "$2" \
		>"$MP_TMP/srv$1.log" 2>&1 &
	MP_PIDS+=($!)
	SRV_PIDS+=($!)
	mp_wait_for 10 grep -q listening "$MP_TMP/srv$1.log" || mp_fail "server $1 did not start"
}
start_server 7 echo
start_server 19 sink
ip netns exec "$NS_C" ping -c1 -W2 $VS_IP >/dev/null || mp_fail "veth path down"

srv_ticks() {
	local t=0 p
	for p in "${SRV_PIDS[@]}"; do
		t=$((t + $(mp_cpu_ticks "$p")))
	done
	echo $t
}

run=0
# one SIDE NAME ARGS...: run one client once; its JSON (plus the server's
# CPU seconds over the run) goes to $MP_TMP/<NAME>.<round>.json.
one() {
	local side=$1 name=$2 out t0 t1 rc
	shift 2
	run=$((run + 1))
	out="$MP_TMP/$name.$round.json"
	t0=$(srv_ticks)
	if [ "$side" = mp ]; then
		ip netns exec "$DP_NS" timeout -k 5 $((RUN_TIMEOUT + 15)) taskset -c $CLI_CPU \
			"$MP_RIG_EXEC" "$BENCH" --vdev "$VDEV" --ip $DP_IP/24 \
			--file-prefix "mptb$MP_SUFFIX" --garp 0 --lcores $LCORES --await-neighbour \
			--timeout "$RUN_TIMEOUT" "$@" >"$out.raw" 2>"$MP_TMP/$name.$round.log"
	else
		ip netns exec "$NS_C" timeout -k 5 $((RUN_TIMEOUT + 5)) taskset -c $CLI_CPU \
			"$KCLIENT" --timeout "$RUN_TIMEOUT" "$@" >"$out.raw" 2>"$MP_TMP/$name.$round.log"
	fi
	rc=$?
	t1=$(srv_ticks)
	[ $rc -eq 0 ] || mp_fail "$name round $round: client exited with $rc"
	python3 - "$out.raw" "$out" "$(( t1 - t0 ))" "$(getconf CLK_TCK)" <<'PY' ||
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
j["server_cpu_s"] = int(sys.argv[3]) / int(sys.argv[4])
if "proc_cpu_user_s" in j:
    # mp-tcpbench: the client's CPU is the whole process's (the worker
    # thread's own figures are kept as worker_cpu_*).
    j["worker_cpu_user_s"], j["worker_cpu_sys_s"] = j["cpu_user_s"], j["cpu_sys_s"]
    j["cpu_user_s"], j["cpu_sys_s"] = j["proc_cpu_user_s"], j["proc_cpu_sys_s"]
json.dump(j, open(sys.argv[2], "w"))
bad = j["ok"] != j["conns"] or j["timed_out"]
print("  %-8s round %s: ok=%d/%d %.2f s %.0f conn/s %.3f Gbit/s%s" % (
    sys.argv[2].split("/")[-1].split(".")[0], sys.argv[2].split(".")[-2], j["ok"],
    j["conns"], j["seconds"], j["conns_per_s"], j["gbit_per_s"],
    "  <- FAILED RUN" if bad else ""))
sys.exit(1 if bad else 0)
PY
		mp_fail "$name round $round: $(tail -c 600 "$out.raw")"
}

echo "tcp bench: $(nproc) cores, mailpump on $NIC_NAME vs kernel on a veth, up to $ROUNDS rounds" >&2
done_rounds=0
for round in $(seq "$ROUNDS"); do
	one mp mp_rr --peer $TAP_IP:7 --mode echo --bytes 100 --conns "$RR_CONNS" \
		--concurrency "$RR_CONC"
	one k k_rr --peer $VS_IP:7 --mode echo --bytes 100 --conns "$RR_CONNS" \
		--concurrency "$RR_CONC"
	one mp mp_conn --peer $TAP_IP:7 --mode connect --conns "$RR_CONNS" \
		--concurrency "$RR_CONC"
	one k k_conn --peer $VS_IP:7 --mode connect --conns "$RR_CONNS" \
		--concurrency "$RR_CONC"
	one mp mp_bulk --peer $TAP_IP:19 --mode bulk --bytes "$BULK_BYTES" --conns 1
	one k k_bulk --peer $VS_IP:19 --mode bulk --bytes "$BULK_BYTES" --conns 1
	# The same kernel client with one MSS per packet, as on the tap: no
	# 64 KiB GSO packets through the veth.
	ip netns exec "$NS_C" ip link set dev "$VC" gso_max_segs 1
	one k k_bulk1 --peer $VS_IP:19 --mode bulk --bytes "$BULK_BYTES" --conns 1
	ip netns exec "$NS_C" ip link set dev "$VC" gso_max_segs 65535
	done_rounds=$round
	if [ $(( $(date +%s) - BENCH_START )) -gt 150 ]; then
		echo "tcp bench: stopping after round $round (time budget)" >&2
		break
	fi
done

mkdir -p "$RESULTS" || mp_fail "cannot create $RESULTS"
STAMP=$(date -u +%Y%m%d-%H%M%S)
python3 - "$MP_TMP" "$done_rounds" "$RESULTS/tcp-$STAMP" "$(nproc)" \
	"$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "$(uname -r)" \
	"$LOAD_START" "$(cut -d' ' -f1 /proc/loadavg)" "$NIC_NAME" <<'PY' || mp_fail "report"
import json, statistics, sys, time
tmp, rounds = sys.argv[1], int(sys.argv[2])
base, ncpu, model, kernel, load0, load1, nic = sys.argv[3:]

def load(name):
    return [json.load(open("%s/%s.%d.json" % (tmp, name, r))) for r in range(1, rounds + 1)]

def cpu(j):
    return j["cpu_user_s"] + j["cpu_sys_s"]

def med(xs):
    return statistics.median(xs)

# Every figure is the median over the rounds of that figure: the machine
# is shared, so rates and CPU times vary from round to round.
res = {"bench": "tcp", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
       "machine": {"cpus": int(ncpu), "model": model, "kernel": kernel,
                   "loadavg_start": float(load0), "loadavg_end": float(load1),
                   "mailpump_nic": "%s (DPDK 22.11, --no-pci)" % nic, "kernel_nic": "veth"},
       "rounds": rounds}
md = ["## TCP benchmark, %s" % res["date"], "",
      "Machine: %s CPUs (%s), Linux %s, load average %s at the start, %s at the end. "
      "mailpump: mp-tcpbench on DPDK %s, one worker lcore; kernel: mp-tcpkclient, one "
      "epoll thread, over a veth from another namespace; both against the same mp-tcpserver "
      "(one thread per port, kernel sockets). Server on CPU 0, client on CPU 1. Each figure "
      "is the median over %d alternating rounds (a ratio: the median of the rounds' ratios)." % (ncpu, model, kernel, load0, load1, nic, rounds),
      "", "| | mailpump | kernel | mailpump/kernel |", "|---|---:|---:|---:|"]

def row(label, a, b, fmt, ratio=True):
    r = ("%.2fx" % (a / b)) if ratio and b else ""
    md.append("| %s | %s | %s | %s |" % (label, fmt % a, fmt % b, r))

hz = load("mp_rr")[0]["tsc_hz"]
for key, title in (("rr", "connect, 100 B request, 100 B response, close"),
                   ("conn", "connect and close")):
    M, K = load("mp_" + key), load("k_" + key)
    d = {"conns": M[0]["conns"], "concurrency": M[0]["concurrency"],
         "bytes": M[0]["bytes_per_conn"],
         "mailpump_all": [j["conns_per_s"] for j in M],
         "kernel_all": [j["conns_per_s"] for j in K],
         "ratio_all": [m["conns_per_s"] / k["conns_per_s"] for m, k in zip(M, K)],
         "mailpump_user_us_per_conn": med([1e6 * j["cpu_user_s"] / j["ok"] for j in M]),
         "mailpump_sys_us_per_conn": med([1e6 * j["cpu_sys_s"] / j["ok"] for j in M]),
         "kernel_user_us_per_conn": med([1e6 * j["cpu_user_s"] / j["ok"] for j in K]),
         "kernel_sys_us_per_conn": med([1e6 * j["cpu_sys_s"] / j["ok"] for j in K]),
         "mailpump_cpu_s_per_kconn": med([1000 * cpu(j) / j["ok"] for j in M]),
         "kernel_cpu_s_per_kconn": med([1000 * cpu(j) / j["ok"] for j in K]),
         "mailpump_conns_per_cpu_s": med([j["ok"] / cpu(j) for j in M]),
         "kernel_conns_per_cpu_s": med([j["ok"] / cpu(j) for j in K]),
         "mailpump_busy_cycles_per_conn": med([j["busy_cycles_per_conn"] for j in M]),
         "mailpump_busy_cycles_per_conn_min": min(j["busy_cycles_per_conn"] for j in M),
         "kernel_cpu_cycles_per_conn": med([cpu(j) * hz / j["ok"] for j in K]),
         "mailpump_server_cpu_s_per_kconn": med([1000 * j["server_cpu_s"] / j["ok"] for j in M]),
         "kernel_server_cpu_s_per_kconn": med([1000 * j["server_cpu_s"] / j["ok"] for j in K]),
         "mailpump_total_cpu_s_per_kconn": med([1000 * (cpu(j) + j["server_cpu_s"]) / j["ok"]
                                                for j in M]),
         "kernel_total_cpu_s_per_kconn": med([1000 * (cpu(j) + j["server_cpu_s"]) / j["ok"]
                                              for j in K]),
         "mailpump_segs_per_conn": (M[0]["segs_in"] + M[0]["segs_out"]) / M[0]["ok"],
         "mailpump_retransmits": sum(j["retransmits"] for j in M),
         "mailpump_tw_recycled": sum(j["tw_recycled"] for j in M),
         "kernel_port_waits": sum(j["port_waits"] for j in K)}
    d["mailpump_conns_per_s"] = med(d["mailpump_all"])
    d["kernel_conns_per_s"] = med(d["kernel_all"])
    d["ratio"] = med(d["ratio_all"])
    d["per_core_ratio"] = d["mailpump_conns_per_cpu_s"] / d["kernel_conns_per_cpu_s"]
    res[key] = d
    md.append("| **%s** (%d conns, %d at once) | | | |" % (title, d["conns"], d["concurrency"]))
    md.append("| connections/s | %.0f | %.0f | %.2fx |" % (
        d["mailpump_conns_per_s"], d["kernel_conns_per_s"], d["ratio"]))
    row("client CPU s per 1000 connections", d["mailpump_cpu_s_per_kconn"],
        d["kernel_cpu_s_per_kconn"], "%.4f", False)
    md.append("| &nbsp;&nbsp;user / sys, us per connection | %.1f / %.1f | %.1f / %.1f | |" % (
        d["mailpump_user_us_per_conn"], d["mailpump_sys_us_per_conn"],
        d["kernel_user_us_per_conn"], d["kernel_sys_us_per_conn"]))
    row("connections per client CPU-second", d["mailpump_conns_per_cpu_s"],
        d["kernel_conns_per_cpu_s"], "%.0f")
    md.append("| client cycles per connection (mailpump: worker busy cycles, min %.0f; "
              "kernel: CPU time x TSC) | %.0f | %.0f | |" % (
                  d["mailpump_busy_cycles_per_conn_min"], d["mailpump_busy_cycles_per_conn"],
                  d["kernel_cpu_cycles_per_conn"]))
    row("server CPU s per 1000 connections", d["mailpump_server_cpu_s_per_kconn"],
        d["kernel_server_cpu_s_per_kconn"], "%.4f", False)
    # The kernel client's receive path runs in the server's softirq (the
    # server's sends into the veth), the userspace stack's in its own
    # process: client + server is the work the whole machine did.
    row("client + server CPU s per 1000 connections", d["mailpump_total_cpu_s_per_kconn"],
        d["kernel_total_cpu_s_per_kconn"], "%.4f", False)
    row("connections per client + server CPU-second", 1000 / d["mailpump_total_cpu_s_per_kconn"],
        1000 / d["kernel_total_cpu_s_per_kconn"], "%.0f")

M, K, K1 = load("mp_bulk"), load("k_bulk"), load("k_bulk1")
gb = lambda j: j["bytes_verified"] / 1e9
b = {"bytes": M[0]["bytes_per_conn"],
     "mailpump_all": [j["gbit_per_s"] for j in M], "kernel_all": [j["gbit_per_s"] for j in K],
     "kernel_1seg_all": [j["gbit_per_s"] for j in K1],
     "mailpump_cpu_s_per_gb": med([cpu(j) / gb(j) for j in M]),
     "kernel_cpu_s_per_gb": med([cpu(j) / gb(j) for j in K]),
     "kernel_1seg_cpu_s_per_gb": med([cpu(j) / gb(j) for j in K1]),
     "mailpump_server_cpu_s_per_gb": med([j["server_cpu_s"] / gb(j) for j in M]),
     "kernel_server_cpu_s_per_gb": med([j["server_cpu_s"] / gb(j) for j in K]),
     "kernel_1seg_server_cpu_s_per_gb": med([j["server_cpu_s"] / gb(j) for j in K1]),
     "mailpump_total_cpu_s_per_gb": med([(cpu(j) + j["server_cpu_s"]) / gb(j) for j in M]),
     "kernel_total_cpu_s_per_gb": med([(cpu(j) + j["server_cpu_s"]) / gb(j) for j in K]),
     "kernel_1seg_total_cpu_s_per_gb": med([(cpu(j) + j["server_cpu_s"]) / gb(j) for j in K1]),
     "mailpump_busy_cycles_per_byte": med([j["busy_cycles"] / j["bytes_verified"] for j in M]),
     "mailpump_retransmits": sum(j["retransmits"] for j in M)}
for k in ("mailpump", "kernel", "kernel_1seg"):
    b[k + "_gbit_per_s"] = med(b[k + "_all"])
b["ratio"] = med([m / k for m, k in zip(b["mailpump_all"], b["kernel_all"])])
b["ratio_1seg"] = med([m / k for m, k in zip(b["mailpump_all"], b["kernel_1seg_all"])])
res["bulk"] = b
md.append("| **bulk: one connection, %d MiB, checked by the sink** | | | |" % (b["bytes"] >> 20))
md.append("| Gbit/s | %.2f | %.2f | %.2fx |" % (
    b["mailpump_gbit_per_s"], b["kernel_gbit_per_s"], b["ratio"]))
md.append("| Gbit/s, kernel with one MSS per packet (veth gso_max_segs 1) | %.2f | %.2f | %.2fx |" % (
    b["mailpump_gbit_per_s"], b["kernel_1seg_gbit_per_s"], b["ratio_1seg"]))
md.append("| client CPU s per GB (kernel one MSS per packet: %.2f) | %.2f | %.2f | |" % (
    b["kernel_1seg_cpu_s_per_gb"], b["mailpump_cpu_s_per_gb"], b["kernel_cpu_s_per_gb"]))
md.append("| worker busy cycles per byte (kernel: CPU time x TSC) | %.1f | %.1f | |" % (
    b["mailpump_busy_cycles_per_byte"], b["kernel_cpu_s_per_gb"] * hz / 1e9))
md.append("| server CPU s per GB (kernel one MSS per packet: %.2f) | %.2f | %.2f | |" % (
    b["kernel_1seg_server_cpu_s_per_gb"], b["mailpump_server_cpu_s_per_gb"],
    b["kernel_server_cpu_s_per_gb"]))
md.append("| client + server CPU s per GB (kernel one MSS per packet: %.2f) | %.2f | %.2f | |" % (
    b["kernel_1seg_total_cpu_s_per_gb"], b["mailpump_total_cpu_s_per_gb"],
    b["kernel_total_cpu_s_per_gb"]))
rr0 = load("mp_rr")[0]
res["conn_state_bytes"] = rr0["conn_state_bytes"]
res["conn_stack_bytes"] = rr0["conn_stack_bytes"]
fmt = lambda xs, f: ", ".join(f % x for x in xs)
md += ["",
       "Rounds: rr conn/s mailpump %s; kernel %s. Connect conn/s mailpump %s; kernel %s. "
       "Bulk Gbit/s mailpump %s; kernel %s; kernel one MSS per packet %s." % (
           fmt(res["rr"]["mailpump_all"], "%.0f"), fmt(res["rr"]["kernel_all"], "%.0f"),
           fmt(res["conn"]["mailpump_all"], "%.0f"), fmt(res["conn"]["kernel_all"], "%.0f"),
           fmt(b["mailpump_all"], "%.2f"), fmt(b["kernel_all"], "%.2f"),
           fmt(b["kernel_1seg_all"], "%.2f")),
       "",
       "Stack state: %d bytes per connection object; %d bytes per connection counting every "
       "table of the stack (max_conns = concurrency + 64), data buffers excluded: an idle "
       "established connection holds none." % (res["conn_state_bytes"], res["conn_stack_bytes"])]
text = "\n".join(md) + "\n"
line = json.dumps(res, sort_keys=True)
open(base + ".md", "w").write(text)
open(base + ".json", "w").write(line + "\n")
print(text)
print(line)
PY
echo "tcp bench: results in $RESULTS/tcp-$STAMP.md and .json ($(( $(date +%s) - BENCH_START )) s)" >&2
