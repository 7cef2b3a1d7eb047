#!/usr/bin/env bash
# DKIM on the send path against its bound, in one run on this machine:
# the same campaign of N 10 KB messages (personalised To and Subject)
# through Redis and mp-deliver into the same mp-sink (which checks every
# body against its X-Bench-Digest), once unsigned and once signed with
# RSA-2048 by one signer thread pinned to CPU $SIGN_CPU. The bound is what
# `openssl speed rsa2048` signs per second on that CPU in the same run:
# the signed rate can be no higher, and the goal is >= 80% of it. Also
# the signer's CPU per message (its thread CPU time / signatures) against
# 1 / bound. Ed25519 is run too (its bound is far above the pipeline's
# rate, so there it is the pipeline that limits).
# Writes $MP_BENCH_RESULTS/dkim-send-<UTC date>.{md,json} when set.
# usage: dkim_send.sh MP_DELIVER MAILPUMPCTL MP_SINK MP_DKIMSIGN
. "$(dirname "$0")/../tests/integration/lib.sh"
DELIVER=$1
CTL=$2
SINK=$3
SIGN=$4
N=${MP_DKIM_N:-4000}
NCPU=$(nproc)
SIGN_CPU=${SIGN_CPU:-$((NCPU - 1))}
REST_CPU=${REST_CPU:-0}
[ "$NCPU" -ge 2 ] || REST_CPU=$SIGN_CPU
mp_need redis-server
mp_need openssl

