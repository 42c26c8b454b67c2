#!/usr/bin/env python3
"""End-to-end test of ringshard-load, the echo load generator.

  (a) against ringshard-echo-plain, ~1 s runs in lockstep and at depth 8 with
      sizes from 1 B to 64 KiB (so that a message spans many receives), on one
      and two shards: exit 0, requests > 0, no error, p50 <= p99 <= p99.9 <=
      max, MB/s = requests/s x size, requests/s = requests / duration;
  (b) against a server that corrupts one byte after 5 KiB: errors > 0, exit 1;
  (c) against a server that closes every connection after 0.3 s (half of
      them with a reset): errors > 0, exit 1 long before the 30 s the run
      asked for;
  (d) against a port nobody listens on, and one whose backlog is full:
      connect errors (refused, timed out), exit 1;
  (e) SIGINT during a run: a report marked interrupted, exit 0;
  (f) bad arguments: one line naming the option and exit 2.
Every step is bounded in time.

usage: load_test.py PATH/TO/ringshard-load PATH/TO/ringshard-echo-plain
Exit status: 0 pass, 1 fail, 77 skip (io_uring unavailable).
"""
import json
import math
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


class EchoPlain:
    """ringshard-echo-plain on a free port."""

    def __init__(self, binary):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([binary, "--port", "0"], stdout=subprocess.PIPE, stderr=self.stderr)
        line = b""
        deadline = time.monotonic() + 10
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                if time.monotonic() > deadline:
                    raise Failure("ringshard-echo-plain printed no 'listening on' line within 10 s")
                if not sel.select(timeout=0.1):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 256)
                if not chunk:
                    self.proc.wait(timeout=5)
                    self.stderr.seek(0)
                    text = self.stderr.read().decode(errors="replace")
                    if "io_uring itself is unavailable" in text:
                        print(text, file=sys.stderr)
                        sys.exit(SKIP)
                    raise Failure(f"ringshard-echo-plain exited with {self.proc.returncode}: {text}")
                line += chunk
        text = line.decode().strip()
        prefix = "listening on 127.0.0.1:"
        check(text.startswith(prefix), f"unexpected first line {text!r}")
        self.port = int(text[len(prefix):])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class PyServer:
    """A threaded TCP server on a free port; `handle(sock, server, n)` serves connection number n."""

    def __init__(self, handle):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.handle = handle
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        accepted = 0
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, accepted), daemon=True).start()
            accepted += 1

    def _serve(self, conn, n):
        try:
            conn.settimeout(0.2)
            self.handle(conn, self, n)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.listener.close()


def corrupting_echo(conn, server, n):
    """Echoes, but flips one byte once 5 KiB have gone back."""
    echoed = 0
    corrupted = False
    while not server.stopping:
        try:
            data = conn.recv(65536)
        except socket.timeout:
            continue
        if not data:
            return
        if not corrupted and echoed + len(data) > 5120:
            at = max(0, 5120 - echoed)
            data = data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1:]
            corrupted = True
        conn.sendall(data)
        echoed += len(data)


def closing_echo(conn, server, n):
    """Echoes for 0.3 s, then closes; every other connection with a reset."""
    if n % 2 == 1:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    until = time.monotonic() + 0.3
    while not server.stopping and time.monotonic() < until:
        try:
            data = conn.recv(65536)
        except socket.timeout:
            continue
        if not data:
            return
        conn.sendall(data)


