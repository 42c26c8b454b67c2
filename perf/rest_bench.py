#!/usr/bin/env python3
"""The REST sample (ringshard-links) under wrk against its own /plaintext, on
one shard: what a template route, a query parameter, an answer from an
actor, JSON and the middleware cost per request.

Each round runs every endpoint once, in turn (interleaved, so the machine's
drift hits all alike), with `wrk -t1 -c<connections> -d<duration>s`; the
server is pinned to one CPU and wrk to another. Per core = requests/s over
the server's CPU seconds per wall second. Prints the median of the rounds
per endpoint and its ratio to /plaintext's median.

usage: rest_bench.py --bin build-rel/bin [--rounds 5] [--duration 3] [--connections 64]
       [--server-cpu 0] [--load-cpu 1]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402  (cpu_seconds, parse_wrk, taskset)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="directory with a Release ringshard-links")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--load-cpu", default="1")
    args = ap.parse_args()

    server = subprocess.Popen(report.taskset(args.server_cpu) +
                              [os.path.join(args.bin, "ringshard-links"), "--shards", "1", "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = server.stdout.readline().decode()
        if not line.startswith("listening on "):
            raise RuntimeError("ringshard-links did not start")
        base = "http://" + line.split()[-1]
        req = urllib.request.Request(base + "/links", data=json.dumps({"url": "https://example.org/a"}).encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            link = json.load(r)["id"]
        endpoints = [
            ("/plaintext", "exact route, direct answer"),
            (f"/links/{link}/stats", "template, ask to the store actor, JSON"),
            (f"/l/{link}?preview=1", "template + query parameter, ask, JSON"),
            (f"/l/{link}", "template, ask, 302 redirect"),
        ]
        runs = {path: [] for path, _ in endpoints}
        for rnd in range(args.rounds):
            for path, _ in endpoints:
                argv = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency", base + path]
                cpu0 = report.cpu_seconds(server.pid)
                t0 = time.monotonic()
                p = subprocess.run(report.taskset(args.load_cpu) + argv, capture_output=True, text=True, timeout=120)
                wall = time.monotonic() - t0
                cpu = report.cpu_seconds(server.pid) - cpu0
                r = report.parse_wrk(p.returncode, p.stdout, p.stderr)
                if not r["p50_us"]:  # wrk 4 prints "50%", wrk2 "50.000%"
                    m = re.search(r"^\s+50%\s+(\S+)", p.stdout, re.M)
                    r["p50_us"] = report.latency_us(m.group(1)) if m else 0.0
                r["server_cores"] = cpu / wall
                r["per_core"] = r["rps"] / r["server_cores"] if r["server_cores"] > 0 else 0.0
                runs[path].append(r)
                print(f"round {rnd + 1} {path:28s} {r['rps']:10.0f} req/s  server {r['server_cores']:.2f} cores  "
                      f"per core {r['per_core']:10.0f}  p50 {r['p50_us']:.0f} us", file=sys.stderr, flush=True)
        med = {path: {k: statistics.median(x[k] for x in rs) for k in ("rps", "server_cores", "per_core", "p50_us")}
               for path, rs in runs.items()}
        base_per_core = med["/plaintext"]["per_core"]
        print(f"ringshard-links, 1 shard, wrk -t1 -c{args.connections} -d{args.duration}s, "
              f"medians of {args.rounds} interleaved rounds")
        print(f"{'endpoint':36s} {'req/s':>10s} {'server cores':>13s} {'per core':>10s} {'vs /plaintext':>14s} {'p50':>8s}")
        for path, what in endpoints:
            m = med[path]
            shown = path.replace(link, "{id}")
            print(f"{shown:36s} {m['rps']:10.0f} {m['server_cores']:13.2f} {m['per_core']:10.0f} "
                  f"{m['per_core'] / base_per_core:14.2f} {m['p50_us']:6.0f}us   {what}")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        print(f"rest_bench: {e}", file=sys.stderr)
        sys.exit(1)
