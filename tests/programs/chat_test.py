#!/usr/bin/env python3
"""ringshard-chat across 2 shards with 4 clients: every line reaches the 3
others exactly once, and nobody hears their own lines.

usage: chat_test.py PATH/TO/ringshard-chat
"""
import socket
import subprocess
import sys
import time


def main():
    binary = sys.argv[1]
    proc = subprocess.Popen([binary, "--port", "0", "--shards", "2"], stdout=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode()
        assert line.startswith("listening on "), line
        port = int(line.rsplit(":", 1)[1])
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
        # Joins travel to the rooms as messages: keep saying "ready" until every
        # client has heard every other one, so all are registered everywhere.
        heard = [set() for _ in clients]
        buffers = [b"" for _ in clients]
        deadline = time.monotonic() + 10
        while any(len(h) < 3 for h in heard):
            if time.monotonic() > deadline:
                print("FAIL: clients did not all hear each other's ready lines", file=sys.stderr)
                return 1
            for i, c in enumerate(clients):
                c.sendall(b"ready %d\n" % i)
            time.sleep(0.05)
            for i, c in enumerate(clients):
                c.settimeout(0.01)
                try:
                    while True:
                        chunk = c.recv(65536)
                        if not chunk:
                            break
                        buffers[i] += chunk
                except socket.timeout:
                    pass
                for line in buffers[i].split(b"\n"):
                    if line.startswith(b"ready "):
                        heard[i].add(int(line.split()[1]))
        # Drain the ready lines still in flight.
        for c in clients:
            c.settimeout(0.3)
            try:
                while c.recv(65536):
                    pass
            except socket.timeout:
                pass
            c.settimeout(5)
        lines_per_client = 25
        for i, c in enumerate(clients):
            c.sendall(b"".join(b"client %d line %d\n" % (i, k) for k in range(lines_per_client)))
        expected = {i: sorted(b"client %d line %d\n" % (j, k) for j in range(4) if j != i
                              for k in range(lines_per_client)) for i in range(4)}
        for i, c in enumerate(clients):
            want = sum(len(x) for x in expected[i])
            got = b""
            deadline = time.monotonic() + 10
            while len(got) < want and time.monotonic() < deadline:
                chunk = c.recv(65536)
                if not chunk:
                    break
                got += chunk
            c.settimeout(0.3)  # nothing more may come (no duplicates)
            try:
                extra = c.recv(65536)
            except socket.timeout:
                extra = b""
            received = sorted(x + b"\n" for x in (got + extra).split(b"\n") if x)
            if received != expected[i]:
                print(f"FAIL: client {i} got {len(received)} lines, expected {len(expected[i])}", file=sys.stderr)
                return 1
            # per-sender order is kept
            for j in range(4):
                mine = [x for x in (got + extra).split(b"\n") if x.startswith(b"client %d " % j)]
                if mine != sorted(mine, key=lambda x: int(x.rsplit(b" ", 1)[1])):
                    print(f"FAIL: client {i} got client {j}'s lines out of order", file=sys.stderr)
                    return 1
        print("ok: 4 clients on 2 shards, every line delivered to the 3 others exactly once, in order")
        for c in clients:
            c.close()
        proc.send_signal(2)
        if proc.wait(timeout=5) != 0:
            print("FAIL: exit status", proc.returncode, file=sys.stderr)
            return 1
        return 0
    finally:
        if proc.poll() is None:
            proc.kill()


if __name__ == "__main__":
    sys.exit(main())
