# shellcheck shell=bash
# Checks shared by the tests that send into the Postfix harness
# (postfix_tls.sh with mp-smtpsend, dpsend_postfix.sh with mp-dpsend);
# sourced after lib.sh and postfix.sh.
#
#   pf_make_traps DIR
#       DIR/traps.eml: a message whose body is full of dot-stuffing traps
#       (lone ".", "..", leading dots, a 998-octet line and one that
#       stuffing makes 999, a final "." line); traps-crlf.eml the same
#       with CRLF, traps-nonl.eml without the final newline.
#   pf_run NAME RC NS SENDER ARGS...
#       one sender run (ip netns exec NS SENDER ARGS...): its JSON lines
#       into $OUT, its stderr into $PF_RUN_LOG ($MP_TMP/run<k>.json and
#       .log, k counted in $PF_RUN); the test fails unless it exits RC and
#       its last line is the summary.
#   pf_check JSON MAILDIR NAME PYTHON
#       run PYTHON (asserts) over the JSON lines of one mp-smtpsend /
#       mp-dpsend run (send_check in mpcheck.py): r = recipient records,
#       s = summary, M = maildir root; helpers files(addr), count(domain),
#       message(addr) (its one message: trace headers, and the message as
#       the client sent it), untrace(bytes), path(file) / read(file) /
#       addrs(file) (path, bytes, address lines of a file beside JSON),
#       exact(addrs, src_bytes, tls=None) (each delivered once, byte-exact),
#       verified_bulk(n, sessions, per_conn) (all delivered over verified
#       TLS 1.3), tls_refused(reason) (all deferred at stage tls for that
#       reason), resumed() (the second of two sessions resumed), fail(msg).
#   pf_no_bare_lf DIR
#       the test fails if that Postfix instance logged a bare LF from a
#       client (every sender must end its lines with CRLF).

pf_make_traps() {
	python3 - "$1" <<'PY'
import sys
d = sys.argv[1]
body = [
    b".", b"..", b"...", b".leading dot", b" .space then dot", b"ends with a dot.",
    b".\t.tab", b"x" * 998, b"." + b"y" * 997, b"." * 500, b"", b"", b"after two blank lines",
    b"=2E not an escape", b"From the beginning of a line", b"-- ", b"last line before a final dot", b".",
]
head = [
    b"From: Mailpump Test <sender@pf.test>",
    b"To: Undisclosed recipients:;",
    b"Subject: dot-stuffing traps",
    b"Date: Tue, 01 Dec 2026 12:00:00 +0000",
    b"Message-ID: <traps@pf.test>",
    b"MIME-Version: 1.0",
    b"Content-Type: text/plain; charset=us-ascii",
]
lf = b"\n".join(head) + b"\n\n" + b"\n".join(body) + b"\n"
open(d + "/traps.eml", "wb").write(lf)
open(d + "/traps-crlf.eml", "wb").write(lf.replace(b"\n", b"\r\n"))
open(d + "/traps-nonl.eml", "wb").write(lf[:-1])
PY
}

PF_RUN=0
pf_run() {
	local name=$1 want=$2 ns=$3 prog=$4 rc
	shift 3
	PF_RUN=$((PF_RUN + 1))
	OUT=$MP_TMP/run$PF_RUN.json
	PF_RUN_LOG=$MP_TMP/run$PF_RUN.log
	ip netns exec "$ns" "$@" >"$OUT" 2>"$PF_RUN_LOG"
	rc=$?
	[ $rc -eq "$want" ] || mp_fail "$name: ${prog##*/} exited $rc"
	tail -1 "$OUT" | grep -q '"summary"' || mp_fail "$name: no summary line"
}

pf_check() {
	mp_py -c 'import sys, mpcheck; mpcheck.send_check(*sys.argv[1:])' "$1" "$2" "$3" "$4" ||
		mp_fail "$3 (see $1)"
}

pf_no_bare_lf() {
	! grep -q 'bare <LF>\|bare newline' "$(pf_log "$1")" || mp_fail "Postfix saw bare LF from the client"
}
