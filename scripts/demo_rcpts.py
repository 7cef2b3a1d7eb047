#!/usr/bin/env python3
"""Recipients of the demo campaign (scripts/demo): appointment reminders.

usage: demo_rcpts.py N OUT_DIR

Writes OUT_DIR/rcpts.csv (email plus merge fields: first, last, org, with,
date, time, ref) and OUT_DIR/boxes (the addresses the demo's Postfix has a
mailbox for, one a line). The recipients are spread over the demo domains
in fixed shares, so every TLS case and every kind of outcome shows up:
DOMAINS below says which domain plays which part. The same N always gives
the same recipients (seeded) in the same shuffled order; no address
repeats.
"""
import os
import random
import sys

# domain, share of N, organisation, who the appointment is with, mailbox?
DOMAINS = [
    ("clinic-a.test", 0.32, "Clinic A", ["Dr. Okafor", "Dr. Lindqvist", "Dr. Haddad"], True),
    ("bank.test", 0.20, "Bank of Test", ["your advisor Ms. Moreau", "your advisor Mr. Ito"], True),
    ("pharmacy.test", 0.15, "Corner Pharmacy", ["the pharmacist"], True),
    ("lab.test", 0.10, "City Lab", ["the sampling desk"], True),
    ("nostarttls.test", 0.15, "Old Town Dental", ["Dr. Brandt"], True),
    ("badcert.test", 0.05, "Eye Care Centre", ["Dr. Silva"], True),
    # no mailbox: Postfix answers 550 to RCPT
    ("pharmacy.test", 0.02, "Corner Pharmacy", ["the pharmacist"], False),
    # null MX (RFC 7505): bounced without a connection
    ("retired-clinic.test", 0.01, "Retired Clinic", ["nobody"], False),
]

FIRST = ["Ada", "Ben", "Chloe", "Daniel", "Emma", "Farid", "Grace", "Hugo", "Ines",
         "Jonas", "Kira", "Liam", "Maya", "Noah", "Olga", "Pavel", "Quinn", "Rosa",
         "Sami", "Tara", "Umar", "Vera", "Wen", "Xavier", "Yara", "Zoe"]
LAST = ["Adams", "Becker", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Horvat",
        "Ivanova", "Jensen", "Kowalski", "Larsen", "Moreau", "Nakamura", "Okafor",
        "Petrov", "Quispe", "Rossi", "Schmidt", "Tanaka", "Umarov", "Varga", "Weber",
        "Xu", "Yilmaz", "Zimmer"]
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri"]
MONTHS = ["Jan", "Feb", "Mar"]


def main():
    if len(sys.argv) != 3 or not sys.argv[1].isdigit() or int(sys.argv[1]) < 100:
        sys.exit("usage: demo_rcpts.py N OUT_DIR   (N >= 100)")
    n, out = int(sys.argv[1]), sys.argv[2]
    rng = random.Random(6)
    counts = [int(n * share) for _, share, _, _, _ in DOMAINS]
    counts[0] += n - sum(counts)
    seen = set()
    rows = []
    with open(os.path.join(out, "boxes"), "w") as boxes:
        for (dom, _, org, withs, box), count in zip(DOMAINS, counts):
            for i in range(count):
                first, last = rng.choice(FIRST), rng.choice(LAST)
                local = "%s.%s.%d" % (first.lower(), last.lower(), len(seen) + 1)
                if not box and dom == "pharmacy.test":
                    local = "moved-away." + local
                addr = "%s@%s" % (local, dom)
                seen.add(addr)
                date = "%s %d %s 2027" % (rng.choice(DAYS), rng.randint(1, 28), rng.choice(MONTHS))
                time = "%02d:%02d" % (rng.randint(8, 17), rng.choice((0, 15, 30, 45)))
                ref = "%s-%06d" % (dom.split(".")[0][:3].upper(), rng.randint(0, 999999))
                rows.append("%s,%s,%s,%s,%s,%s,%s,%s\n" % (
                    addr, first, last, org, rng.choice(withs), date, time, ref))
                if box:
                    boxes.write(addr + "\n")
    # a real list is not sorted by domain: all domains progress together
    rng.shuffle(rows)
    with open(os.path.join(out, "rcpts.csv"), "w") as csv:
        csv.write("email,first,last,org,with,date,time,ref\n")
        csv.writelines(rows)


if __name__ == "__main__":
    main()
