#!/usr/bin/env python3
"""Whole-program test of Runtime::run()'s signal handling.

Starts a sample server (which prints `listening on HOST:PORT` and then calls
Runtime::run()) TRIES times and, each time, with one client connection open
and echoed through, sends it two SIGTERMs back to back (as
`kill -TERM pid; kill -TERM pid` or coreutils timeout(1) do). Every run must
end with exit status 0 within 10 s: never killed by the second signal
(status 143, or -15 as Python reports death by SIGTERM). A few runs with one
SIGTERM and with SIGINT + SIGTERM check the same status.

Before signalling, the test waits until the server's main thread has SIGTERM
blocked (SigBlk in /proc/PID/status), i.e. until run() has taken the
signals: one that arrives between `listening on` and run() still has its
default action, as in any program that has not started to handle it yet.

usage: signals_test.py [--tries N] PATH/TO/SERVER [SERVER ARGS...]
Exit status: 0 pass, 1 fail, 77 skip (io_uring unavailable).
"""
import os
import signal
import socket
import subprocess
import sys
import time

SKIP = 77


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def sig_blocked(pid, signo):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigBlk:"):
                    return bool(int(line.split()[1], 16) & (1 << (signo - 1)))
    except OSError:
        pass
    return False


def start(cmd):
    p = subprocess.Popen(cmd + ["--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("listening on "):
        p.kill()
        out, err = p.communicate(timeout=10)
        if "io_uring" in err and ("not permitted" in err or "not supported" in err or "ENOSYS" in err):
            print("SKIPPED: io_uring unavailable: " + err.strip(), file=sys.stderr)
            sys.exit(SKIP)
        fail(f"no `listening on` line: {line!r}, stderr: {err}")
    host, port = line.split()[-1].rsplit(":", 1)
    return p, (host, int(port))


def one_run(cmd, signals, label):
    p, addr = start(cmd)
    client = None
    try:
        # An open connection with a recv in flight, so the stop has I/O to cancel.
        client = socket.create_connection(addr, timeout=5)
        client.sendall(b"ping")
        got = b""
        while len(got) < 4:
            chunk = client.recv(4 - len(got))
            if not chunk:
                fail(f"{label}: connection closed before the echo")
            got += chunk
        if got != b"ping":
            fail(f"{label}: echoed {got!r}")
        end = time.monotonic() + 10
        while not sig_blocked(p.pid, signal.SIGTERM):
            if time.monotonic() > end or p.poll() is not None:
                fail(f"{label}: the server never blocked SIGTERM (is it in Runtime::run()?)")
            time.sleep(0.001)
        for s in signals:
            os.kill(p.pid, s)
        try:
            status = p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            fail(f"{label}: still running 10 s after {len(signals)} signal(s)")
        err = p.stderr.read()
        if status != 0:
            fail(f"{label}: exit status {status} (expected 0); stderr:\n{err}")
    finally:
        if client is not None:
            client.close()
        if p.poll() is None:
            p.kill()
            p.wait()


def main():
    args = sys.argv[1:]
    tries = 20
    if args[:1] == ["--tries"]:
        tries = int(args[1])
        args = args[2:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = args
    for i in range(tries):
        one_run(cmd, [signal.SIGTERM, signal.SIGTERM], f"two SIGTERMs, try {i + 1}/{tries}")
    for i in range(3):
        one_run(cmd, [signal.SIGTERM], f"one SIGTERM, try {i + 1}/3")
        one_run(cmd, [signal.SIGINT, signal.SIGTERM], f"SIGINT then SIGTERM, try {i + 1}/3")
    print(f"ok: {tries} runs with two SIGTERMs, 3 with one, 3 with SIGINT+SIGTERM, all exited 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