def run_load(binary, port, *args, timeout=30):
    """Runs ringshard-load --json; returns (exit status, the JSON object or None, stderr, seconds)."""
    started = time.monotonic()
    try:
        proc = subprocess.run([binary, "--port", str(port), "--json", *args], capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failure(f"ringshard-load {' '.join(args)} did not finish within {timeout} s")
    elapsed = time.monotonic() - started
    stderr = proc.stderr.decode(errors="replace")
    check("runtime error:" not in stderr and "Sanitizer" not in stderr,
          f"ringshard-load {' '.join(args)}: sanitizer report:\n{stderr}")
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    result = None
    if lines:
        try:
            result = json.loads(lines[-1])
        except json.JSONDecodeError:
            raise Failure(f"last stdout line is not JSON: {lines[-1]!r}\nstderr:\n{stderr}")
    return proc.returncode, result, stderr, elapsed


def check_good_run(binary, port, size, depth, connections, shards=1):
    args = ["--connections", str(connections), "--size", str(size), "--depth", str(depth),
            "--warmup", "0.2", "--duration", "0.8", "--shards", str(shards)]
    what = " ".join(args)
    status, r, stderr, elapsed = run_load(binary, port, *args)
    check(status == 0, f"{what}: exit status {status}\n{stderr}")
    check(r is not None, f"{what}: no JSON line")
    check(r["connections"] == connections and r["connected"] == connections,
          f"{what}: {r['connected']} of {r['connections']} connected")
    check(r["size"] == size and r["depth"] == depth and r["shards"] == shards, f"{what}: options not echoed: {r}")
    check(r["requests"] > 0, f"{what}: no request completed: {r}")
    check(r["errors"] == 0 and r["connect_errors"] == 0, f"{what}: errors: {r}\n{stderr}")
    check(abs(r["duration_s"] - 0.8) < 0.01, f"{what}: measured {r['duration_s']} s, not 0.8 s")
    check(0 < r["p50_us"] <= r["p99_us"] <= r["p999_us"] <= r["max_us"], f"{what}: quantiles out of order: {r}")
    check(r["p50_us"] <= r["mean_us"] * 10 and r["mean_us"] <= r["max_us"], f"{what}: odd mean: {r}")
    rps = r["requests"] / r["duration_s"]
    check(math.isclose(r["requests_per_s"], rps, rel_tol=1e-3), f"{what}: requests/s {r['requests_per_s']} != {rps}")
    mbps = r["requests_per_s"] * size / 1e6
    check(math.isclose(r["mb_per_s"], mbps, rel_tol=1e-3, abs_tol=1e-4), f"{what}: MB/s {r['mb_per_s']} != {mbps}")
    check("requests/s" in stderr and "latency us" in stderr, f"{what}: no human summary on stderr:\n{stderr}")
    print(f"ok: {what}: {r['requests_per_s']:.0f} requests/s, {r['mb_per_s']:.1f} MB/s, "
          f"p50 {r['p50_us']} us, p99 {r['p99_us']} us, max {r['max_us']} us ({elapsed:.1f} s)")


def test_good_runs(binary, echo_binary):
    server = EchoPlain(echo_binary)
    try:
        for size, depth, connections, shards in [
            (128, 1, 16, 1),
            (128, 8, 16, 1),
            (1, 8, 4, 1),
            (1024, 1, 8, 2),
            (1024, 8, 8, 1),
            (3001, 3, 8, 2),  # messages that straddle receive buffers at odd offsets
            (65536, 1, 4, 1),
            (65536, 8, 4, 2),  # 512 KiB in flight per connection
        ]:
            check_good_run(binary, server.port, size, depth, connections, shards)
        # (e) SIGINT in the middle of a long run: a report of what was measured.
        proc = subprocess.Popen([binary, "--port", str(server.port), "--json", "--connections", "4",
                                 "--warmup", "0.2", "--duration", "60"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise Failure("ringshard-load did not exit within 10 s of SIGINT")
        check(proc.returncode == 0, f"after SIGINT: exit status {proc.returncode}\n{err.decode()}")
        r = json.loads(out.decode().strip().splitlines()[-1])
        check(r["interrupted"] is True and r["requests"] > 0 and r["errors"] == 0, f"after SIGINT: {r}")
        check(0 < r["duration_s"] < 2, f"after SIGINT: measured {r['duration_s']} s")
        print(f"ok: SIGINT after 2 s: report of {r['duration_s']:.2f} s, exit 0")
    finally:
        server.stop()


def test_corruption(binary):
    server = PyServer(corrupting_echo)
    try:
        status, r, stderr, elapsed = run_load(binary, server.port, "--connections", "4", "--size", "1024",
                                              "--depth", "2", "--warmup", "0", "--duration", "1")
    finally:
        server.stop()
    check(status == 1, f"corrupted echo: exit status {status}, not 1\n{stderr}")
    check(r is not None and r["errors"] >= 1, f"corrupted echo: no error reported: {r}")
    check("differs from what was sent" in stderr, f"corrupted echo: no clear message:\n{stderr}")
    check("byte 5120 of the stream" in stderr, f"corrupted echo: wrong position reported:\n{stderr}")
    print(f"ok: a corrupted byte: {r['errors']} errors, exit 1 ({elapsed:.1f} s)")


def test_early_close(binary):
    server = PyServer(closing_echo)
    try:
        status, r, stderr, elapsed = run_load(binary, server.port, "--connections", "4", "--size", "512",
                                              "--warmup", "0", "--duration", "30", timeout=20)
    finally:
        server.stop()
    check(status == 1, f"closing server: exit status {status}, not 1\n{stderr}")
    check(r is not None and r["errors"] >= 1, f"closing server: no error reported: {r}")
    check(elapsed < 10, f"closing server: took {elapsed:.1f} s to give up (every connection was closed)")
    check("closed" in stderr, f"closing server: no clear message:\n{stderr}")
    print(f"ok: the server closes: {r['errors']} errors, exit 1 after {elapsed:.1f} s of a 30 s run")


def test_refused(binary):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # bound, never listening: nobody is there
    status, r, stderr, elapsed = run_load(binary, port, "--connections", "3", "--duration", "1", timeout=15)
    check(status == 1, f"refused: exit status {status}, not 1\n{stderr}")
    check(r is not None and r["connect_errors"] >= 1 and r["errors"] >= 1 and r["requests"] == 0,
          f"refused: {r}")
    check("Connection refused" in stderr, f"refused: no clear message:\n{stderr}")
    print(f"ok: connection refused: exit 1 after {elapsed:.1f} s")


def test_connect_timeout(binary):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepts: connects beyond the backlog hang in SYN retries
    try:
        status, r, stderr, elapsed = run_load(binary, listener.getsockname()[1], "--connections", "20",
                                              "--connect-timeout", "0.5", "--duration", "1", timeout=15)
    finally:
        listener.close()
    check(status == 1, f"connect timeout: exit status {status}, not 1\n{stderr}")
    check(r is not None and r["connect_errors"] >= 1 and r["requests"] == 0, f"connect timeout: {r}")
    check("not established within 0.5 s" in stderr, f"connect timeout: no clear message:\n{stderr}")
    check(elapsed < 5, f"connect timeout: took {elapsed:.1f} s")
    print(f"ok: connects that hang time out: exit 1 after {elapsed:.1f} s")


def test_bad_arguments(binary):
    for args in [[], ["--port", "0"], ["--port", "70000"], ["--port", "x"], ["--port", "1", "--depth", "0"],
                 ["--port", "1", "--size", "12k"], ["--port", "1", "--connections", "0"],
                 ["--port", "1", "--duration", "0"], ["--port", "1", "--warmup", "-1"],
                 ["--port", "1", "--cpus", "a"], ["--port", "1", "--cpus", "1000"], ["--port", "1", "--host", "not-an-address"],
                 ["--port", "1", "--frobnicate"], ["--port"], ["--port", "1", "extra"]]:
        proc = subprocess.run([binary, *args], capture_output=True, timeout=10)
        err = proc.stderr.decode(errors="replace")
        check(proc.returncode == 2, f"{args}: exit status {proc.returncode}, not 2\n{err}")
        lines = err.strip().splitlines()
        named = next((a for a in args if a.startswith("--") and a != "--port"), "--port")
        if args[-1:] == ["extra"]:
            named = "extra"
        check(len(lines) == 1 and lines[0].startswith("ringshard-load: ") and named in lines[0],
              f"{args}: not one line naming {named}:\n{err}")
    proc = subprocess.run([binary, "--help"], capture_output=True, timeout=10)
    check(proc.returncode == 0 and b"Usage: ringshard-load" in proc.stdout, "--help")
    print("ok: bad arguments exit 2 with one line naming the option")


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    binary, echo_binary = sys.argv[1], sys.argv[2]
    started = time.monotonic()
    try:
        test_bad_arguments(binary)
        test_good_runs(binary, echo_binary)
        test_corruption(binary)
        test_early_close(binary)
        test_refused(binary)
        test_connect_timeout(binary)
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    print(f"all ringshard-load checks passed in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
