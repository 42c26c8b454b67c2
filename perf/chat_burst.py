#!/usr/bin/env python3
"""ringshard-chat after a burst: N clients connect at once, each sends one
line (which goes to the N - 1 others), none reads, then all leave (every
second one with a reset). Prints the server's RSS idle, at the peak of the
burst, and 6 s after everyone left, for each round. The idle Room gives
memory back 200 ms after its shard's last client left.

usage: chat_burst.py --bin build-release/bin [--clients 3000] [--rounds 2] [--shards 2]
"""
import argparse
import os
import resource
import socket
import struct
import subprocess
import time

from report import rss_kib  # perf/report.py: RSS of a process tree, in KiB


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--clients", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--shards", type=int, default=2)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.clients + 256)), hard))
    server = subprocess.Popen([os.path.join(args.bin, "ringshard-chat"), "--shards", str(args.shards), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(server.stdout.readline().strip().rsplit(":", 1)[1])
        time.sleep(0.5)
        print(f"idle: RSS {rss_kib(server.pid) / 1024:.1f} MiB")
        for r in range(args.rounds):
            socks = []
            for _ in range(args.clients):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                socks.append(s)
            time.sleep(1.0)
            for s in socks:
                try:
                    s.send(b"hi there\n")
                except OSError:
                    pass
            peak = 0
            for _ in range(20):
                peak = max(peak, rss_kib(server.pid))
                time.sleep(0.1)
            for i, s in enumerate(socks):
                if i % 2:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            time.sleep(6)
            print(f"round {r}: {args.clients} clients, RSS peak {peak / 1024:.1f} MiB, "
                  f"6 s after all left {rss_kib(server.pid) / 1024:.1f} MiB")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
