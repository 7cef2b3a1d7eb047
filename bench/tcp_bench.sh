#!/usr/bin/env bash
# TCP benchmark: the userspace stack (mp-tcpbench on DPDK net_tap, one
# worker lcore) against Linux kernel sockets (mp-tcpkclient, one epoll
# thread, over a veth from a client namespace), both talking to the SAME
# mp-tcpserver in a server namespace, in one run:
#   short connections/s  connect, 100-byte request, 100-byte response, close
#   bulk Gbit/s          one connection sending --bytes, checked by the sink
# Each scenario alternates the two clients MP_BENCH_ROUNDS times (default
# 3) and keeps the median run of each. Prints a markdown table and one JSON
# line, and writes both to $MP_BENCH_RESULTS/tcp-<date>.{md,json} (default
# bench/results next to this script). Bounded: every client run has its
# own timeout, the whole run stays under 4 minutes.
#
# Topology (addresses from the tcpbench ranges):
#   server ns: tap  198.18.10.1/24 <- mp-tcpbench 198.18.10.2 (DPDK, net_tap)
#              veth 198.18.11.1/24 <- client ns 198.18.11.2 (mp-tcpkclient)
# Pinning on a 2-core machine: the server on CPU 0, each client (the DPDK
# worker lcore, or the kernel client thread) on CPU 1.
#
# usage: tcp_bench.sh MP_TCPBENCH MP_TCPKCLIENT MP_TCPSERVER
. "$(dirname "$0")/../tests/integration/lib.sh"
mp_need_root
BENCH=$1
KCLIENT=$2
SERVER=$3
RESULTS=${MP_BENCH_RESULTS:-$(cd "$(dirname "$0")" && pwd)/results}
ROUNDS=${MP_BENCH_ROUNDS:-3}
RR_CONNS=${MP_BENCH_RR_CONNS:-20000}
RR_CONC=${MP_BENCH_RR_CONC:-32}
BULK_BYTES=${MP_BENCH_BULK_BYTES:-$((256 * 1048576))}
RUN_TIMEOUT=${MP_BENCH_RUN_TIMEOUT:-20}
BENCH_START=$(date +%s)

NS_S=mptbs$MP_SUFFIX
NS_C=mptbc$MP_SUFFIX
TAP=mptbt$MP_SUFFIX
VS=mptbvs$MP_SUFFIX
VC=mptbvc$MP_SUFFIX
DP_IP=198.18.10.2
TAP_IP=198.18.10.1
VS_IP=198.18.11.1
VC_IP=198.18.11.2

if [ "$(nproc)" -ge 2 ]; then
	SRV_CPU=0 CLI_CPU=1
	LCORES=0@0,1@1
else
	SRV_CPU=0 CLI_CPU=0
	LCORES=0@0,1@0
fi

mp_netns "$NS_S"
mp_netns "$NS_C"
ip netns exec "$NS_S" ip tuntap add dev "$TAP" mode tap multi_queue
ip netns exec "$NS_S" ip addr add $TAP_IP/24 dev "$TAP"
ip netns exec "$NS_S" ip link set "$TAP" up
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
		ip netns exec "$NS_S" timeout -k 5 $((RUN_TIMEOUT + 15)) "$BENCH" \
			--vdev "net_tap_b$MP_SUFFIX,iface=$TAP" --ip $DP_IP/24 \
			--file-prefix "mptb$MP_SUFFIX" --garp 0 --lcores $LCORES \
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

echo "tcp bench: $(nproc) cores, net_tap vs veth, $ROUNDS rounds" >&2
for round in $(seq "$ROUNDS"); do
	one mp mp_rr --peer $TAP_IP:7 --mode echo --bytes 100 --conns "$RR_CONNS" \
		--concurrency "$RR_CONC"
	one k k_rr --peer $VS_IP:7 --mode echo --bytes 100 --conns "$RR_CONNS" \
		--concurrency "$RR_CONC"
	one mp mp_bulk --peer $TAP_IP:19 --mode bulk --bytes "$BULK_BYTES" --conns 1
	one k k_bulk --peer $VS_IP:19 --mode bulk --bytes "$BULK_BYTES" --conns 1
	if [ $(( $(date +%s) - BENCH_START )) -gt 170 ]; then
		echo "tcp bench: stopping after round $round (time budget)" >&2
		ROUNDS=$round
		break
	fi
