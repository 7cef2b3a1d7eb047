#!/usr/bin/env bash
# The dataplane answers ARP and ping from the kernel side, with one worker
# and with two (software-shared neighbour state), on net_tap, on
# net_af_packet over a veth, and on the veth rig (lib.sh mp_rig_veth:
# net_af_xdp, or net_af_packet where AF_XDP cannot attach); malformed frames only move drop counters;
# an idle worker does not spin its core; SIGTERM exits cleanly, leaving no
# hugepage file behind.
#
# usage: dp_ping_tap.sh MAILPUMP RAWFRAMES
. "$(dirname "$0")/lib.sh"
mp_need_root
MAILPUMP=$1
RAWFRAMES=$2
DP_IP=198.18.0.2
K_IP=198.18.0.1

stats() { mp_json "$MP_TMP/stats.json" "$1"; }
# stats_ge EXPR N: the counter in the stats file (rewritten every 200 ms)
# has reached N. Waits use it with a bound instead of sleeping for a
# refresh that a loaded or sanitizer run may not make in time.
stats_ge() { [ "$(stats "$1" 2>/dev/null)" -ge "$2" ] 2>/dev/null; }

# start_dp NS VDEV LCORES: run mailpump in NS, wait for its stats file.
start_dp() {
	local ns=$1 vdev=$2 lcores=$3
	rm -f "$MP_TMP/stats.json"
	ip netns exec "$ns" ${DP_WRAP:+"$DP_WRAP"} "$MAILPUMP" --vdev "$vdev" --ip $DP_IP/24 --gw $K_IP \
		--lcores "$lcores" --file-prefix "mp$ns" --stats-file "$MP_TMP/stats.json" \
		--stats-interval 200 --ping-gw 5 >"$MP_TMP/dp-$ns.log" 2>&1 &
	DP_PID=$!
	MP_PIDS+=("$DP_PID")
	mp_wait_for 30 test -s "$MP_TMP/stats.json" || mp_fail "$ns: dataplane did not start"
}

stop_dp() {
	local ns=$1 rc
	kill -TERM "$DP_PID"
	for _ in $(seq 100); do kill -0 "$DP_PID" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$DP_PID" 2>/dev/null && mp_fail "$ns: no exit within 10 s of SIGTERM"
	wait "$DP_PID"
	rc=$?
	[ "$rc" -eq 0 ] || mp_fail "$ns: exit status $rc after SIGTERM"
	grep -q "worker=0 stopped" "$MP_TMP/dp-$ns.log" || mp_fail "$ns: worker did not stop"
	# In-memory EAL: no hugepage file of ours may be left.
	if ls /dev/hugepages/ 2>/dev/null | grep -q "mp$ns"; then
		mp_fail "$ns: hugepage files left behind"
	fi
}

ping_ok() {
	local ns=$1 n=$2 out
	# -W 5: a reply may be late on a loaded machine, never missing
	out=$(ip netns exec "$ns" ping -c "$n" -i 0.01 -W 5 -q $DP_IP) || true
	echo "$out" | grep -q " $n received, 0% packet loss" ||
		mp_fail "$ns: ping $n: $(echo "$out" | tail -2)"
}

# --- net_tap, one worker -----------------------------------------------
NS=mptap$MP_SUFFIX
IF=mpt$MP_SUFFIX
mp_netns "$NS"
start_dp "$NS" "net_tap_$MP_SUFFIX,iface=$IF" "0,1"
ip netns exec "$NS" ip addr add $K_IP/24 dev "$IF"
ip netns exec "$NS" ip link set "$IF" up
# The gateway probe resolves the kernel's MAC through our ARP cache.
mp_wait_for 10 sh -c "[ \$(python3 -c 'import json;print(json.load(open(\"$MP_TMP/stats.json\"))[\"icmp_echo_reply_rx\"])') -ge 3 ]" ||
	mp_fail "tap: gateway probe got no replies"
[ "$(stats 'j["arp"]["resolved"]')" -ge 1 ] || mp_fail "tap: ARP resolution of the gateway not counted"

ping_ok "$NS" 100
MAC=$(stats 'j["mac"]')
ip netns exec "$NS" ip neigh show $DP_IP dev "$IF" | grep -qi "lladdr $MAC" ||
	mp_fail "tap: kernel neighbour table does not hold $MAC"
mp_wait_for 20 stats_ge 'j["icmp_echo_reply_tx"]' 100 || mp_fail "tap: echo replies not counted"

