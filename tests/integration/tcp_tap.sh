#!/usr/bin/env bash
# The userspace TCP stack against Linux over net_tap: bulk echo through one
# connection, 2,000 concurrent echoes, the same under 2% random loss both
# ways (nftables numgen), peers without timestamps / SACK / window scaling
# and with a small MSS, a closed port (refused), a silent port
# (SYN retries, then timeout), a peer reset mid-stream, a reconnect storm,
# bulk send verified by the peer, two workers with software steering, and
# an MTU the port cannot take refused at start.
# Every run must return every stack pool to its start value.
#
# usage: tcp_tap.sh MP_TCPBENCH MP_TCPSERVER
. "$(dirname "$0")/lib.sh"
mp_need_root
BENCH=$1
SERVER=$2
DP_IP=198.18.0.2
K_IP=198.18.0.1
NS=mptcp$MP_SUFFIX
IF=mpc$MP_SUFFIX
SCALE=${MP_TCP_SCALE:-1}   # the sanitizer build may divide the sizes

mp_netns "$NS"
# A persistent multi-queue tap: configured before the dataplane attaches.
ip netns exec "$NS" ip tuntap add dev "$IF" mode tap multi_queue
ip netns exec "$NS" ip addr add $K_IP/24 dev "$IF"
ip netns exec "$NS" ip link set "$IF" up

start_server() {  # PORT MODE
	ip netns exec "$NS" "$SERVER" 0.0.0.0 "$1" "$2" >"$MP_TMP/srv$1.log" 2>&1 &
	MP_PIDS+=($!)
	mp_wait_for 10 grep -q listening "$MP_TMP/srv$1.log" || mp_fail "server $1 did not start"
}
start_server 7 echo
start_server 9 echo
start_server 19 sink
start_server 23 rst:30000

run=0
# bench NAME EXPECT_PY ARGS...: run mp-tcpbench, check a Python predicate
# over its JSON result j.
bench() {
	local name=$1 expect=$2 out
	shift 2
	run=$((run + 1))
	out="$MP_TMP/run$run.json"
	ip netns exec "$NS" "$BENCH" --vdev "net_tap_t$MP_SUFFIX,iface=$IF" \
		--ip $DP_IP/24 --file-prefix "mptcp$MP_SUFFIX" --garp 0 "$@" \
		>"$out" 2>"$MP_TMP/run$run.log" || mp_fail "$name: mp-tcpbench exited non-zero"
	tail -1 "$out" >"$out.last"
	python3 - "$out.last" "$expect" "$name" <<'PY' || mp_fail "$name: $(cat "$out.last")"
import json, sys
j = json.loads(open(sys.argv[1]).read())
ok = eval(sys.argv[2])
print("%-34s ok=%-6s failed=%s retransmits=%s s=%.2f %s" % (sys.argv[3], j["ok"],
      {k: v for k, v in j["failed"].items() if v}, j["retransmits"], j["seconds"],
      "" if ok else "<- UNEXPECTED"))
sys.exit(0 if ok else 1)
PY
}

ALL_OK='j["ok"] == j["conns"] and j["bytes_verified"] == j["conns"] * j["bytes_per_conn"] and j["pools_restored"] and not j["timed_out"]'

bench "echo 64 MiB, one connection" "$ALL_OK" \
	--peer $K_IP:7 --mode echo --conns 1 --bytes $((64 * 1048576 / SCALE)) --timeout 120
bench "2000 concurrent echoes of 64 KiB" "$ALL_OK and j['peak_concurrency'] == 2000" \
	--peer $K_IP:7 --mode echo --conns 2000 --concurrency 2000 --bytes 65536 --timeout 180
bench "bulk 32 MiB, checked by the peer" "$ALL_OK" \
	--peer $K_IP:19 --mode bulk --conns 1 --bytes $((32 * 1048576 / SCALE)) --timeout 120

# Peer without timestamps, SACK, window scaling; then a small route MTU.
ip netns exec "$NS" sysctl -qw net.ipv4.tcp_timestamps=0 net.ipv4.tcp_sack=0 net.ipv4.tcp_window_scaling=0
bench "peer: no timestamps/SACK/wscale" "$ALL_OK and j['first']['ts_ok'] == 0 and j['first']['sack_ok'] == 0 and j['first']['snd_wscale'] == 0" \
	--peer $K_IP:7 --mode echo --conns 20 --concurrency 10 --bytes 1048576 --timeout 120
