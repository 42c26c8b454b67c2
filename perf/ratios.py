#!/usr/bin/env python3
"""Per-round ratios of a report.py run against one of its servers.

    python3 perf/ratios.py perf/results/2026-12-07-0626 echo-1 [--part echo|http|kv]

report.py runs every server once per round, one after the other, so the
servers of one round see the same state of the machine. For every cell and
every other server this prints the median over the rounds of the per-round
ratio to BASE (per core, raw requests/s, p99), and the per-core ratio of
each round: on a noisy machine these are steadier than a ratio of medians.
The README's data-path figures come from it. --machine divides the whole
machine's busy CPU per request instead of the server's (runs since the
machine_us_per_req field): requests per busy core of the machine, which the
kernel's accounting of loopback softirq work does not move from one side to
the other.
"""
import argparse
import json
import os
import statistics
import sys


def ratio(a, b, key):
    return a.get(key, 0.0) / b[key] if b.get(key) else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a perf/results/ directory (or its results.json)")
    ap.add_argument("base", help="the server the others are divided by, e.g. echo-1, http-1")
    ap.add_argument("--part", default=None, help="echo, http or kv (default: every part that has BASE)")
    ap.add_argument("--machine", action="store_true",
                    help="per busy core of the whole machine (server, load and softirq) instead of per server core")
    args = ap.parse_args()
    path = args.run if args.run.endswith(".json") else os.path.join(args.run, "results.json")
    with open(path) as f:
        report = json.load(f)
    parts = [args.part] if args.part else ["echo", "http", "kv"]
    printed = False
    for part in parts:
        for cell, c in (report.get(part) or {}).items():
            runs = c["runs"]
            if args.base not in runs:
                continue
            base = runs[args.base]
            for name, mine in runs.items():
                if name == args.base:
                    continue
                if args.machine:  # fewer machine µs per request is better: base / mine
                    pc = [ratio(b, a, "machine_us_per_req") for a, b in zip(mine, base)]
                else:
                    pc = [ratio(a, b, "per_core") for a, b in zip(mine, base)]
                raw = statistics.median(ratio(a, b, "rps") for a, b in zip(mine, base))
                p99 = statistics.median(ratio(a, b, "p99_us") for a, b in zip(mine, base))
                rounds = " ".join(f"{x:.2f}" for x in pc)
                label = "per machine core" if args.machine else "per core"
                print(f"{part:5s} {cell:16s} {name:14s} {label} {statistics.median(pc):.2f} [{rounds}]  "
                      f"raw {raw:.2f}  p99 {p99:.2f}")
                printed = True
    if not printed:
        print(f"{path}: no cell has the server {args.base}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
