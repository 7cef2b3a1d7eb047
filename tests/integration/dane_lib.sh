# DANE test rig (sourced after lib.sh): a signed zone tree served by nsd
# and validated by unbound, inside a network namespace the caller made.
#
#   dane_rig_start NS    keys, zones, signatures; nsd and two unbounds in NS
#
# What it builds, all under $MP_TMP/dane:
#   dane.test.        signed (ldns-signzone, one ECDSA P-256 key with the
#                     KSK flag). Its DS is the trust anchor ($DANE_TA).
#                     MX, A and TLSA records for the checks below.
#   bogus.dane.test.  a signed child whose DS in dane.test. is that of a
#                     key that never signed it: every answer is bogus.
#   plain.test.       unsigned, outside every trust anchor: insecure.
# nsd serves all three on 127.0.0.1@53 of NS (its own port 53: the
# delegation to bogus.dane.test. is followed at port 53, as on the
# Internet). Two unbounds forward to it:
#   $DANE_RESOLVER    127.0.0.1@5302, validating with $DANE_TA, no
#                     permissive mode: bogus answers become SERVFAIL.
#   $DANE_NOVAL       127.0.0.1@5303, module-config "iterator" only: it
#                     passes signed data through without validating, the
#                     way an untrusted upstream would (its AD bit, if
#                     any, must not count).
#   $DANE_NSD         127.0.0.1@53, nsd itself (authoritative, never AD).
#   $DANE_DEAD        127.0.0.1@5399, nothing listens: a dead resolver.
# And the certificate the TLSA records describe: $DANE_CERT (PEM),
# $DANE_SPKI_SHA256 (hex SHA-256 of its SubjectPublicKeyInfo),
# $DANE_CERT_SHA512 (hex SHA-512 of the whole DER certificate).
# nsd and the unbounds are in MP_PIDS (stopped by lib.sh on exit).
# "test." is one of the names unbound answers itself (RFC 6761): our
# unbounds say local-zone "test." nodefault; a libunbound client needs
# the option "local-zone: test. transparent" (nodefault, set through
# ub_ctx_set_option, leaves the default in place in unbound 1.17).

dane_rig_start() {
	local ns=$1 d=$MP_TMP/dane k kb kb2 spki c512
	mp_need nsd unbound ldns-keygen ldns-signzone openssl
	mkdir -p "$d"
	# the certificate whose key the TLSA records pin
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$d/mx.key" -out "$d/mx.pem" -days 30 \
		-subj /CN=mx.dane.test >/dev/null 2>&1 || mp_fail "dane: no test certificate"
	spki=$(openssl x509 -in "$d/mx.pem" -pubkey -noout |
		openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1)
	c512=$(openssl x509 -in "$d/mx.pem" -outform DER | sha512sum | cut -d' ' -f1)
	DANE_CERT=$d/mx.pem
	DANE_SPKI_SHA256=$spki
	DANE_CERT_SHA512=$c512

	# keys: one for dane.test., two for bogus.dane.test. (kb signs it,
	# kb2's DS is what the parent publishes)
	k=$(cd "$d" && ldns-keygen -a ECDSAP256SHA256 -k -r /dev/urandom dane.test) ||
		mp_fail "dane: ldns-keygen"
	kb=$(cd "$d" && ldns-keygen -a ECDSAP256SHA256 -k -r /dev/urandom bogus.dane.test) ||
		mp_fail "dane: ldns-keygen"
	kb2=$(cd "$d" && ldns-keygen -a ECDSAP256SHA256 -k -r /dev/urandom bogus.dane.test) ||
		mp_fail "dane: ldns-keygen"
	[ "$kb" != "$kb2" ] || mp_fail "dane: two bogus keys with one tag"

	cat >"$d/dane.test.zone" <<EOF
\$ORIGIN dane.test.
\$TTL 300
@	SOA	ns.dane.test. hostmaster.dane.test. 1 3600 600 86400 300
@	NS	ns
ns	A	127.0.0.1
@	MX	10 mx
@	MX	20 mx2
mx	A	127.0.0.1
mx2	A	127.0.0.1
_25._tcp.mx	TLSA	3 1 1 $spki
_465._tcp.mx	TLSA	3 0 2 $c512
; one usable record among records to set aside (RFC 7671 4.1)
mixed	MX	10 mixed
mixed	A	127.0.0.1
_25._tcp.mixed	TLSA	4 1 1 $spki
_25._tcp.mixed	TLSA	3 2 1 $spki
_25._tcp.mixed	TLSA	3 1 9 $spki
_25._tcp.mixed	TLSA	3 1 1 ${spki:0:40}
_25._tcp.mixed	TLSA	1 1 1 $spki
_25._tcp.mixed	TLSA	3 1 1 $spki
; nothing usable
unusable	A	127.0.0.1
_25._tcp.unusable	TLSA	3 1 2 $spki
_25._tcp.unusable	TLSA	0 0 1 $spki
; CNAMEs: a host alias, and a TLSA owner alias
alias	CNAME	mx
_25._tcp.alias	CNAME	_25._tcp.mx
; a signed child with a DS that does not match its key
bogus	NS	ns.bogus
ns.bogus	A	127.0.0.1
EOF
	cat "$d/$kb2.ds" >>"$d/dane.test.zone"
	grep -q 'DS' "$d/dane.test.zone" || mp_fail "dane: no DS for the bogus child"

	cat >"$d/bogus.dane.test.zone" <<EOF
\$ORIGIN bogus.dane.test.
\$TTL 300
@	SOA	ns.bogus.dane.test. hostmaster.dane.test. 1 3600 600 86400 300
@	NS	ns
ns	A	127.0.0.1
@	MX	10 mx
mx	A	127.0.0.1
_25._tcp.mx	TLSA	3 1 1 $spki
EOF

	cat >"$d/plain.test.zone" <<EOF
\$ORIGIN plain.test.
\$TTL 300
@	SOA	ns.plain.test. hostmaster.plain.test. 1 3600 600 86400 300
@	NS	ns
ns	A	127.0.0.1
@	MX	10 mx
mx	A	127.0.0.1
_25._tcp.mx	TLSA	3 1 1 $spki
EOF

	(cd "$d" && ldns-signzone -o dane.test. -f dane.test.signed dane.test.zone "$k") ||
		mp_fail "dane: ldns-signzone dane.test."
	(cd "$d" && ldns-signzone -o bogus.dane.test. -f bogus.dane.test.signed \
		bogus.dane.test.zone "$kb") || mp_fail "dane: ldns-signzone bogus.dane.test."
	cp "$d/$k.ds" "$d/ta.ds"
	DANE_TA=$d/ta.ds

	cat >"$d/nsd.conf" <<EOF
server:
	ip-address: 127.0.0.1@53
	do-ip6: no
	username: ""
	chroot: ""
	zonesdir: "$d"
	database: ""
	zonelistfile: "$d/zone.list"
	xfrdfile: "$d/xfrd.state"
	xfrdir: "$d"
	pidfile: "$d/nsd.pid"
	logfile: "$d/nsd.log"
	server-count: 1
	verbosity: 1
remote-control:
	control-enable: no
zone:
	name: dane.test.
	zonefile: dane.test.signed
zone:
	name: bogus.dane.test.
	zonefile: bogus.dane.test.signed
zone:
	name: plain.test.
	zonefile: plain.test.zone
EOF
	ip netns exec "$ns" nsd -d -c "$d/nsd.conf" >"$MP_TMP/nsd.log" 2>&1 &
	MP_PIDS+=($!)

	dane_unbound_conf "$d/unbound.conf" 5302 'validator iterator' \
		"trust-anchor-file: \"$DANE_TA\""
	dane_unbound_conf "$d/unbound-noval.conf" 5303 'iterator' ''
	ip netns exec "$ns" unbound -d -c "$d/unbound.conf" >"$MP_TMP/unbound.log" 2>&1 &
	MP_PIDS+=($!)
	ip netns exec "$ns" unbound -d -c "$d/unbound-noval.conf" \
		>"$MP_TMP/unbound-noval.log" 2>&1 &
	MP_PIDS+=($!)

	DANE_NSD=127.0.0.1@53
	DANE_RESOLVER=127.0.0.1@5302
	DANE_NOVAL=127.0.0.1@5303
	DANE_DEAD=127.0.0.1@5399
	mp_wait_for 10 dane_answers "$ns" 53 mx.dane.test || mp_fail "dane: nsd does not answer"
	mp_wait_for 10 dane_answers "$ns" 5302 mx.dane.test || mp_fail "dane: unbound does not answer"
	mp_wait_for 10 dane_answers "$ns" 5303 mx.dane.test ||
		mp_fail "dane: the iterator-only unbound does not answer"
	export DANE_CERT DANE_SPKI_SHA256 DANE_CERT_SHA512 DANE_TA
	export DANE_NSD DANE_RESOLVER DANE_NOVAL DANE_DEAD
}

