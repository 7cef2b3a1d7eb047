#!/usr/bin/env bash
# The daemon end to end: mailpumpctl submits one campaign of 10,000
# recipients over ten domains into redis-server; mailpump (control plane
# on the main lcore, one DPDK worker lcore on the veth rig, userspace TCP, TLS,
# SMTP) delivers it through a router namespace to a real Postfix whose
# namespace is on another subnet (daemon_lib.sh). What it proves:
#  - a bad configuration is refused before the NIC is touched, with one
#    message naming file, line, section and key (unknown key, bad value,
#    an override on the command line), exit 2, and no tap opened;
#  - every recipient ends in exactly one final state and the counters add
#    up; the campaign is done, no job or retry is left;
#  - the maildirs hold exactly the delivered messages, one per delivered
#    recipient, each personalised for its recipient (To:, merge field in
#    Subject and body);
#  - per-domain TLS statistics in Redis match what each destination
#    offers: TLS 1.3 on the STARTTLS listener (six domains), plaintext
#    under "opportunistic" where STARTTLS is not offered (two domains), a
#    clear TLS failure and no plaintext delivery under "required" there
#    (one domain: failed at max age, reason in the text), and a TLS 1.0
#    only listener: handshake fails, mail goes in plaintext (one domain);
#  - the daemon's counters (stats JSON): per worker and per domain, the
#    worker's busy cycles, and they agree with Redis;
#  - the same daemon with [daemon] transport = ksock (kernel sockets, no
#    EAL) delivers a second campaign of 200.
# MP_DAEMON_SCALE=K divides the recipient count (the sanitizer build).
# usage: daemon_postfix.sh MAILPUMP MAILPUMPCTL
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/postfix.sh"
. "$(dirname "$0")/daemon_lib.sh"
mp_need_root
mp_need postfix redis-server
DM_MAILPUMP=$1
CTL=$2
SCALE=${MP_DAEMON_SCALE:-1}
N=$((10000 / SCALE))
N8=$((100 / SCALE))	# d8.test: required, no STARTTLS -> failed

# shellcheck disable=SC2034 # read by postfix.sh
PF_DOMAINS="d0.test d1.test d2.test d3.test d4.test d5.test d6.test d7.test d8.test d9.test"
dm_setup

ROUTES=(
	"[routes]"
	"d0.test = 198.19.60.140" "d1.test = 198.19.60.140" "d2.test = 198.19.60.140"
	"d3.test = 198.19.60.140" "d4.test = 198.19.60.140" "d5.test = 198.19.60.140"
	"d6.test = 198.19.60.141" "d7.test = 198.19.60.141" "d8.test = 198.19.60.141"
	"d9.test = 198.19.60.142"
)
CONF=$MP_TMP/mailpump.conf
dm_conf "$CONF" "${ROUTES[@]}"

# --- bad configuration: refused before the NIC ------------------------------
badcheck() {
	local what=$1 want=$2 rc
	shift 2
	ip netns exec "$DM_RNS" "$DM_MAILPUMP" "$@" --vdev "net_tap_bad$MP_SUFFIX,iface=mpbad$MP_SUFFIX" \
		--ip 198.19.60.2/26 --gw 198.19.60.1 --lcores 0,1 --file-prefix "mpbad$MP_SUFFIX" \
		>"$MP_TMP/bad.out" 2>"$MP_TMP/bad.err"
	rc=$?
	[ $rc -eq 2 ] || mp_fail "$what: exit $rc, want 2: $(cat "$MP_TMP/bad.err")"
	[ "$(wc -l <"$MP_TMP/bad.err")" -eq 1 ] || mp_fail "$what: not one message: $(cat "$MP_TMP/bad.err")"
	grep -qF -- "$want" "$MP_TMP/bad.err" || mp_fail "$what: message does not name \"$want\": $(cat "$MP_TMP/bad.err")"
	! ip -n "$DM_RNS" link show "mpbad$MP_SUFFIX" >/dev/null 2>&1 || mp_fail "$what: tap was created"
}
cp "$CONF" "$MP_TMP/bad1.conf"
printf '[tls]\nmin_versoin = 1.3\n' >>"$MP_TMP/bad1.conf"
# an unknown key in its own section later in the file: named with its line
LINE=$(grep -n min_versoin "$MP_TMP/bad1.conf" | cut -d: -f1)
badcheck "unknown key" "bad1.conf:$LINE: [tls] min_versoin: unknown key" --config "$MP_TMP/bad1.conf"
sed 's/^max_sessions = .*/max_sessions = lots/' "$CONF" >"$MP_TMP/bad2.conf"
LINE=$(grep -n 'max_sessions = lots' "$MP_TMP/bad2.conf" | cut -d: -f1)
badcheck "bad number" "bad2.conf:$LINE: [workers] max_sessions" --config "$MP_TMP/bad2.conf"
badcheck "bad override" "[smtp] connect_timeout" --config "$CONF" --set smtp.connect_timeout=soon
badcheck "bad policy" "[tls] min_policy" --config "$CONF" --set tls.min_policy=maybe
badcheck "bad route" "[routes] d9.test" --config "$CONF" --set "routes.d9.test=198.19.60.142:99999"
sed 's/^claim_min_idle = .*//; s/^url = .*//' "$CONF" >"$MP_TMP/bad3.conf"
badcheck "no redis url" "[redis] url: required" --config "$MP_TMP/bad3.conf"
echo "bad configurations refused before the NIC"