ip netns exec "$NS" sysctl -qw net.ipv4.tcp_timestamps=1 net.ipv4.tcp_sack=1 net.ipv4.tcp_window_scaling=1
# A peer with a small MSS: its SYN-ACK advertises 1200 (rewritten on the
# way out, as a 1240-byte route MTU would); counters prove that none of
# our segments exceeded it while full-size data flowed.
ip netns exec "$NS" nft -f - <<NFT
table inet mpmtu {
	counter big_in { }
	counter data_in { }
	chain out { type filter hook output priority 0; oifname "$IF" tcp flags & (syn | ack) == (syn | ack) tcp option maxseg size set 1200; }
	chain in { type filter hook input priority 0; iifname "$IF" meta length > 1240 counter name big_in; iifname "$IF" meta length > 1000 counter name data_in; }
}
NFT
bench "peer: MSS 1200" "$ALL_OK and j['first']['mss'] <= 1200" \
	--peer $K_IP:7 --mode echo --conns 20 --concurrency 10 --bytes 1048576 --timeout 120
nft_count() { ip netns exec "$NS" nft list counter inet mpmtu "$1" | grep -o 'packets [0-9]*' | cut -d' ' -f2; }
[ "$(nft_count big_in)" -eq 0 ] || mp_fail "we sent segments over the peer's MSS"
[ "$(nft_count data_in)" -gt 100 ] || mp_fail "MSS run carried no full-size data"
ip netns exec "$NS" nft delete table inet mpmtu

# 2% random loss each way between us and the peer (lib.sh mp_loss_on).
mp_loss_on "$NS" "$IF" "{ 7, 19 }" 2 mploss || mp_fail "nft loss tables"
bench "2% loss: echo 16 MiB, one connection" "$ALL_OK and j['retransmits'] > 0" \
	--peer $K_IP:7 --mode echo --conns 1 --bytes $((16 * 1048576 / SCALE)) --timeout 180
bench "2% loss: 500 concurrent echoes of 64 KiB" "$ALL_OK" \
	--peer $K_IP:7 --mode echo --conns 500 --concurrency 500 --bytes 65536 --timeout 180
bench "2% loss: bulk 16 MiB" "$ALL_OK" \
	--peer $K_IP:19 --mode bulk --conns 1 --bytes $((16 * 1048576 / SCALE)) --timeout 180
mp_loss_off "$NS" mploss

# Refused: nothing listens on port 5.
bench "closed port: refused" 'j["failed"]["refused"] == 10 and j["ok"] == 0 and j["pools_restored"] and j["seconds"] < 5' \
	--peer $K_IP:5 --mode echo --conns 10 --concurrency 10 --bytes 100 --timeout 30
# Silent: the peer drops SYNs to port 9; 2 SYN retries, then timeout.
ip netns exec "$NS" nft add table inet mpsilent
ip netns exec "$NS" nft add chain inet mpsilent in '{ type filter hook input priority 0; }'
ip netns exec "$NS" nft add rule inet mpsilent in tcp dport 9 drop
bench "silent port: SYN retries, timeout" 'j["failed"]["timeout"] == 3 and j["ok"] == 0 and j["syn_retransmits"] == 6 and j["pools_restored"]' \
	--peer $K_IP:9 --mode echo --conns 3 --concurrency 3 --bytes 100 --syn-retries 2 --timeout 60
ip netns exec "$NS" nft delete table inet mpsilent
# Peer resets after 30000 bytes.
bench "peer reset mid-stream" 'j["failed"]["reset"] == 5 and j["ok"] == 0 and j["pools_restored"]' \
	--peer $K_IP:23 --mode echo --conns 5 --concurrency 5 --bytes 1048576 --timeout 60
# Reconnect storm: 20,000 short connections from one source address.
bench "20000 short connections in a row" "$ALL_OK" \
	--peer $K_IP:7 --mode echo --conns $((20000 / SCALE)) --concurrency 4 --bytes 100 --timeout 300
# Two workers on two cores: software steering through redirect rings.
bench "two workers: 400 echoes" "$ALL_OK and j['workers'] == 2" \
	--peer $K_IP:7 --mode echo --conns 400 --concurrency 200 --bytes 65536 --timeout 120 \
	--lcores 0@0,1@1,2@1

# An MTU the port cannot take fails the start (net_tap's frames end at
# 1522 bytes): segments sized for it would be lost on the wire.
if ip netns exec "$NS" "$BENCH" --vdev "net_tap_t$MP_SUFFIX,iface=$IF" \
	--ip $DP_IP/24 --file-prefix "mptcp$MP_SUFFIX" --garp 0 --mtu 9000 \
	--peer $K_IP:7 --mode echo --conns 1 --bytes 100 --timeout 10 \
	>"$MP_TMP/mtu.json" 2>"$MP_TMP/mtu.log"; then
	mp_fail "MTU 9000 on net_tap: started anyway"
fi
grep -q "mtu=9000" "$MP_TMP/mtu.log" || mp_fail "MTU 9000 on net_tap: no clear error"
grep -q '"ok"' "$MP_TMP/mtu.json" && mp_fail "MTU 9000 on net_tap: ran connections"
echo "MTU 9000 on net_tap: refused at start ($(grep -o 'mtu=9000.*' "$MP_TMP/mtu.log" | head -1))"

echo "tcp_tap: all $run runs passed"