# dane_unbound_conf FILE PORT MODULES EXTRA: an unbound for the rig,
# root in its own directory, foreground, no remote control.
dane_unbound_conf() {
	cat >"$1" <<EOF
server:
	do-daemonize: no
	interface: 127.0.0.1@$2
	port: $2
	do-ip6: no
	chroot: ""
	username: ""
	directory: "$MP_TMP/dane"
	pidfile: ""
	use-syslog: no
	logfile: ""
	verbosity: 1
	val-log-level: 2
	do-not-query-localhost: no
	module-config: "$3"
	val-permissive-mode: no
	local-zone: "test." nodefault
	$4
remote-control:
	control-enable: no
stub-zone:
	name: "dane.test."
	stub-addr: 127.0.0.1@53
stub-zone:
	name: "plain.test."
	stub-addr: 127.0.0.1@53
EOF
}

# dane_answers NS PORT NAME: the server at 127.0.0.1@PORT in NS answers
# an A query for NAME with NOERROR (python: no dig on this machine).
dane_answers() {
	ip netns exec "$1" python3 - "$2" "$3" <<'PY'
import socket, struct, sys
port, name = int(sys.argv[1]), sys.argv[2]
q = struct.pack(">HHHHHH", 0x4d50, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
q += struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
s.sendto(q, ("127.0.0.1", port))
r = s.recv(4096)
sys.exit(0 if (r[3] & 0x0f) == 0 and struct.unpack(">H", r[6:8])[0] > 0 else 1)
PY
}

# dane_ad NS PORT NAME TYPE: print the AD bit (0 or 1) of the answer the
# server at 127.0.0.1@PORT in NS gives to a DO query for NAME/TYPE.
dane_ad() {
	ip netns exec "$1" python3 - "$2" "$3" "$4" <<'PY'
import socket, struct, sys
port, name, qtype = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
# RD and AD set (RFC 6840 5.7: AD in a query asks for the AD bit back)
q = struct.pack(">HHHHHH", 0x4d51, 0x0120, 1, 0, 0, 1)
q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
q += struct.pack(">HH", qtype, 1)
q += b"\0" + struct.pack(">HHIH", 41, 1232, 0x8000, 0)  # OPT, DO
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(q, ("127.0.0.1", port))
r = s.recv(4096)
print((r[3] >> 5) & 1)
PY
}
