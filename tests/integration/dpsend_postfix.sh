#!/usr/bin/env bash
# mp-dpsend (SMTP sessions on a DPDK worker over the userspace TCP stack,
# --no-pci) against real Postfix smtpd in a netns (postfix.sh harness), on
# the veth rig (lib.sh mp_rig_veth: net_af_xdp, or net_af_packet where
# AF_XDP cannot attach): mp-dpsend runs in a namespace of its own on one
# end, the other end lives in the Postfix namespace and carries the
# listener addresses.
#  - 500 messages over 20 sessions under "verify": every recipient
#    delivered exactly once, byte-exact (dot-stuffing traps), every JSON
#    TLS record TLSv1.3 verify ok; the summary carries the worker's busy
#    cycles per message and per handshake, and the worker's idle back-off
#    slept while it waited on the server; no ciphertext tail was needed;
#  - verify against an expired and a wrong-name certificate: deferred at
#    stage "tls" with the reason, nothing delivered;
#  - opportunistic to the listener without STARTTLS: plaintext delivery;
#  - a second connection to the same server resumes the TLS session;
#  - async TLS: an emulated provider pauses every certificate check until
#    the worker loop has gone round 2000 more times (wait fd, and wait
#    ctx callback): everything delivered, so the loop never blocked;
#  - a refused connect (deferred at stage "connect") and a server-side
#    reset mid-session (deferred with the reason, each recipient once);
#  - --timeout while the server stalls: exit 2, every recipient deferred
#    once ("aborted" in flight, "not attempted" for the rest);
#  - two workers (software steering): 100 messages, byte-exact;
#  - 2% random loss each way in front of Postfix (lib.sh mp_loss_on): 200
#    messages over 10 sessions still all delivered, byte-exact, with
#    retransmissions seen.
#
# usage: dpsend_postfix.sh MP_DPSEND
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/postfix.sh"
. "$(dirname "$0")/pf_check.sh"
mp_need_root
mp_need postfix
SEND=$1
[ -x "$SEND" ] || mp_fail "mp-dpsend not found: $SEND"

SNS=mpdps$MP_SUFFIX
DNS=mpdpd$MP_SUFFIX
IF=mpd$MP_SUFFIX
DP_IP=198.19.50.2
D=$MP_TMP/pf
mp_netns "$SNS"
mp_netns "$DNS"
# The veth: mp-dpsend attaches to its end in $DNS, smtpd listens on $IF.
mp_rig_veth "$SNS" "mpdd$MP_SUFFIX" "$IF" "$DNS"
VDEV=$(mp_rig_vdev "d$MP_SUFFIX")
ip netns exec "$SNS" ip addr add 198.19.50.1/24 dev "$IF"
PF_SERVER_IF=$IF
pf_make_certs "$D/certs" || mp_fail "certificates"
CA=$D/certs/ca.pem
pf_start "$SNS" "$D" \
	"ip=198.19.50.10;name=mx1.pf.test;tls=good;domains=a.test,b.test,resume.test,loss.test" \
	"ip=198.19.50.11;name=plain.pf.test;tls=none;domains=plain.test" \
	"ip=198.19.50.12;name=old.pf.test;tls=expired;domains=expired.test" \
	"ip=198.19.50.13;name=bad.pf.test;tls=badname;domains=badname.test" ||
	mp_fail "pf_start"
MAILDIR=$(pf_maildir_root "$D")
# The sanitizer build runs DPDK without hugepages (ASan and hugepage
# mappings do not mix); a normal build takes them when reserved.
HUGE=${MP_DP_HUGE:-auto}

# send NAME SERVER_NAME IP ARGS...: one mp-dpsend run in its namespace
# on the veth (pf_run in pf_check.sh); its JSON lines end up in $OUT.
send() {
	local name=$1 host=$2 ip=$3
	shift 3
	pf_run "$name" "${EXPECT_RC:-0}" "$DNS" "$MP_RIG_EXEC" "$SEND" --server "$host:${PORT:-25}" --connect "$ip" \
		--from sender@pf.test --helo client.pf.test --timeout 300 \
		--vdev "$VDEV" --ip "$DP_IP/24" ${DP_GW:+--gw "$DP_GW"} \
		--file-prefix "mpdps$MP_SUFFIX" --huge "$HUGE" --garp 0 --lcores 0,1 "$@"
	! grep -q "cannot open a session" "$PF_RUN_LOG" || mp_fail "$name: a session open failed"
}
check() {
	pf_check "$OUT" "$MAILDIR" "$1" "$2"
}