done

mkdir -p "$RESULTS" || mp_fail "cannot create $RESULTS"
STAMP=$(date -u +%Y%m%d-%H%M%S)
python3 - "$MP_TMP" "$ROUNDS" "$RESULTS/tcp-$STAMP" "$(nproc)" \
	"$(lscpu | sed -n 's/^Model name: *//p' | head -1)" <<'PY' || mp_fail "report"
import json, statistics, sys, time
tmp, rounds, base, ncpu, model = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]

def runs(name):
    return [json.load(open("%s/%s.%d.json" % (tmp, name, r))) for r in range(1, rounds + 1)]

def median_run(name, key):
    rs = sorted(runs(name), key=lambda j: j[key])
    return rs[(len(rs) - 1) // 2], [j[key] for j in runs(name)]

def cpu(j):
    return j["cpu_user_s"] + j["cpu_sys_s"]

mp_rr, mp_rr_all = median_run("mp_rr", "conns_per_s")
k_rr, k_rr_all = median_run("k_rr", "conns_per_s")
mp_bulk, mp_bulk_all = median_run("mp_bulk", "gbit_per_s")
k_bulk, k_bulk_all = median_run("k_bulk", "gbit_per_s")
hz = mp_rr["tsc_hz"]

def per_core(j):  # connections per CPU-second of the client
    return j["ok"] / cpu(j) if cpu(j) > 0 else 0.0

res = {
    "bench": "tcp", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "machine": {"cpus": int(ncpu), "model": model, "nic": "net_tap (mailpump), veth (kernel)"},
    "rounds": rounds,
    "rr": {
        "bytes": mp_rr["bytes_per_conn"], "conns": mp_rr["conns"],
        "concurrency": mp_rr["concurrency"],
        "mailpump_conns_per_s": mp_rr["conns_per_s"], "kernel_conns_per_s": k_rr["conns_per_s"],
        "mailpump_all": mp_rr_all, "kernel_all": k_rr_all,
        "ratio": mp_rr["conns_per_s"] / k_rr["conns_per_s"],
        "mailpump_cpu_s_per_kconn": 1000 * cpu(mp_rr) / mp_rr["ok"],
        "kernel_cpu_s_per_kconn": 1000 * cpu(k_rr) / k_rr["ok"],
        "mailpump_conns_per_cpu_s": per_core(mp_rr), "kernel_conns_per_cpu_s": per_core(k_rr),
        "per_core_ratio": per_core(mp_rr) / per_core(k_rr),
        "mailpump_busy_cycles_per_conn": mp_rr["busy_cycles_per_conn"],
        "mailpump_busy_conns_per_core_s": hz / mp_rr["busy_cycles_per_conn"],
        "kernel_cycles_per_conn": cpu(k_rr) * hz / k_rr["ok"],
        "busy_per_core_ratio": (cpu(k_rr) * hz / k_rr["ok"]) / mp_rr["busy_cycles_per_conn"],
        "server_cpu_s_per_kconn_mailpump": 1000 * mp_rr["server_cpu_s"] / mp_rr["ok"],
        "server_cpu_s_per_kconn_kernel": 1000 * k_rr["server_cpu_s"] / k_rr["ok"],
        "mailpump_tw_recycled": mp_rr["tw_recycled"], "mailpump_tw_reused": mp_rr["tw_reused"],
        "mailpump_retransmits": mp_rr["retransmits"],
    },
    "bulk": {
        "bytes": mp_bulk["bytes_per_conn"],
        "mailpump_gbit_per_s": mp_bulk["gbit_per_s"], "kernel_gbit_per_s": k_bulk["gbit_per_s"],
        "mailpump_all": mp_bulk_all, "kernel_all": k_bulk_all,
        "ratio": mp_bulk["gbit_per_s"] / k_bulk["gbit_per_s"],
        "mailpump_cpu_s_per_gbyte": cpu(mp_bulk) / (mp_bulk["bytes_verified"] / 1e9),
        "kernel_cpu_s_per_gbyte": cpu(k_bulk) / (k_bulk["bytes_verified"] / 1e9),
        "mailpump_busy_cycles_per_byte": mp_bulk["busy_cycles"] / mp_bulk["bytes_verified"],
        "server_cpu_s_mailpump": mp_bulk["server_cpu_s"], "server_cpu_s_kernel": k_bulk["server_cpu_s"],
        "mailpump_retransmits": mp_bulk["retransmits"],
    },
    "conn_state_bytes": mp_rr["conn_state_bytes"],
    "conn_stack_bytes": mp_rr["conn_stack_bytes"],
}
r, b = res["rr"], res["bulk"]
md = []
md.append("## TCP benchmark, %s" % res["date"])
md.append("")
md.append("Machine: %s CPUs (%s); mailpump: mp-tcpbench, DPDK net_tap, one worker "
          "lcore; kernel: mp-tcpkclient, one epoll thread on a veth; same mp-tcpserver "
          "(one thread per port). Median of %d alternating rounds." % (ncpu, model, rounds))
md.append("")
md.append("| scenario | mailpump | kernel | mailpump/kernel |")
md.append("|---|---:|---:|---:|")
md.append("| short connections/s (%d B req/resp, %d conns, %d at once) | %.0f | %.0f | %.2fx |" % (
    r["bytes"], r["conns"], r["concurrency"], r["mailpump_conns_per_s"], r["kernel_conns_per_s"], r["ratio"]))
md.append("| client CPU s per 1000 connections | %.4f | %.4f | |" % (
    r["mailpump_cpu_s_per_kconn"], r["kernel_cpu_s_per_kconn"]))
md.append("| connections per client CPU-second | %.0f | %.0f | %.2fx |" % (
    r["mailpump_conns_per_cpu_s"], r["kernel_conns_per_cpu_s"], r["per_core_ratio"]))
md.append("| client cycles per connection (mailpump: worker busy cycles) | %.0f | %.0f | %.2fx |" % (
    r["mailpump_busy_cycles_per_conn"], r["kernel_cycles_per_conn"], r["busy_per_core_ratio"]))
md.append("| server CPU s per 1000 connections | %.4f | %.4f | |" % (
    r["server_cpu_s_per_kconn_mailpump"], r["server_cpu_s_per_kconn_kernel"]))
md.append("| bulk Gbit/s (1 connection, %d MiB, verified by the sink) | %.2f | %.2f | %.2fx |" % (
    b["bytes"] >> 20, b["mailpump_gbit_per_s"], b["kernel_gbit_per_s"], b["ratio"]))
md.append("| bulk client CPU s per GB | %.3f | %.3f | |" % (
    b["mailpump_cpu_s_per_gbyte"], b["kernel_cpu_s_per_gbyte"]))
md.append("")
md.append("All rounds: short conn/s mailpump %s, kernel %s; bulk Gbit/s mailpump %s, kernel %s." % (
    ", ".join("%.0f" % x for x in r["mailpump_all"]), ", ".join("%.0f" % x for x in r["kernel_all"]),
    ", ".join("%.2f" % x for x in b["mailpump_all"]), ", ".join("%.2f" % x for x in b["kernel_all"])))
md.append("Stack state: %d bytes per connection object, %d bytes per connection with "
          "every table of the stack, data buffers excluded (an idle connection holds none)." % (
    res["conn_state_bytes"], res["conn_stack_bytes"]))
text = "\n".join(md) + "\n"
line = json.dumps(res, sort_keys=True)
open(base + ".md", "w").write(text)
open(base + ".json", "w").write(line + "\n")
print(text)
print(line)
PY
echo "tcp bench: results in $RESULTS/tcp-$STAMP.md and .json ($(( $(date +%s) - BENCH_START )) s)" >&2
