#!/usr/bin/env python3
"""CPU and memory of a process group, for contenders made of many
processes (Postfix): prints "TICKS RSS_KIB NPROC" where TICKS is utime +
stime of every live member plus cutime + cstime of the group leader (what
it reaped), so the difference of two readings counts processes that
started or exited in between exactly once. RSS_KIB is the sum of the
members' VmRSS (shared pages counted in each process).

usage: procstat.py PGID
"""
import os
import sys


def main():
    pgid = int(sys.argv[1])
    ticks = rss = n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                st = f.read()
            fields = st[st.rindex(")") + 2:].split()
            if int(fields[2]) != pgid:
                continue
            ticks += int(fields[11]) + int(fields[12])
            if int(pid) == pgid:
                ticks += int(fields[13]) + int(fields[14])
            with open("/proc/%s/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
            n += 1
        except (OSError, ValueError, IndexError):
            continue
    print(ticks, rss, n)


if __name__ == "__main__":
    main()