RPORT=$(mp_free_port)
SPORT=$(mp_free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
	--dir "$MP_TMP" >"$MP_TMP/redis.log" 2>&1 &
MP_PIDS+=($!)
mp_wait_for 10 redis-cli -p "$RPORT" ping || mp_fail "redis did not start"

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$MP_TMP/rsa.pem" 2>/dev/null
openssl genpkey -algorithm ED25519 -out "$MP_TMP/ed.pem" 2>/dev/null

# a 10 KB ASCII body of short lines, and its digest as rendered
python3 - "$MP_TMP/body.txt" <<'EOF'
import sys
line = "The appointment reminder text, line %04d, padded to a fixed width.\n"
with open(sys.argv[1], "w") as f:
    for i in range(150):
        f.write(line % i)
EOF
mkdir -p "$MP_TMP/one"
"$SIGN" --from news@bench.test --subject s --text "$MP_TMP/body.txt" --domain bench.test \
	--key "$MP_TMP/ed.pem:ed1" "$MP_TMP/one" <<<"a@b.test" >/dev/null || mp_fail "mp-dkimsign"
DIGEST=$(python3 - "$MP_TMP/one/00000.eml" <<'EOF'
import hashlib, sys
body = open(sys.argv[1], "rb").read().split(b"\r\n\r\n", 1)[1]
print("len=%d; sha256=%s" % (len(body), hashlib.sha256(body).hexdigest()))
EOF
)
{
	echo "email,first"
	for i in $(seq 1 "$N"); do echo "u$i@d$((i % 20)).test,N$i"; done
} >"$MP_TMP/rcpts.csv"

# one run: NAME [mp-deliver --dkim args...]; writes "seconds msgs signer_cpu_ms"
# to $MP_TMP/NAME.res
run() {
	local name=$1 ns="b$1:" spid t0 t1
	shift
	"$CTL" --redis "redis://127.0.0.1:$RPORT" --ns "$ns" submit --id "$name" \
		--from news@bench.test --subject 'Reminder for {{first}}' \
		--text "$MP_TMP/body.txt" --header "X-Bench-Digest: $DIGEST" --quiet \
		"$MP_TMP/rcpts.csv" >/dev/null 2>"$MP_TMP/$name.submit" ||
		mp_fail "submit $name: $(cat "$MP_TMP/$name.submit")"
	rm -f "$MP_TMP/$name.sink.json"
	taskset -c "$REST_CPU" "$SINK" --listen "127.0.0.1:$SPORT" --threads 1 \
		--stats "$MP_TMP/$name.sink.json" --expect "$N" 2>"$MP_TMP/$name.sink.log" &
	spid=$!
	MP_PIDS+=("$spid")
	mp_wait_for 10 test -s "$MP_TMP/$name.sink.json" || mp_fail "mp-sink did not start"
	t0=$(date +%s.%N)
	taskset -c "$REST_CPU" "$DELIVER" --redis "redis://127.0.0.1:$RPORT" --ns "$ns" \
		--route "*=127.0.0.1:$SPORT" --helo bench.mailer.test --max-conns 4 \
		--msgs-per-conn 200 --until-idle --timeout 600 --stats "$@" \
		>"$MP_TMP/$name.out" 2>"$MP_TMP/$name.log" || mp_fail "mp-deliver $name: $(tail -3 "$MP_TMP/$name.log")"
	t1=$(date +%s.%N)
	kill -TERM "$spid"
	wait "$spid" 2>/dev/null
	python3 - "$MP_TMP/$name.sink.json" "$MP_TMP/$name.out" "$t0" "$t1" "$N" \
		>"$MP_TMP/$name.res" <<'EOF'
import json, sys
sink = json.load(open(sys.argv[1]))
ok = sink.get("messages_ok", 0)
bad = sink.get("messages_corrupt", 0) + sink.get("messages_no_digest", 0)
if ok != int(sys.argv[5]) or bad:
    sys.exit("sink: %d ok, %d corrupt of %s" % (ok, bad, sys.argv[5]))
cpu = 0.0
for line in open(sys.argv[2]):
    d = json.loads(line)
    if "dkim" in d:
        cpu = d["dkim"]["signer_cpu_ms"]
print("%.3f %d %.1f" % (float(sys.argv[4]) - float(sys.argv[3]), ok, cpu))
EOF
}

speed() {	# sign/s of openssl speed on SIGN_CPU: rsa2048 or ed25519
	taskset -c "$SIGN_CPU" openssl speed -seconds 3 "$1" 2>/dev/null | awk -v a="$1" '
		a == "rsa2048" && $1 == "rsa" && $2 == "2048" { print $6 }
		a == "ed25519" && $1 == "253" && $4 == "(Ed25519)" { print $7 }'
}

BOUND_RSA=$(speed rsa2048)
BOUND_ED=$(speed ed25519)
[ -n "$BOUND_RSA" ] || mp_fail "openssl speed rsa2048: no figure"
run unsigned || mp_fail "unsigned run"
run rsa --dkim "bench.test=rsa1 $MP_TMP/rsa.pem" --dkim-threads 1 --dkim-cpus "$SIGN_CPU" ||
	mp_fail "rsa run"
run ed --dkim "bench.test=ed1 $MP_TMP/ed.pem" --dkim-threads 1 --dkim-cpus "$SIGN_CPU" ||
	mp_fail "ed run"
read -r T_U _ _ <"$MP_TMP/unsigned.res"
read -r T_R _ C_R <"$MP_TMP/rsa.res"
read -r T_E _ C_E <"$MP_TMP/ed.res"

python3 - "$N" "$T_U" "$T_R" "$C_R" "$BOUND_RSA" "$T_E" "$C_E" "${BOUND_ED:-0}" \
	"$SIGN_CPU" "$REST_CPU" <<'EOF'
import json, os, sys, time
n = int(sys.argv[1])
tu, tr, cr, br, te, ce, be = (float(x) for x in sys.argv[2:9])
def row(name, t, cpu_ms, bound):
    if cpu_ms is None:
        return (name, n / t, None, None, None)
    us = cpu_ms * 1000 / n
    # what the signer core could sign per second at this CPU per message
    return (name, n / t, us, bound or None, (1e6 / us / bound) if bound and us else None)


rows = [row("unsigned", tu, None, None),
        row("RSA-2048, 1 signer thread", tr, cr, br),
        row("Ed25519, 1 signer thread", te, ce, be)]
md = ["| 10 KB messages, %d, mp-deliver -> mp-sink | msg/s | signer CPU per msg (us) "
      "| openssl speed sign/s (bound) | signer capacity / bound |" % n,
      "|---|---:|---:|---:|---:|"]
for name, rate, cpu, bound, share in rows:
    md.append("| %s | %.0f | %s | %s | %s |" % (
        name, rate, "%.0f" % cpu if cpu is not None else "-",
        "%.0f (%.0f us)" % (bound, 1e6 / bound) if bound else "-",
        "%.0f%%" % (share * 100) if share is not None else "-"))
md.append("")
md.append("Signer thread pinned to CPU %s; mp-deliver, redis-server and mp-sink share "
          "CPU %s. Signer capacity is 1 / (signer CPU per message): what the core "
          "given to signing can sign per second, against openssl speed on the same "
          "core in the same run. Goal: >= 80%% for RSA. The msg/s column is the "
          "whole pipeline's rate, which one core for everything else limits." %
          (sys.argv[9], sys.argv[10]))
print("\n".join(md))
out = {"n": n, "rows": [dict(zip(("name", "msg_s", "signer_us_per_msg", "bound_sign_s",
                                  "share"), r)) for r in rows]}
print(json.dumps(out))
res = os.environ.get("MP_BENCH_RESULTS")
if res:
    os.makedirs(res, exist_ok=True)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    open(os.path.join(res, "dkim-send-%s.md" % day), "w").write("\n".join(md) + "\n")
    open(os.path.join(res, "dkim-send-%s.json" % day), "w").write(json.dumps(out) + "\n")
EOF