# --- the campaign ------------------------------------------------------------
python3 - "$MP_TMP" "$N" "$N8" <<'PY'
import sys
d, n, n8 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rest = n - n8
with open(d + "/big.csv", "w") as f, open(d + "/boxes", "w") as b:
    f.write("email,first,code\n")
    k = 0
    for i in range(n):
        if i < n8:
            dom = "d8.test"
        else:
            dom = "d%d.test" % [0, 1, 2, 3, 4, 5, 6, 7, 9][(i - n8) % 9]
        addr = "u%05d@%s" % (i, dom)
        f.write("%s,Name%05d,C%d\n" % (addr, i, i * 7919 % 100000))
        b.write(addr + "\n")
PY
pf_add_mailboxes "$DM_D" -f "$MP_TMP/boxes" || mp_fail "mailboxes"
printf 'Hello {{first}},\n\nyour code is {{code}}.\n.\n..dots\n' >"$MP_TMP/body.txt"
ip netns exec "$DM_RNS" "$CTL" --redis "$DM_URL" submit --id big --from news@pf.test \
	--subject 'For {{first}}' --text "$MP_TMP/body.txt" --tls opportunistic \
	--tls-override d8.test=required --max-age 8 --quiet "$MP_TMP/big.csv" \
	>"$MP_TMP/submit.log" 2>&1 || mp_fail "submit"
[ "$(R hget mp:campaign:big total)" = "$N" ] || mp_fail "total $(R hget mp:campaign:big total)"

T0=$(date +%s.%N)
dm_start a "$DM_TAP_A" 198.19.60.2/26 198.19.60.1 "$CONF" --lcores 0,1 --until-idle --timeout 1200s
dm_wait_exit "$DM_PID" 1300 || mp_fail "daemon did not finish within 1300 s"
T1=$(date +%s.%N)
[ "$DM_RC" -eq 0 ] || mp_fail "daemon exit $DM_RC"
ELAPSED=$(python3 -c "print('%.1f' % ($T1 - $T0))")
EXPECT=$((N - N8))
pf_wait_delivered "$DM_D" "$EXPECT" 300 || mp_fail "postfix delivered $(pf_maildir_count "$DM_D") of $EXPECT"
pf_wait_queue_empty "$DM_D" 120 || mp_fail "postfix queue not empty"

mp_py - "$DM_RPORT" "$DM_MAILDIR" "$DM_RNS" "$N" "$N8" "$MP_TMP/a.stats.json" "$ELAPSED" <<'PY' || mp_fail "checks"
import json, os, sys
from mpcheck import (Checks, Maildir, Redis, campaign, maildirs_agree, queues_empty, tls_all_13,
                     tls_handshake_fails, tls_no_starttls)
port, M, ns, n, n8, statf, elapsed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], float(sys.argv[7])
red, md, chk = Redis(ns, port), Maildir(M), Checks()
check = chk.check

rc, c, by = campaign(chk, red, "big", n)
check(by == {"delivered": n - n8, "failed": n8}, "states %s" % by)
queues_empty(chk, red)

# recipient by recipient: maildir and personalisation
fields = {}
with open(os.path.join(os.path.dirname(statf), "big.csv")) as f:
    next(f)
    for line in f:
        e, first, code = line.strip().split(",")
        fields[e] = (first, code)
