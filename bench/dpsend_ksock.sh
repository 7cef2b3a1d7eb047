#!/usr/bin/env bash
# Bench: the same campaign into one Postfix (postfix.sh harness) through
# mp-smtpsend (kernel sockets, from a client netns over a veth) and
# mp-dpsend (a DPDK worker over utcp on the veth rig of
# tests/integration/rig.sh: net_af_xdp, or net_af_packet where AF_XDP
# cannot attach), side by side. Prints a
# table and one JSON line. Sizes: MP_BENCH_MSGS (default 2000),
# MP_BENCH_SESSIONS (20), MP_BENCH_TLS (verify).
#
# usage: dpsend_ksock.sh MP_SMTPSEND MP_DPSEND
TESTS=$(dirname "$0")/../tests/integration
. "$TESTS/lib.sh"
. "$TESTS/postfix.sh"
mp_need_root
mp_need postfix
KSEND=$1
DSEND=$2
MSGS=${MP_BENCH_MSGS:-2000}
SESS=${MP_BENCH_SESSIONS:-20}
POLICY=${MP_BENCH_TLS:-verify}

SNS=mpbds$MP_SUFFIX
CNS=mpbdc$MP_SUFFIX
DNS=mpbdd$MP_SUFFIX
IF=mpb$MP_SUFFIX
D=$MP_TMP/pf
mp_netns "$SNS"
mp_netns "$CNS"
mp_netns "$DNS"
mp_rig_veth "$SNS" "mpbd$MP_SUFFIX" "$IF" "$DNS"
VDEV=$(mp_rig_vdev "b$MP_SUFFIX")
ip netns exec "$SNS" ip addr add 198.19.50.1/24 dev "$IF"
ip netns exec "$SNS" ip addr add 198.19.50.10/24 dev "$IF"
pf_link "$CNS" "$SNS" 198.19.51.1 || mp_fail "veth"
pf_make_certs "$D/certs" || mp_fail "certificates"
pf_start "$SNS" "$D" \
	"ip=198.19.50.10;name=mx1.pf.test;tls=good;domains=bench.test" \
	"ip=198.19.51.10;name=mx1.pf.test;tls=good;domains=bench.test" || mp_fail "pf_start"
python3 - "$MP_TMP" <<'PY'
import sys
d = sys.argv[1]
open(d + "/msg.eml", "w").write("From: <sender@pf.test>\nTo: <x@bench.test>\nSubject: bench\n"
    "Date: Tue, 01 Dec 2026 12:00:00 +0000\nMessage-ID: <bench@pf.test>\n\n" +
    "".join("line %d of a short notification body\n" % i for i in range(40)))
open(d + "/rcpts.txt", "w").write("".join("u%d@bench.test\n" % i for i in range(100)))
PY
COMMON=(--server mx1.pf.test:25 --from sender@pf.test --helo client.pf.test --rcpt-file "$MP_TMP/rcpts.txt"
	--message "$MP_TMP/msg.eml" --count "$MSGS" --sessions "$SESS" --msgs-per-conn 100
	--tls "$POLICY" --ca "$D/certs/ca.pem" --quiet --timeout 600)
ip netns exec "$CNS" "$KSEND" "${COMMON[@]}" --connect 198.19.51.10 \
	>"$MP_TMP/k.json" 2>"$MP_TMP/k.log" || mp_fail "mp-smtpsend"
pf_wait_queue_empty "$D" 600 || mp_fail "queue"
ip netns exec "$DNS" "$MP_RIG_EXEC" "$DSEND" "${COMMON[@]}" --connect 198.19.50.10 \
	--vdev "$VDEV" --ip 198.19.50.2/24 --garp 0 \
	--file-prefix "mpbd$MP_SUFFIX" --lcores 0,1 >"$MP_TMP/d.json" 2>"$MP_TMP/d.log" ||
	mp_fail "mp-dpsend"
pf_wait_queue_empty "$D" 600 || mp_fail "queue"
python3 - "$MP_TMP/k.json" "$MP_TMP/d.json" "$MSGS" "$SESS" "$POLICY" "$MP_RIG_PMD on a veth" <<'PY'
import json, sys
k = json.loads(open(sys.argv[1]).read().splitlines()[-1])["summary"]
d = json.loads(open(sys.argv[2]).read().splitlines()[-1])["summary"]
dp = d["dataplane"]
for s in (k, d):
    assert s["delivered"] == int(sys.argv[3]), s
print("%-12s %9s %8s %11s %15s %19s" % ("engine", "msgs/s", "cpu_s", "cpu_ms/msg", "busy_cyc/msg", "busy_cyc/handshake"))
kc = k["cpu_user_s"] + k["cpu_sys_s"]
print("%-12s %9.1f %8.3f %11.3f %15s %19s" % ("ksock", k["msgs_per_s"], kc, kc * 1e3 / k["delivered"], "-", "-"))
print("%-12s %9.1f %8.3f %11.3f %15.0f %19.0f" % ("dpdk+utcp", d["msgs_per_s"], dp["worker_cpu_s"],
      dp["worker_cpu_s"] * 1e3 / d["delivered"], dp["busy_cycles_per_msg"], dp["busy_cycles_per_handshake"]))
print("(dpdk cpu_s is the worker thread's, idle spinning and the PMD's syscalls included; "
      "preempted %d times; %s)" % (dp["worker_preempted"], sys.argv[6]))
print(json.dumps({"bench": "dpsend_ksock", "msgs": int(sys.argv[3]), "sessions": int(sys.argv[4]),
                  "tls": sys.argv[5], "dpdk_nic": sys.argv[6], "ksock": {"msgs_per_s": k["msgs_per_s"], "cpu_s": kc},
                  "dpdk": {"msgs_per_s": d["msgs_per_s"], "worker_cpu_s": dp["worker_cpu_s"],
                           "busy_cycles_per_msg": dp["busy_cycles_per_msg"],
                           "busy_cycles_per_handshake": dp["busy_cycles_per_handshake"],
                           "tsc_hz": dp["tsc_hz"], "worker_preempted": dp["worker_preempted"]}}))
PY
