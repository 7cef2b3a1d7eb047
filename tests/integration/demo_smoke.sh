#!/usr/bin/env bash
# The README's main command works: scripts/demo with 500 recipients (on
# the binaries of this build, sent by the mailpump daemon on a DPDK
# worker through the router namespace) ends with "demo: ok", per-domain outcomes
# as the demo domains promise (verified TLS, required TLS, plaintext
# without STARTTLS, self-signed accepted under "required", expired
# certificate failed under "verify", unknown users and a null MX
# bounced), Redis and the maildirs agreeing (the demo checks that
# itself), a personalised sample message; and after it, and after a
# second run interrupted with SIGINT to its process group (Ctrl-C) while
# sending, nothing of it is left: namespaces, temporary directory,
# processes.
# usage: demo_smoke.sh SCRIPTS_DEMO BUILD_DIR
. "$(dirname "$0")/lib.sh"
mp_need_root
mp_need postfix
DEMO=$1
BUILD=$2

# leftovers DEMO_OUTPUT: fail if its namespaces, temp dir or processes remain
leftovers() {
	local out=$1 ns tmp p
	ns=$(grep -o 'namespaces mpdemo-router[0-9]* mpdemo-mail[0-9]*' "$out" | cut -d' ' -f2-)
	[ -n "$ns" ] || mp_fail "no cleanup line in $out"
	for n in $ns; do
		ip netns list | grep -qw "$n" && mp_fail "namespace $n left behind"
	done
	tmp=$(grep -o '/tmp/mp-demo\.[A-Za-z0-9]*' "$out" | head -1)
	[ -n "$tmp" ] || mp_fail "no temporary directory named in $out"
	[ -e "$tmp" ] && mp_fail "$tmp left behind"
	grep -qF " $tmp " /proc/mounts && mp_fail "$tmp still mounted"
	for p in /proc/[0-9]*; do
		grep -qsF "$tmp" "$p/cmdline" && mp_fail "process ${p#/proc/} left: $(tr '\0' ' ' <"$p/cmdline")"
	done
	return 0
}

out=$MP_TMP/demo.out
MP_DEMO_RCPTS=500 MP_DEMO_MAX_AGE=6 MP_DEMO_BUILD=$BUILD timeout 240 "$DEMO" >"$out" 2>&1
rc=$?
[ $rc -eq 0 ] || { tail -40 "$out"; mp_fail "demo exited $rc"; }
grep -q '^demo: ok$' "$out" || mp_fail "no 'demo: ok'"
# the rig says which PMD the dataplane got, and the port came up on it
rig=$(grep -oE '^rig: net_af_(xdp|packet) ' "$out" | head -1 | cut -d' ' -f2)
[ -n "$rig" ] || mp_fail "no 'rig:' line naming net_af_xdp or net_af_packet"
grep -qE "^dp: port=${rig}_demo[0-9]+ driver=$rig " "$out" || mp_fail "the dataplane port is not on $rig"
echo "info: demo rig: $(grep -E '^rig: ' "$out" | head -1)"
row() { grep -E "^  $1 " "$out" | head -1; }
expect() { # DOMAIN POLICY RCPTS DELIVERED BOUNCED FAILED MAILDIR NOTE
	local r
	r=$(row "$1")
	read -r -a f <<<"$r"
	[ "${f[*]:0:7}" = "$1 $2 $3 $4 $5 $6 $7" ] || mp_fail "row for $1: '$r'"
	[[ $r == *"$8"* ]] || mp_fail "row for $1 lacks '$8': '$r'"
}
expect clinic-a.test verify 160 160 0 0 160 "TLSv1.3 verified (160)"
expect bank.test required 100 100 0 0 100 "TLSv1.3"
expect pharmacy.test opportunistic 85 75 10 0 75 "User unknown"
expect nostarttls.test opportunistic 75 75 0 0 75 "plaintext (75)"
expect lab.test required 50 50 0 0 50 "unverified: self-signed (50)"
expect badcert.test verify 25 0 0 25 0 "retried until the maximum age: TLS: certificate has expired"
expect retired-clinic.test opportunistic 5 0 5 0 0 "null_mx"
grep -q 'reminders, 500 recipients: 460 delivered, 15 bounced, 25 failed' "$out" || mp_fail "summary"
grep -q 'Subject: Clinic A: your appointment on ' "$out" || mp_fail "sample subject"
grep -qE '^  \| Hello [A-Z][a-z]+ [A-Z][a-z]+,$' "$out" || mp_fail "sample body not personalised"
grep -q 'using TLSv1.3' "$out" || mp_fail "sample not received over TLS"
# the default sender is the DPDK daemon, and its mail came through the
# router from the worker's own address
grep -q '^  sender: the mailpump daemon' "$out" || mp_fail "not sent by the daemon"
grep -q 'Received: from sender.mailpump.test (unknown \[198.19.70.2\])' "$out" ||
	mp_fail "sample not received from the DPDK address 198.19.70.2"
grep -qE '^  worker 0 on lcore 1: [0-9]+ SMTP sessions .*\(460 delivered' "$out" ||
	mp_fail "worker counters: $(grep -A1 '^  worker 0' "$out")"
grep -q '^DOMAIN .*SESSIONS' "$out" || mp_fail "no TLS report"
grep -q 'expired=' "$out" || mp_fail "TLS report lacks the expired certificate"
grep -q '^top failure reasons' "$out" || mp_fail "no campaign report"
leftovers "$out"

# Ctrl-C while sending: its own process group, SIGINT to all of it. A
# background job of this script starts with SIGINT ignored, which a shell
# cannot trap; a demo started from a terminal has it at its default, so
# that is restored before the exec.
out2=$MP_TMP/demo_int.out
MP_DEMO_RCPTS=2000 MP_DEMO_BUILD=$BUILD python3 -c '
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.setsid()
os.execv(sys.argv[1], sys.argv[1:])' "$DEMO" >"$out2" 2>&1 &
pg=$!
MP_PIDS+=("$pg")
mp_wait_for 120 grep -q '== sending' "$out2" || mp_fail "interrupted run: never started sending"
sleep 1
kill -INT -- "-$pg"
for _ in $(seq 600); do mp_alive "$pg" || break; sleep 0.1; done
mp_alive "$pg" && mp_fail "demo still running 60 s after SIGINT"
wait "$pg"
rc=$?
[ $rc -eq 130 ] || { tail -20 "$out2"; mp_fail "interrupted demo exited $rc, not 130"; }
grep -q 'demo: interrupted' "$out2" || mp_fail "no 'interrupted' message"
leftovers "$out2"
echo "demo_smoke: ok"
