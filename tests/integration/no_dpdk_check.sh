#!/usr/bin/env bash
# The layering check the build runs (scripts/no-dpdk-includes) catches a
# DPDK header included directly, through a chain of project headers, and
# with the include spelled <dpdk/...>; ignores one inside a comment; and
# passes the real DPDK-free folders.
# usage: no_dpdk_check.sh CHECKER SOURCE_ROOT
. "$(dirname "$0")/lib.sh"
CHK=$1
SRC=$2
T=$MP_TMP
mkdir -p "$T/inc"
printf '#include <stdio.h>\n#include "b.h"\n' >"$T/inc/a.h"
printf '#include <rte_ring.h>\n' >"$T/inc/b.h"
printf '#include <string.h>\n#include "a.h"\nint x;\n' >"$T/chain.c"
printf '#include <rte_mbuf.h>\n' >"$T/direct.c"
printf '#include <dpdk/rte_config.h>\n' >"$T/spelled.c"
printf '/* #include <rte_mbuf.h> */\n// #include <rte_ring.h>\n#include <stdlib.h>\n' >"$T/comment.c"

out=$("$CHK" -I "$T/inc" "$T/chain.c" 2>&1) && mp_fail "chain through project headers passed"
grep -q 'chain.c -> .*a.h -> .*b.h -> <rte_ring.h>' <<<"$out" || mp_fail "chain not shown: $out"
"$CHK" "$T/direct.c" 2>/dev/null && mp_fail "direct include passed"
"$CHK" "$T/spelled.c" 2>/dev/null && mp_fail "<dpdk/...> passed"
"$CHK" --stamp "$T/s" --depfile "$T/d" "$T/comment.c" || mp_fail "an include in a comment failed"
[ -s "$T/s" ] && grep -q comment.c "$T/d" || mp_fail "no stamp or depfile"
# the real folders
"$CHK" -I "$SRC/include" "$SRC"/dataplane/{common,msg,smtp,tls,tcp,transport}/*.c ||
	mp_fail "a DPDK-free dataplane folder includes DPDK"
"$CHK" -I "$SRC/include" -I "$SRC/control" "$SRC"/control/*.c || mp_fail "control/ includes DPDK"
"$CHK" -I "$SRC/include" "$SRC/dataplane/net/dp_tcp.c" 2>/dev/null && mp_fail "net/ (DPDK) passed"
echo "no_dpdk_check: ok"
