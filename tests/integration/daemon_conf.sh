#!/usr/bin/env bash
# mailpump.conf.example is what the daemon reads: the file as shipped and
# the file with every commented key switched on pass --check-config; a
# misspelt key, a bad value in each kind of getter and a bad override are
# each refused with exit 2 and one line naming file:line, section and key.
# No NIC, no Redis: --check-config stops before both.
# usage: daemon_conf.sh MAILPUMP EXAMPLE
set -u
MP=$1
EX=$2
T=$(mktemp -d /tmp/mp-conf.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$MP" --config "$EX" --check-config >"$T/out" 2>&1 || fail "example: $(cat "$T/out")"
# every key on (list sections get one entry each)
sed 's/^#\([a-z_.*-]* = \)/\1/' "$EX" >"$T/all.conf"
# files the example names must exist: an own bounce rules file
printf '# own rules\nrate_limited 4xx * our-relay\n' >"$T/own.rules"
sed -i "s|^rules = .*|rules = $T/own.rules|" "$T/all.conf"
# and the DKIM keys it names (RSA-2048 and Ed25519)
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/rsa.pem" 2>/dev/null &&
	openssl genpkey -algorithm ED25519 -out "$T/ed.pem" 2>/dev/null &&
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/ec.pem" 2>/dev/null &&
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:512 -out "$T/small.pem" 2>/dev/null ||
	fail "openssl genpkey"
sed -i "s|^news.example.net = .*|news.example.net = rsa2026 $T/rsa.pem, ed2026 $T/ed.pem|" "$T/all.conf"
"$MP" --config "$T/all.conf" --check-config >"$T/out" 2>&1 || fail "all keys: $(cat "$T/out")"
n=$(grep -cE '^[a-z_]+ = ' "$T/all.conf")
[ "$n" -ge 50 ] || fail "only $n keys in the example"

# bad KEY VALUE WANT: replace KEY's value in all.conf, expect WANT in the one line
bad() {
	local key=$1 val=$2 want=$3 line rc
	line=$(grep -nE "^$key = " "$T/all.conf" | head -1 | cut -d: -f1)
	[ -n "$line" ] || fail "no key $key"
	sed "${line}s|=.*|= $val|" "$T/all.conf" >"$T/bad.conf"
	"$MP" --config "$T/bad.conf" --check-config >"$T/out" 2>"$T/err"
	rc=$?
	[ $rc -eq 2 ] || fail "$key=$val: exit $rc"
	[ "$(wc -l <"$T/err")" -eq 1 ] || fail "$key=$val: $(cat "$T/err")"
	grep -qF "bad.conf:$line: $want" "$T/err" || fail "$key=$val: want \"bad.conf:$line: $want\": $(cat "$T/err")"
}
bad max_sessions 0 "[workers] max_sessions"
bad grace forever "[daemon] grace"
bad transport rdma "[daemon] transport"
bad until_idle perhaps "[daemon] until_idle"
bad min_version 1.1 "[tls] min_version"
bad opportunistic_min_version 0.9 "[tls] opportunistic_min_version"
bad hugepages sometimes "[dataplane] hugepages"
bad gateway 300.1.1.1 "[dataplane] gateway"
bad ip 10.0.0.1/40 "[dataplane] ip"
bad rate fast "[shaping] rate"
bad cap 1s "[retry] cap"
bad final_classes "invalid_recipient, spam" "[bounce] final_classes: unknown class 'spam'"
bad sender_refusal bounce "[bounce] sender_refusal"
bad rules /nonexistent/bounce.rules "[bounce] rules: /nonexistent/bounce.rules: No such file"
printf 'other 5xx 5.1 *\n' >"$T/bad.rules"
bad rules "$T/bad.rules" "[bounce] rules: $T/bad.rules:1: bad enhanced code pattern"
bad news.example.net "rsa2026 $T/missing.pem" "[dkim] news.example.net: dkim key $T/missing.pem: No such file"
bad news.example.net "ec1 $T/ec.pem" "[dkim] news.example.net: dkim key $T/ec.pem: EC key; DKIM signs with RSA"
bad news.example.net "small $T/small.pem" "[dkim] news.example.net: dkim key $T/small.pem: RSA key of 512 bits"
bad news.example.net "rsa2026" "[dkim] news.example.net: \"rsa2026\": expected SELECTOR FILE"
bad news.example.net "a $T/rsa.pem, b $T/ed.pem, c $T/rsa.pem" "[dkim] news.example.net: dkim key $T/rsa.pem: news.example.net has more than 2 keys"
bad threads 0 "[dkim] threads"
bad mode always "[dkim] mode"
bad helo localhost "[smtp] helo: 'localhost' is not fully qualified"
bad helo "[192.0.2.1]" "[smtp] helo: '[192.0.2.1]' is an address literal"
# unset on a host whose own name is not qualified: refused, saying so
if [ "$(hostname)" = "${HOSTNAME%%.*}" ] && ! getent ahosts "$(hostname)" 2>/dev/null | grep -q '\.'; then
	grep -v '^helo = ' "$T/all.conf" >"$T/nohelo.conf"
	"$MP" --config "$T/nohelo.conf" --check-config >"$T/out" 2>"$T/err"
	rc=$?
	[ $rc -eq 2 ] && grep -q "\[smtp\] helo: unset, and this host's own name is no use" "$T/err" ||
		fail "helo unset on an unqualified host: exit $rc: $(cat "$T/err")"
fi
printf '[smtp]\nhelo_name = x\n' >>"$T/all.conf"
"$MP" --config "$T/all.conf" --check-config >"$T/out" 2>"$T/err"
rc=$?
if [ $rc -ne 2 ] || ! grep -q "all.conf:$(grep -c '' "$T/all.conf"): \[smtp\] helo_name: unknown key" "$T/err"; then
	fail "unknown key: exit $rc: $(cat "$T/err")"
fi
# (a duplicate section header is a second [smtp]: the reader allows it)
"$MP" --config "$EX" --set workers.max_sessions=-1 --check-config >"$T/out" 2>"$T/err"
rc=$?
if [ $rc -ne 2 ] || ! grep -q "\[workers\] max_sessions" "$T/err"; then
	fail "override: exit $rc: $(cat "$T/err")"
fi
"$MP" --config "$EX" --max-sessions 5000 --set tls.min_version=1.3 --check-config >/dev/null 2>&1 ||
	fail "good overrides refused"
echo "daemon_conf: ok"
