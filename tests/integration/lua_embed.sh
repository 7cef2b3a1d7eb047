#!/usr/bin/env bash
# The Lua embedder (control/lua/embed.py) splices "-- @include" snippets,
# nested, in place of the directive; the C strings it writes compile and
# hold the script byte for byte (quotes, backslashes, tabs, a form feed, "??", UTF-8);
# the depfile names the snippets. It refuses, writing nothing, a missing
# include file, a recursive include (through another file and of itself)
# and a misspelt or indented directive.
# usage: lua_embed.sh EMBED_PY   (CC: the C compiler, default cc)
. "$(dirname "$0")/lib.sh"
EMBED=$1
CC=${CC:-cc}
T=$MP_TMP

# --- a script with a nested include ---
printf -- '-- lib_b.lua: the inner snippet\nlocal b = 2\n' >"$T/lib_b.lua"
printf -- '-- lib_a.lua: the outer snippet\n-- @include lib_b.lua\nlocal a = 1\n' >"$T/lib_a.lua"
printf -- '-- main.lua: a script. Its KEYS: none.\n-- @include lib_a.lua\nreturn "q\\\\ \t\f??= \xc3\xa9" .. a .. b\n' >"$T/main.lua"
printf -- '-- plain.lua: no include\nreturn 1\n' >"$T/plain.lua"
# what the embedded main must be: lib_a (with lib_b in it) at the directive
{
	printf -- '-- main.lua: a script. Its KEYS: none.\n'
	printf -- '-- lib_a.lua: the outer snippet\n-- lib_b.lua: the inner snippet\nlocal b = 2\nlocal a = 1\n'
	printf -- 'return "q\\\\ \t\f??= \xc3\xa9" .. a .. b\n'
	printf -- '-- plain.lua: no include\nreturn 1\n'
} >"$T/want"

"$EMBED" --c "$T/out.c" --h "$T/out.h" --depfile "$T/out.d" "$T/main.lua" "$T/plain.lua" \
	2>"$T/embed.log" || mp_fail "embed of main.lua and plain.lua failed"
grep -q '@include' "$T/out.c" && mp_fail "a directive was left in the C string"
grep -qx 'extern const char ctl_lua_main\[\];' "$T/out.h" || mp_fail "no ctl_lua_main in out.h"
grep -qx 'extern const char ctl_lua_plain\[\];' "$T/out.h" || mp_fail "no ctl_lua_plain in out.h"
grep -q 'main.lua: a script\. \*/' "$T/out.h" || mp_fail "main's first sentence not in out.h"
for f in main.lua lib_a.lua lib_b.lua plain.lua; do
	grep -q "/$f" "$T/out.d" || mp_fail "depfile does not name $f: $(cat "$T/out.d")"
done
cat >"$T/show.c" <<'EOF'
#include <stdio.h>
#include "out.h"
int main(void) { fputs(ctl_lua_main, stdout); fputs(ctl_lua_plain, stdout); return 0; }
EOF
# shellcheck disable=SC2086  # CC may be a command with arguments
$CC -std=gnu11 -Wall -Wextra -Werror -I"$T" -o "$T/show" "$T/show.c" "$T/out.c" \
	>"$T/cc.log" 2>&1 || mp_fail "the generated C does not compile"
"$T/show" >"$T/got" || mp_fail "show failed"
cmp -s "$T/want" "$T/got" || mp_fail "embedded text differs: $(diff "$T/want" "$T/got")"

# refused: exit 1, a message naming the file (and line), nothing written
refused() {
	local what=$1 pattern=$2
	shift 2
	rm -f "$T/bad.c" "$T/bad.h" "$T/bad.d"
	"$EMBED" --c "$T/bad.c" --h "$T/bad.h" --depfile "$T/bad.d" "$@" 2>"$T/err"
	local rc=$?
	[ "$rc" = 1 ] || mp_fail "$what: exit $rc, expected 1"
	grep -q -- "$pattern" "$T/err" || mp_fail "$what: message '$(cat "$T/err")' lacks '$pattern'"
	[ -e "$T/bad.c" ] || [ -e "$T/bad.h" ] || [ -e "$T/bad.d" ] &&
		mp_fail "$what: output written"
	return 0
}

printf -- '-- missing.lua\n-- @include lib_none.lua\nreturn 1\n' >"$T/missing.lua"
refused "missing include" 'missing.lua:2: @include lib_none.lua: no such file' \
	"$T/plain.lua" "$T/missing.lua"

printf -- '-- @include lib_r2.lua\n' >"$T/lib_r1.lua"
printf -- '-- @include lib_r1.lua\n' >"$T/lib_r2.lua"
printf -- '-- loop.lua\n-- @include lib_r1.lua\nreturn 1\n' >"$T/loop.lua"
refused "recursive include" 'recursive include: loop.lua -> lib_r1.lua -> lib_r2.lua -> lib_r1.lua' \
	"$T/loop.lua"

printf -- '-- @include lib_self.lua\n' >"$T/lib_self.lua"
printf -- '-- self.lua\n-- @include lib_self.lua\nreturn 1\n' >"$T/self.lua"
refused "self include" 'recursive include: self.lua -> lib_self.lua -> lib_self.lua' "$T/self.lua"

printf -- '-- typo.lua\n-- @inclde lib_a.lua\nreturn 1\n' >"$T/typo.lua"
refused "misspelt directive" 'typo.lua:2: unknown directive' "$T/typo.lua"
printf -- '-- indent.lua\nif x then\n  -- @include lib_a.lua\nend\n' >"$T/indent.lua"
refused "indented directive" 'indent.lua:3: unknown directive' "$T/indent.lua"
printf -- '-- path.lua\n-- @include ../lib_a.lua\n' >"$T/path.lua"
refused "include with a directory" 'path.lua:2: unknown directive' "$T/path.lua"

echo "lua_embed: ok"
