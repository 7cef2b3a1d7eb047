#!/usr/bin/env python3
"""Embed the Redis Lua scripts in C: one `const char ctl_lua_<name>[]` per
script, <name> being the script's file name without .lua, defined in the
generated .c and declared in the generated .h (with the first sentence of
the script's opening comment as its description). The text is kept byte
for byte, a newline added at the end if the file lacks one.

A script is embedded as it stands, with one directive: a line

    -- @include lib_x.lua

is replaced by the text of lib_x.lua, a file next to the including one
(a bare file name, no directory), written exactly so, from the start of
the line. Snippets may include others; a file including itself, directly
or through others, is an error, as is a missing file or any other line
whose comment starts with "@" (a misspelt or indented directive must not
pass as a comment). On an error nothing is written.

usage: embed.py --c OUT.c --h OUT.h [--depfile FILE] SCRIPT.lua...
exit: 0 written, 1 a script error (file:line: message), 2 usage/IO error
"""
import os
import re
import sys
import textwrap

DIRECTIVE = re.compile(r'^\s*--\s*@')
INCLUDE = re.compile(r'^-- @include ([A-Za-z0-9_.-]+\.lua)\s*$')
NAME = re.compile(r'^[a-z][a-z0-9_]*$')


class ScriptError(Exception):
    pass


def lines_of(text):
    """text cut after each newline, and only there (str.splitlines also
    cuts at form feeds and other separators, which would add bytes)."""
    parts = text.split("\n")
    rows = [p + "\n" for p in parts[:-1]]
    return rows + [parts[-1] + "\n"] if parts[-1] else rows


def expand(path, stack, read):
    """The text of path with its includes spliced; read collects every
    file opened (for the depfile). stack holds the files being expanded."""
    real = os.path.realpath(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            lines = lines_of(f.read())
    except OSError as e:
        raise ScriptError("%s: %s" % (path, e.strerror))
    except UnicodeDecodeError:
        raise ScriptError("%s: not UTF-8" % path)
    read.add(real)
    out = []
    for no, line in enumerate(lines, 1):
        if not DIRECTIVE.match(line):
            out.append(line)
            continue
        m = INCLUDE.match(line)
        if m is None:
            raise ScriptError("%s:%d: unknown directive (expected "
                              "'-- @include FILE.lua'): %s"
                              % (path, no, line.rstrip("\n")))
        inc = os.path.join(os.path.dirname(path), m.group(1))
        if not os.path.isfile(inc):
            raise ScriptError("%s:%d: @include %s: no such file next to it"
                              % (path, no, m.group(1)))
        chain = stack + [real, os.path.realpath(inc)]
        if chain[-1] in chain[:-1]:
            raise ScriptError("%s:%d: recursive include: %s" % (path, no,
                              " -> ".join(os.path.basename(p) for p in chain)))
        out.append(expand(inc, stack + [real], read))
    return "".join(out)


def c_string(text):
    """text as C string literal lines, one per script line."""
    rows = []
    for line in lines_of(text):
        s = ['\t"']
        for b in line.encode("utf-8"):
            ch = chr(b)
            if ch == "\n":
                s.append("\\n")
            elif ch in '"\\':
                s.append("\\" + ch)
            elif ch == "?":
                s.append("\\?")          # no trigraphs
            elif 0x20 <= b < 0x7f:
                s.append(ch)
            else:
                s.append("\\%03o" % b)   # three digits: never runs on
        s.append('"')
        rows.append("".join(s))
    return "\n".join(rows) if rows else '\t""'


def summary(name, text):
    """First sentence of the opening comment, for the header."""
    words = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        words.append(line[2:].strip())
    s = " ".join(words)
    if s.startswith(name + ":"):
        s = s[len(name) + 1:].strip()
    m = re.match(r'(.*?\.)(\s|$)', s)
    return (m.group(1) if m else s).replace("*/", "* /")


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv):
    out_c = out_h = depfile = None
    scripts = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--c", "--h", "--depfile") and i + 1 < len(argv):
            if a == "--c":
                out_c = argv[i + 1]
            elif a == "--h":
                out_h = argv[i + 1]
            else:
                depfile = argv[i + 1]
            i += 2
            continue
        if a.startswith("-"):
            print("embed.py: unknown option %s" % a, file=sys.stderr)
            return 2
        scripts.append(a)
        i += 1
    if out_c is None or out_h is None or not scripts:
        print(__doc__.strip().split("\n\n")[-1], file=sys.stderr)
        return 2

    read = set()
    embedded = []
    try:
        for s in scripts:
            name = os.path.basename(s)
            if not name.endswith(".lua") or not NAME.match(name[:-4]):
                raise ScriptError("%s: a script is named [a-z][a-z0-9_]*.lua" % s)
            if any(n == name[:-4] for n, _, _ in embedded):
                raise ScriptError("%s: a second script named %s" % (s, name))
            embedded.append((name[:-4], name, expand(s, [], read)))
    except ScriptError as e:
        print("embed.py: %s" % e, file=sys.stderr)
        return 1

    guard = re.sub(r'[^A-Z0-9]', '_', os.path.basename(out_h).upper())
    top = "/* Generated by control/lua/embed.py from the control/lua scripts: edit those. */"
    h = [top,
         "#ifndef %s" % guard, "#define %s" % guard, ""]
    c = [top,
         '#include "%s"' % os.path.basename(out_h)]
    for sym, name, text in embedded:
        h += textwrap.wrap("%s: %s */" % (name, summary(name, text)), 76,
                           initial_indent="/** ", subsequent_indent=" * ")
        h.append("extern const char ctl_lua_%s[];" % sym)
        c.append("")
        c.append("/* %s */" % name)
        c.append("const char ctl_lua_%s[] =" % sym)
        c.append(c_string(text) + ";")
    h += ["", "#endif", ""]
    c.append("")
    try:
        write(out_h, "\n".join(h))
        write(out_c, "\n".join(c))
        if depfile:
            write(depfile, "%s: %s\n" % (out_c.replace(" ", "\\ "),
                  " ".join(sorted(p.replace(" ", "\\ ") for p in read))))
    except OSError as e:
        print("embed.py: %s: %s" % (e.filename, e.strerror), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
