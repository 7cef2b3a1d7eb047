#!/usr/bin/env python3
"""Embed the shipped bounce rules (rules.conf) in C as
`const char ctl_bounce_builtin[]` (declared in ctl_bounce.h), byte for byte.

usage: embed.py RULES.conf OUT.c
"""
import sys


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        text = open(argv[0], encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as e:
        print("embed.py: %s: %s" % (argv[0], e), file=sys.stderr)
        return 2
    out = ['/* generated from control/bounce/rules.conf by embed.py: do not edit */',
           '#include "ctl_bounce.h"', '', 'const char ctl_bounce_builtin[] =']
    for line in text.splitlines(True):
        esc = line.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        out.append('\t"%s"' % esc)
    out[-1] += ";" if len(out) > 4 else ""
    if len(out) == 4:
        out.append('\t"";')
    with open(argv[1], "w") as f:
        f.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