box = maildirs_agree(chk, md, rc)
md_total = sum(len(fs) for fs in box.values())
for a, j in rc.items():
    fs, dom = box[a], a.split("@")[1]
    if j["state"] != "delivered":
        if dom == "d8.test":
            check(j["state"] == "failed" and "tls" in j["text"].lower() and j["attempts"] >= 2,
                  "d8 required without STARTTLS: %s" % j)
        continue
    if len(fs) != 1:
        continue
    body = open(fs[0], "rb").read().decode("utf-8", "replace")
    first, code = fields[a]
    check(("\nTo: " in body and a in body.split("\n\n", 1)[0]) and
          ("Subject: For %s" % first) in body and ("Hello %s," % first) in body and
          ("your code is %s." % code) in body and "\n..dots" in body,
          "%s: not personalised correctly" % a)
    if dom in ("d6.test", "d7.test", "d9.test"):
        check(j["tls"] is None, a + ": plaintext expected, TLS record %s" % j["tls"])
    else:
        check(j["tls"] is not None and j["tls"]["version"] == "TLSv1.3", a + ": no TLS 1.3: %s" % j["tls"])
check(md_total == n - n8, "maildir total %d, want %d" % (md_total, n - n8))
check(md.count("*", "_any") == 0, "mail to catch-all: %d" % md.count("*", "_any"))

# TLS statistics per domain
per = {}
for a, j in rc.items():
    d = a.split("@")[1]
    per[d] = per.get(d, 0) + (j["state"] == "delivered")
for i in range(10):
    d = "d%d.test" % i
    t = red.ints("mp:tls:" + d)
    if i <= 5:
        check(tls_all_13(t), "tls %s %s" % (d, t))
    elif i in (6, 7):
        check(tls_no_starttls(t, per[d]), "tls %s %s (delivered %d)" % (d, t, per[d]))
    elif i == 8:
        # "required" and no STARTTLS: nothing in plaintext
        check(tls_no_starttls(t, 0), "tls %s %s" % (d, t))
    else:
        check(tls_handshake_fails(t, per[d]), "tls %s %s (delivered %d)" % (d, t, per[d]))

# the daemon's own counters
s = json.load(open(statf))
w = s["workers"]
check(len(w) == 1 and w[0]["busy_cycles"] > 0 and w[0]["loops"] > 0, "worker counters %s" % w)
check(w[0]["delivered"] == n - n8 and w[0]["active"] == 0 and w[0]["ev_waits"] >= 0,
      "worker delivered %s" % w[0])
for i in range(10):
    d = "d%d.test" % i
    check(s["domains"].get(d, {}).get("delivered", -1) == per[d], "stats domain %s %s" % (d, s["domains"].get(d)))
check(s["sched"]["delivered"] == n - n8, "sched %s" % s["sched"])
chk.report()
print("ok: %d recipients over 10 domains in %.1f s through the gateway (%d delivered, %d failed under "
      "required); worker peak sessions %d, busy cycles/msg %.0f, rss %d kB" %
      (n, elapsed, n - n8, n8, w[0]["peak_active"], w[0]["busy_cycles"] / max(1, n), s["rss_kb"]))
PY

# --- the kernel-socket transport, same daemon, same control plane -----------
python3 -c "
print('email,first,code')
for i in range(200):
    print('k%03d@%s,K%03d,X%d' % (i, 'd0.test' if i % 2 else 'd6.test', i, i))
" >"$MP_TMP/k.csv"
cut -d, -f1 "$MP_TMP/k.csv" | tail -n +2 >"$MP_TMP/kboxes"
pf_add_mailboxes "$DM_D" -f "$MP_TMP/kboxes" || mp_fail "mailboxes"
BEFORE=$(pf_maildir_count "$DM_D")
ip netns exec "$DM_RNS" "$CTL" --redis "$DM_URL" submit --id ks --from news@pf.test \
	--subject 'For {{first}}' --text "$MP_TMP/body.txt" --quiet "$MP_TMP/k.csv" \
	>>"$MP_TMP/submit.log" 2>&1 || mp_fail "submit ks"
ip netns exec "$DM_RNS" "$DM_MAILPUMP" --config "$CONF" --transport ksock --consumer k \
	--until-idle --timeout 300s --daemon-stats "$MP_TMP/k.stats.json" \
	>"$MP_TMP/k.out" 2>"$MP_TMP/k.log" || mp_fail "ksock daemon exit $?"
[ "$(R hget mp:campaign:ks:counts delivered)" = 200 ] || mp_fail "ksock: $(dm_counts ks)"
[ "$(R hget mp:campaign:ks state)" = "done" ] || mp_fail "ksock: campaign not done"
pf_wait_delivered "$DM_D" $((BEFORE + 200)) 120 || mp_fail "ksock: maildirs $(pf_maildir_count "$DM_D")"
[ "$(mp_json "$MP_TMP/k.stats.json" 'j["transport"]')" = ksock ] || mp_fail "ksock: not the ksock transport"
echo "ksock transport: 200 delivered"
echo "daemon_postfix: ok (${ELAPSED} s for $N recipients)"
