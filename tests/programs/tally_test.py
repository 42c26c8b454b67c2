#!/usr/bin/env python3
"""End-to-end test of ringshard-tally (the coroutine line-protocol sample)
with raw sockets on 127.0.0.1, on 2 shards:
  1. every command, its answer and its errors, lines split byte by byte;
  2. a model check: 8 clients at once pipelining 2,000 random ADDs, GETs and
     SUMs each over 40 counters owned by both shards; every answer checked
     against a model (each client's counters are its own, so answers are
     exact), then every counter read back from a fresh connection;
  3. a line over 4 KiB: `ERR line too long`, the connection closed, the
     server serving on;
  4. a connection idle for --idle-timeout is closed;
  5. counters beyond --max-counters (1,000 per shard here) are refused with
     `ERR too many counters`, and those there still count;
  6. clients that reset with pipelines in flight (SUMs waiting on the other
     shard) and 200 connections dropped at once: the server serves on and
     no descriptor is left;
  7. SIGTERM: exit status 0.

usage: tally_test.py PATH/TO/ringshard-tally
"""
import os
import random
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from progtest import Failure, Server, check, connect, reset, run_checks, wait_for  # noqa: E402

BINARY = None
NEWLINE = b"\n"


def read_lines(sock, count, timeout=10.0):
    sock.settimeout(timeout)
    data = b""
    while data.count(b"\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            raise Failure(f"connection closed after {data.count(NEWLINE)} of {count} answers")
        data += chunk
    lines = data.decode().split("\n")
    check(len(lines) == count + 1 and lines[-1] == "", f"more than {count} answers: {data[-200:]!r}")
    return lines[:-1]


def closed_within(sock, seconds):
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except (socket.timeout, TimeoutError):
        return False
    except ConnectionResetError:
        return True


def commands(server):
    s = connect(server.port)
    script = (b"ADD a 5\nADD b 7\r\nGET a\nSUM a b never\nADD a x\nADD a\nFOO\n\nGET\n"
              b"ADD big 9223372036854775807\nADD big 1\nGET big\nADD neg -9223372036854775807\nADD neg -2\n"
              b"SUM big big\n")
    for byte in script:  # byte by byte: lines cut anywhere
        s.sendall(bytes([byte]))
    want = ["5", "7", "5", "12", "ERR not an integer", "ERR unknown command or wrong number of arguments",
            "ERR unknown command or wrong number of arguments", "ERR empty line",
            "ERR unknown command or wrong number of arguments",
            "9223372036854775807", "ERR overflow", "9223372036854775807", "-9223372036854775807", "ERR overflow",
            "ERR overflow"]
    got = read_lines(s, len(want))
    check(got == want, f"answers {got}, want {want}")
    names = " ".join(f"n{i}" for i in range(65))
    s.sendall(f"SUM {names}\nQUIT\n".encode())
    got = read_lines(s, 2)
    check(got == ["ERR at most 64 names", "BYE"], f"answers {got}")
    check(closed_within(s, 5), "not closed after QUIT")
    s.close()
    return ""


def model_check(server):
    errors = []

    def client(index):
        try:
            rng = random.Random(index)
            names = [f"c{index}-{k}" for k in range(40)]  # this client's own: exact answers
            model = {n: 0 for n in names}
            s = connect(server.port)
            for _ in range(10):  # 10 pipelines of 200
                lines, want = [], []
                for _ in range(200):
                    op = rng.random()
                    if op < 0.6:
                        n, v = rng.choice(names), rng.randint(-1000, 1000)
                        model[n] += v
                        lines.append(f"ADD {n} {v}")
                        want.append(str(model[n]))
                    elif op < 0.8:
                        n = rng.choice(names)
                        lines.append(f"GET {n}")
                        want.append(str(model[n]))
                    else:
                        pick = rng.sample(names, rng.randint(1, 10))
                        lines.append("SUM " + " ".join(pick))
                        want.append(str(sum(model[n] for n in pick)))
                payload = ("\n".join(lines) + "\n").encode()
                cut = rng.randint(1, len(payload) - 1)
                s.sendall(payload[:cut])
                time.sleep(0.001)
                s.sendall(payload[cut:])
                got = read_lines(s, len(want))
                if got != want:
                    bad = next(i for i in range(len(want)) if got[i] != want[i])
                    raise Failure(f"client {index}: answer {bad} is {got[bad]!r}, want {want[bad]!r} ({lines[bad]})")
            s.close()
            # Read back from another connection (likely another shard).
            t = connect(server.port)
            t.sendall(("".join(f"GET {n}\n" for n in names) + "SUM " + " ".join(names) + "\n").encode())
            got = read_lines(t, len(names) + 1)
            want = [str(model[n]) for n in names] + [str(sum(model.values()))]
            if got != want:
                raise Failure(f"client {index}: read back {got[:5]}..., want {want[:5]}...")
            t.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    check(not any(t.is_alive() for t in threads), "clients still running after 120 s")
    check(not errors, "; ".join(errors))
    return f"16,000 commands checked in {time.monotonic() - t0:.1f} s"


def too_long(server):
    s = connect(server.port)
    s.sendall(b"GET " + b"x" * 5000)
    got = read_lines(s, 1)
    check(got == ["ERR line too long"], f"answer {got}")
    check(closed_within(s, 5), "not closed after a line too long")
    s.close()
    t = connect(server.port)
    t.sendall(b"ADD after 1\n")
    check(read_lines(t, 1) == ["1"], "not serving after a line too long")
    t.close()
    return ""


def idle(server):
    s = connect(server.port)
    s.sendall(b"ADD idle 1\n")
    check(read_lines(s, 1) == ["1"], "no answer")
    t0 = time.monotonic()
    check(closed_within(s, 10), "an idle connection was not closed within 10 s (--idle-timeout 1)")
    waited = time.monotonic() - t0
    check(waited >= 0.9, f"closed after {waited:.2f} s, before its idle timeout")
    s.close()
    return f"closed after {waited:.1f} s idle"


def too_many(server):
    s = connect(server.port)
    names = [f"many-{k}" for k in range(2500)]  # ~1,250 per shard, over 1,000 each with what is there
    s.sendall("".join(f"ADD {n} 1\n" for n in names).encode())
    got = read_lines(s, len(names))
    refused = sum(1 for g in got if g == "ERR too many counters")
    counted = sum(1 for g in got if g == "1")
    check(refused + counted == len(names), f"unexpected answers: {[g for g in got if g not in ('1', 'ERR too many counters')][:5]}")
    check(refused >= 500, f"only {refused} of 2,500 new counters refused with 1,000 per shard at most")
    check(counted <= 2000, f"{counted} new counters taken, over 2 x 1,000")
    s.sendall(b"ADD a 1\n")  # a counter that is there still counts
    check(read_lines(s, 1) == ["6"], "an existing counter no longer counts")
    s.close()
    return f"{counted} new counters taken, {refused} refused"


def resets(server):
    rng = random.Random(5)
    for round_ in range(20):
        s = connect(server.port)
        names = " ".join(f"r{k}" for k in range(20))
        s.sendall((f"ADD r{round_} 1\nSUM {names}\n" * 200).encode())
        time.sleep(rng.random() * 0.005)
        reset(s)
    socks = [connect(server.port) for _ in range(200)]
    for i, s in enumerate(socks):
        s.sendall(b"SUM a b c d e f g h\n" * 5)
        if i % 2:
            reset(s)
        else:
            s.close()
    t = connect(server.port)
    t.sendall(b"GET a\n")
    check(read_lines(t, 1) == ["6"], "not serving after the resets")
    t.close()
    waited = server.wait_for_baseline_fds(timeout=10)
    check(server.alive(), "the server died")
    return f"fds back to {server.baseline_fds} in {waited:.2f} s"


def main():
    global BINARY
    BINARY = sys.argv[1]
    server = Server(BINARY, "--shards", "2", "--idle-timeout", "1", "--max-counters", "1000", settle=0.1)
    status = 1
    try:
        status = run_checks([
            ("commands and errors, lines split byte by byte", lambda: commands(server)),
            ("8 clients pipelining against a model", lambda: model_check(server)),
            ("a line over 4 KiB", lambda: too_long(server)),
            ("an idle connection is closed", lambda: idle(server)),
            ("counters beyond --max-counters", lambda: too_many(server)),
            ("resets with pipelines in flight, 200 connections dropped at once", lambda: resets(server)),
            ("SIGTERM", lambda: server.stop(15)),
        ])
    finally:
        server.kill()
    if status:
        print(server.stderr_text()[-3000:], file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