pf_make_traps "$MP_TMP"
python3 - "$MP_TMP" <<'PY'
import sys
d = sys.argv[1]
with open(d + "/bulk.txt", "w") as f:
    for i in range(500):
        f.write("dp%04d@%s\n" % (i, "a.test" if i % 2 else "b.test"))
for m in ("fd", "callback"):
    with open(d + "/async-%s.txt" % m, "w") as f:
        for i in range(20):
            f.write("async%s%02d@a.test\n" % (m, i))
with open(d + "/rst.txt", "w") as f:
    for i in range(10):
        f.write("rst%02d@plain.test\n" % i)
with open(d + "/stall.txt", "w") as f:
    for i in range(6):
        f.write("stall%02d@plain.test\n" % i)
with open(d + "/two.txt", "w") as f:
    for i in range(100):
        f.write("two%04d@a.test\n" % i)
with open(d + "/loss.txt", "w") as f:
    for i in range(200):
        f.write("lossy%04d@loss.test\n" % i)
PY
pf_add_mailboxes "$D" -f "$MP_TMP/bulk.txt" || mp_fail "mailboxes"
pf_add_mailboxes "$D" -f "$MP_TMP/loss.txt" || mp_fail "mailboxes"
pf_add_mailboxes "$D" -f "$MP_TMP/two.txt" || mp_fail "mailboxes"

# --- 500 messages, 20 sessions, verify ---------------------------------------
send "bulk" mx1.pf.test 198.19.50.10 --rcpt-file "$MP_TMP/bulk.txt" \
	--message "$MP_TMP/traps.eml" --sessions 20 --msgs-per-conn 25 --tls verify --ca "$CA"
check "dp bulk, verify: 500 delivered over 20 TLS 1.3 sessions" '
verified_bulk(500, 20, 25)
dp = s["dataplane"]
assert dp["workers"] == 1 and dp["handshakes"] == 20 and dp["tls_failed"] == 0, dp
assert dp["busy_cycles"] > 0 and dp["busy_cycles_per_msg"] > 0 and dp["busy_cycles_per_handshake"] > 0, dp
assert dp["tails"] == 0 and dp["lines_lost"] == 0 and dp["connect_failed"] == 0, dp
# waiting on Postfix the worker had nothing to do: the idle back-off slept
assert dp["idle_sleeps"] > 0 and dp["busy_loops"] < dp["loops"], dp
print("info: %.1f msgs/s, %.0f busy cycles/msg, %.0f busy cycles/handshake (tsc %d Hz), idle sleeps %d" % (
    s["msgs_per_s"], dp["busy_cycles_per_msg"], dp["busy_cycles_per_handshake"], dp["tsc_hz"], dp["idle_sleeps"]))
print("info: dataplane", json.dumps(dp))
'
pf_wait_queue_empty "$D" 300 || mp_fail "queue did not drain after the bulk run"
check "dp bulk maildirs: each recipient once, byte-exact" '
assert count("a.test") + count("b.test") == 500, (count("a.test"), count("b.test"))  # before two.txt
exact(addrs("bulk.txt"), read("traps.eml"), tls="TLSv1.3")
'

# --- verify failures ------------------------------------------------------------
for c in "expired old.pf.test 198.19.50.12 expired" \
	"badname bad.pf.test 198.19.50.13 name-mismatch"; do
	read -r kind host ip reason <<<"$c"
	send "verify $kind" "$host" "$ip" --rcpt "v1@$kind.test" --rcpt "v2@$kind.test" \
		--message "$MP_TMP/traps.eml" --tls verify --ca "$CA"
	check "dp verify, $kind server: $reason, not delivered" "
