#!/usr/bin/env bash
# ctl_dane against a signed zone: dane_lib.sh's rig (nsd serving
# dane.test. signed by ldns-signzone, a bogus child, unsigned plain.test.;
# a validating unbound and an iterator-only one) in a namespace of its
# own, then the C test inside that namespace with the addresses, the
# trust anchor and the certificate digests in its environment.
# usage: ctl_dane.sh TEST_CTL_DANE
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dane_lib.sh"
mp_need_root
mp_need ip
BIN=$1
NS=mpdane$MP_SUFFIX
mp_netns "$NS"
dane_rig_start "$NS"
# the premise of the AD check in the C test: the validating unbound does
# set AD on dane.test.'s TLSA, the iterator-only one and nsd do not
[ "$(dane_ad "$NS" 5302 _25._tcp.mx.dane.test 52)" = 1 ] ||
	mp_fail "the validating unbound does not set AD on dane.test."
[ "$(dane_ad "$NS" 5302 _25._tcp.mx.plain.test 52)" = 0 ] ||
	mp_fail "the validating unbound sets AD on unsigned plain.test."
[ "$(dane_ad "$NS" 5303 _25._tcp.mx.dane.test 52)" = 0 ] ||
	mp_fail "the iterator-only unbound sets AD"
ip netns exec "$NS" timeout 240 "$BIN" >"$MP_TMP/test.log" 2>&1
rc=$?
cat "$MP_TMP/test.log"
[ $rc -eq 0 ] || mp_fail "test_ctl_dane exited $rc"
echo "ctl_dane: ok"