# Malformed frames: each kind moves exactly its drop counter. The snapshot
# is taken once the pings are counted (nothing else drops meanwhile).
cp "$MP_TMP/stats.json" "$MP_TMP/before.json"
ip netns exec "$NS" "$RAWFRAMES" "$IF" "$MAC" $K_IP $DP_IP 25 >"$MP_TMP/expect.txt" ||
	mp_fail "rawframes failed"
# every counter has moved at least as far as expected (bounded), then by
# exactly that much
while read -r reason count; do
	b=$(mp_json "$MP_TMP/before.json" "j['drops']['$reason']")
	mp_wait_for 20 stats_ge "j['drops']['$reason']" $((b + count)) ||
		mp_fail "tap: drop $reason did not move by $count within 20 s"
done <"$MP_TMP/expect.txt"
while read -r reason count; do
	b=$(mp_json "$MP_TMP/before.json" "j['drops']['$reason']")
	a=$(stats "j['drops']['$reason']")
	[ $((a - b)) -eq "$count" ] || mp_fail "tap: drop $reason moved by $((a - b)), expected $count"
done <"$MP_TMP/expect.txt"
[ "$(stats 'j["icmp_echo_reply_tx"]')" -eq "$(mp_json "$MP_TMP/before.json" 'j["icmp_echo_reply_tx"]')" ] ||
	mp_fail "tap: a malformed frame was answered"
ping_ok "$NS" 20

# Idle: the worker backs off. A spinning worker would use ~100% of a core;
# the 3 s window is a measurement, not a wait.
t0=$(mp_cpu_ticks "$DP_PID")
sleep 3
t1=$(mp_cpu_ticks "$DP_PID")
hz=$(getconf CLK_TCK)
pct=$(( (t1 - t0) * 100 / (3 * hz) ))
echo "idle CPU of the dataplane process: ${pct}% of one core"
[ "$pct" -lt 50 ] || mp_fail "tap: idle dataplane uses ${pct}% CPU"
stop_dp "$NS"
grep -q "icmp_echo_reply_tx" "$MP_TMP/dp-$NS.log" || mp_fail "tap: counters not printed on exit"

# --- net_tap, two workers sharing two cores ------------------------------
NS2=mptap2$MP_SUFFIX
IF2=mpu$MP_SUFFIX
mp_netns "$NS2"
start_dp "$NS2" "net_tap_2$MP_SUFFIX,iface=$IF2" "0@0,1@1,2@1"
ip netns exec "$NS2" ip addr add $K_IP/24 dev "$IF2"
ip netns exec "$NS2" ip link set "$IF2" up
ping_ok "$NS2" 100
mp_wait_for 20 stats_ge 'j["redirect_out"]' 1 || mp_fail "tap2: ARP not shared between workers"
[ "$(stats 'j["workers"]')" -eq 2 ] || mp_fail "tap2: expected 2 workers"
stop_dp "$NS2"

# --- net_af_packet on a veth ---------------------------------------------
NS3=mpveth$MP_SUFFIX
mp_netns "$NS3"
ip netns exec "$NS3" ip link add "mpa$MP_SUFFIX" type veth peer name "mpb$MP_SUFFIX"
ip netns exec "$NS3" ip link set "mpa$MP_SUFFIX" up
ip netns exec "$NS3" ip addr add $K_IP/24 dev "mpb$MP_SUFFIX"
ip netns exec "$NS3" ip link set "mpb$MP_SUFFIX" up
start_dp "$NS3" "net_af_packet_$MP_SUFFIX,iface=mpa$MP_SUFFIX" "0,1"
ping_ok "$NS3" 100
stop_dp "$NS3"

# --- the veth rig (net_af_xdp where it attaches) ----------------------------
NS4=mprig$MP_SUFFIX
mp_netns "$NS4"
mp_rig_veth "$NS4" "mpx$MP_SUFFIX" "mpy$MP_SUFFIX"
ip netns exec "$NS4" ip addr add $K_IP/24 dev "mpy$MP_SUFFIX"
DP_WRAP=$MP_RIG_EXEC start_dp "$NS4" "$(mp_rig_vdev "r$MP_SUFFIX")" "0,1"
grep -q "driver=$MP_RIG_PMD " "$MP_TMP/dp-$NS4.log" || mp_fail "rig: port not on $MP_RIG_PMD"
ping_ok "$NS4" 100
mp_wait_for 20 stats_ge 'j["icmp_echo_reply_tx"]' 100 || mp_fail "rig: echo replies not counted"
stop_dp "$NS4"

echo "dp_ping_tap: all checks passed"