assert len(r) == 2 and s['delivered'] == 0, s
tls_refused('$reason')
"
done

# --- plaintext under opportunistic ----------------------------------------------
send "opportunistic plain" plain.pf.test 198.19.50.11 --rcpt o1@plain.test --rcpt o2@plain.test \
	--message "$MP_TMP/traps.eml" --tls opportunistic
check "dp opportunistic, no STARTTLS: plaintext delivery, tls null" '
assert len(r) == 2 and s["delivered"] == 2 and s["tls_sessions"] == 0, s
for x in r:
    assert x["outcome"] == "delivered" and x["tls"] is None, x
'

# --- resumption -----------------------------------------------------------------
send "resume" mx1.pf.test 198.19.50.10 --rcpt r1@resume.test --rcpt r2@resume.test \
	--message "$MP_TMP/traps.eml" --sessions 1 --msgs-per-conn 1 --tls verify --ca "$CA"
check "dp: second connection to the same server resumes" '
resumed()
'

# --- async TLS jobs paused (emulated provider) ------------------------------------
# Each certificate check pauses its job until the worker loop went round
# 2000 more times: a loop that blocked on the pause would never resume it.
for mode in fd callback; do
	send "async $mode" mx1.pf.test 198.19.50.10 --rcpt-file "$MP_TMP/async-$mode.txt" \
		--message "$MP_TMP/traps.eml" --sessions 4 --msgs-per-conn 5 --tls verify --ca "$CA" \
		--test-async-pause $mode --timeout 120
	check "dp async pauses ($mode): the loop runs on, 20 delivered" '
assert s["recipients"] == 20 and s["delivered"] == 20 and not s["timeout"], s
dp = s["dataplane"]
assert dp["test_pauses"] >= 1 and dp["async_pauses"] >= dp["test_pauses"], dp
assert dp["handshakes"] == 4 and dp["tls_failed"] == 0, dp
'
done

# --- two workers (software steering through the redirect rings) -----------------
# A second veth with two queues, one per worker, on its own subnet (smtpd
# answers on its 198.19.50.x listeners through it). net_af_xdp 22.11 wants
# "combined" channels, which a veth does not report, so this port is
# net_af_packet (the rig says so).
mp_rig_veth "$SNS" "mpde$MP_SUFFIX" "mpe$MP_SUFFIX" "$DNS" 2
ip netns exec "$SNS" ip addr add 198.19.52.1/24 dev "mpe$MP_SUFFIX"
VDEV=$(mp_rig_vdev "e$MP_SUFFIX") DP_IP=198.19.52.2 DP_GW=198.19.52.1 \
	send "two workers" mx1.pf.test 198.19.50.10 --rcpt-file "$MP_TMP/two.txt" \
	--message "$MP_TMP/traps.eml" --sessions 10 --msgs-per-conn 10 --tls verify --ca "$CA" \
	--lcores 0@0,1@1,2@1
pf_wait_queue_empty "$D" 120 || mp_fail "queue did not drain after the two-worker run"
check "dp two workers: 100 delivered byte-exact over 10 sessions" '
assert s["recipients"] == 100 and s["delivered"] == 100 and s["sessions"] == 10, s
assert s["dataplane"]["workers"] == 2 and s["dataplane"]["handshakes"] == 10, s["dataplane"]
exact(addrs("two.txt"), read("traps.eml"), tls="TLSv1.3")
'

# --- 2% loss each way on the Postfix side -----------------------------------------
mp_loss_on "$SNS" "$IF" 25 2 mpdploss || mp_fail "nft loss tables"
send "loss" mx1.pf.test 198.19.50.10 --rcpt-file "$MP_TMP/loss.txt" \
	--message "$MP_TMP/traps.eml" --sessions 10 --msgs-per-conn 20 --tls verify --ca "$CA"
