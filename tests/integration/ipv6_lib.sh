# The IPv6 rig of ctl_ipv6_deliver and daemon_ipv6_ksock, sourced after
# lib.sh. v6_rig_start, with NS, V6 and SRC6 set: a network namespace NS
# with IPv6 on and V6 and SRC6 on its loopback; smtp-sinks dumping to
# $MP_TMP/sink6 ([V6]:25), sink4 (127.0.0.1:25) and sink6r ([V6]:2526);
# dnsmasq on 127.0.0.1:5300 answering for v6.test (an MX host with only
# an AAAA record) and dual.test (A and AAAA), queries logged to
# $MP_TMP/dnsq.log; redis-server on RPORT. Defines X (run in NS), R
# (redis-cli there), RPORT and URL; everything is stopped on exit.
v6_rig_start() {
	# not mp_netns: that one turns IPv6 off
	ip netns add "$NS" || mp_fail "cannot create netns $NS"
	MP_NETNS+=("$NS")
	# X for what runs to the end here; a background process is started with
	# ip netns exec itself, so that $! is its PID (a function would leave a
	# subshell there, and killing it would orphan the server)
	X() { ip netns exec "$NS" "$@"; }
	X sysctl -qw net.ipv6.conf.all.disable_ipv6=0
	X sysctl -qw net.ipv6.conf.lo.disable_ipv6=0
	X ip link set lo up
	X ip -6 addr add "$V6/128" dev lo nodad || mp_fail "IPv6 address on lo"
	X ip -6 addr add "$SRC6/128" dev lo nodad || mp_fail "second IPv6 address on lo"

	chmod 0711 "$MP_TMP"
	for s in sink6 sink4 sink6r; do
		mkdir -p "$MP_TMP/$s"
		chmod 0777 "$MP_TMP/$s"
	done
	ip netns exec "$NS" /usr/sbin/smtp-sink -u nobody -d "$MP_TMP/sink6/m." "[$V6]:25" 64 >"$MP_TMP/sink6.log" 2>&1 &
	MP_PIDS+=($!)
	ip netns exec "$NS" /usr/sbin/smtp-sink -u nobody -d "$MP_TMP/sink4/m." "127.0.0.1:25" 64 >"$MP_TMP/sink4.log" 2>&1 &
	MP_PIDS+=($!)
	ip netns exec "$NS" /usr/sbin/smtp-sink -u nobody -d "$MP_TMP/sink6r/m." "[$V6]:2526" 64 >"$MP_TMP/sink6r.log" 2>&1 &
	MP_PIDS+=($!)
	ip netns exec "$NS" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --pid-file= \
		--listen-address=127.0.0.1 --bind-interfaces --port=5300 --local=/test/ --local-ttl=60 \
		--log-queries --log-facility="$MP_TMP/dnsq.log" \
		--mx-host=v6.test,mx.v6.test,10 --host-record=mx.v6.test,$V6 \
		--mx-host=dual.test,mx.dual.test,10 --host-record=mx.dual.test,127.0.0.1,$V6 \
		>"$MP_TMP/dnsmasq.log" 2>&1 &
	MP_PIDS+=($!)
	RPORT=$(X python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	ip netns exec "$NS" redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$MP_TMP" \
		>"$MP_TMP/redis.log" 2>&1 &
	MP_PIDS+=($!)
	R() { X redis-cli -p "$RPORT" --raw "$@"; }
	mp_wait_for 10 R ping || mp_fail "redis did not start"
	mp_wait_for 10 X bash -c "exec 3<>/dev/tcp/$V6/25" || mp_fail "IPv6 smtp-sink did not start"
	mp_wait_for 10 X bash -c "exec 3<>/dev/tcp/127.0.0.1/25" || mp_fail "IPv4 smtp-sink did not start"
	mp_wait_for 10 X bash -c "exec 3<>/dev/tcp/$V6/2526" || mp_fail "route smtp-sink did not start"
	mp_wait_for 10 X python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)
q=b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x02v6\x04test\x00\x00\x0f\x00\x01"
s.sendto(q, ("127.0.0.1", 5300)); s.recv(512)' || mp_fail "dnsmasq did not answer"
	URL=redis://127.0.0.1:$RPORT
}
