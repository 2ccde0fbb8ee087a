"""Writes the agent's link order from callgrind profiles.

    python3 examples/bench/link_order.py BINARY OUT PROFILE...

Each PROFILE is a callgrind output file of BINARY recorded with
`--demangle=no`, one per phase of the workload (start-up and idle first). OUT
gets one symbol a line: the functions that ran in the first phase, the most
instructions first, then those that first ran in the second phase, and so on.
A feature's code thus sits in a block of its own, and an agent that never uses
a feature never maps that block. `agent/build.rs` hands the file to the linker
(see the file's header). Prints how many symbols were written.
"""

import collections
import re
import subprocess
import sys

HEADER = """\
# The agent's link order: the functions that ran under a profiled workload
# (start-up and idle health checks, OTLP over gRPC, over HTTP, RUM beacons,
# scrapes, database and cache checks), phase by phase, the hottest first
# within each. agent/build.rs passes it to lld as --symbol-ordering-file so
# that code sits together: the kernel maps a binary's text 64 KiB at a time,
# and this code scattered over the 15 MB text kept ~10 MiB of it resident.
# Names that no longer exist are skipped, so a stale list costs memory, not
# correctness. Regenerate with: bash examples/bench/link-order.sh
"""


def self_costs(profile):
    """Self instructions per function name in a callgrind file."""
    names = {}
    costs = collections.Counter()
    current = None
    after_call = False
    with open(profile, errors="replace") as lines:
        for line in lines:
            line = line.rstrip("\n")
            # fn=(id) name, cfn=(id) name; the name only on first use.
            named = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line)
            if named:
                kind, key, name = named.groups()
                if name:
                    # A recursive call shows as name'2 (--separate-recs).
                    names[key] = re.sub(r"'\d+$", "", name)
                if kind == "fn":
                    current = names[key]
                continue
            if line.startswith("calls="):
                # The next cost line is the callee's inclusive cost.
                after_call = True
                continue
            if line and (line[0].isdigit() or line[0] in "+-*"):
                if after_call:
                    after_call = False
                    continue
                fields = line.split()
                if current is not None and len(fields) >= 2:
                    costs[current] += int(fields[1])
    return costs


def code_symbols(binary):
    """Names of the functions BINARY defines."""
    table = subprocess.run(
        ["nm", "--defined-only", binary], capture_output=True, text=True, check=True
    ).stdout
    symbols = set()
    for row in table.splitlines():
        fields = row.split()
        if len(fields) == 3 and fields[1] in "tTwW":
            symbols.add(fields[2])
    return symbols


def main():
    binary, out, *profiles = sys.argv[1:]
    symbols = code_symbols(binary)
    ran = []
    listed = set()
    for profile in profiles:
        for name, _ in self_costs(profile).most_common():
            if name in symbols and name not in listed:
                ran.append(name)
                listed.add(name)
    with open(out, "w") as order:
        order.write(HEADER)
        order.writelines(name + "\n" for name in ran)
    print(len(ran))


if __name__ == "__main__":
    main()