mp_loss_off "$SNS" mpdploss
check "dp 2% loss: 200 delivered, retransmissions seen" '
assert s["recipients"] == 200 and s["delivered"] == 200, s
assert s["dataplane"]["retransmits"] > 0, s["dataplane"]
print("info: under loss %.1f msgs/s, retransmits %d" % (s["msgs_per_s"], s["dataplane"]["retransmits"]))
'
pf_wait_queue_empty "$D" 120 || mp_fail "queue did not drain after the loss run"
check "dp 2% loss maildirs: each recipient once, byte-exact" '
assert count("loss.test") == 200, count("loss.test")
exact(addrs("loss.txt"), read("traps.eml"), tls="TLSv1.3")
'

# --- transport failures (last: a reset or stalled smtpd keeps its queue
# file until its own timeout, so nothing after this waits for the queue) --
# Nothing listens on port 26: Linux answers the SYN with a reset.
PORT=26 send "refused" plain.pf.test 198.19.50.11 --rcpt f1@plain.test --rcpt f2@plain.test \
	--message "$MP_TMP/traps.eml" --tls opportunistic
check "dp connect refused: every recipient deferred at stage connect" '
assert len(r) == 2 and s["deferred"] == 2 and s["delivered"] == 0, s
for x in r:
    assert x["outcome"] == "deferred" and x["stage"] == "connect" and x["tls"] is None, x
    assert "refused" in x["text"].lower() and "198.19.50.11]:26" in x["text"], x
assert s["dataplane"]["connect_failed"] == 1 and s["dataplane"]["connected"] == 0, s["dataplane"]
'
# The server side resets the connection once the session is under way
# (the 9th segment from us): the recipients in flight are deferred with
# the reason, each exactly once, and the next session goes on.
ip netns exec "$SNS" nft -f - <<NFT || mp_fail "nft"
table inet mpdprst {
	chain in { type filter hook input priority 0; iifname "$IF" ip daddr 198.19.50.11 tcp dport 25 ct original packets > 8 reject with tcp reset; }
}
NFT
send "reset" plain.pf.test 198.19.50.11 --rcpt-file "$MP_TMP/rst.txt" \
	--message "$MP_TMP/traps.eml" --sessions 2 --msgs-per-conn 5 --tls opportunistic
ip netns exec "$SNS" nft delete table inet mpdprst
check "dp reset mid-session: deferred with the reason, exactly once each" '
assert len(r) == 10 and len({x["rcpt"] for x in r}) == 10, r
assert s["delivered"] + s["deferred"] == 10 and s["deferred"] >= 1, s
for x in r:
    if x["outcome"] == "deferred":
        assert x["stage"] != "connect" and "reset" in x["text"].lower(), x
assert s["dataplane"]["resets"] >= 1, s["dataplane"]
'

# --- --timeout while the server stalls ---------------------------------------------
# After the third segment of each connection nothing reaches smtpd: the
# sessions hang until --timeout, then every recipient still has a record.
ip netns exec "$SNS" nft -f - <<NFT || mp_fail "nft"
table inet mpdpstall {
	chain in { type filter hook input priority 0; iifname "$IF" ip daddr 198.19.50.11 tcp dport 25 ct original packets > 3 drop; }
}
NFT
EXPECT_RC=2 send "timeout" plain.pf.test 198.19.50.11 --rcpt-file "$MP_TMP/stall.txt" \
	--message "$MP_TMP/traps.eml" --sessions 2 --msgs-per-conn 2 --tls opportunistic --timeout 3
ip netns exec "$SNS" nft delete table inet mpdpstall
check "dp --timeout: exit 2, every recipient deferred once with the reason" '
assert s["timeout"] is True and s["delivered"] == 0 and s["deferred"] == 6, s
assert len(r) == 6 and len({x["rcpt"] for x in r}) == 6, r
for x in r:
    assert x["outcome"] == "deferred" and "--timeout" in x["text"], x
assert s["unfinished"] == 6, s
'

# --- what reached Postfix -----------------------------------------------------------
check "dp deliveries per server: none to the unverifiable ones" '
want = {"expired.test": 0, "badname.test": 0, "resume.test": 2}
got = {d: count(d) for d in want}
assert got == want, got
'
pf_no_bare_lf "$D"
echo "dpsend_postfix: all $PF_RUN runs passed"
exit 0
