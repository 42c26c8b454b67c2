#!/usr/bin/env python3
"""ringshard-http (--shards 2) against clients that are silent, slow, never
read, or keep sending what was refused, and behind nginx as a reverse proxy.

Checks, each printed as `ok  NAME: measurements` or `FAIL NAME: reason`:
  1. --header-timeout 300: a connection that never sends a byte and a
     slowloris head (a byte every 20 ms) are both closed after 0.3-0.9 s;
     --keepalive-timeout 300: an idle keep-alive connection too, while one
     with a request every 100 ms stays;
  2. 30 clients ask for GET /bytes?n=64MiB and never read: server RSS stays
     within 40 MiB of its baseline (the streamed body stops at each
     connection's watermark); then 15 go away and 15 stay without reading
     (--send-timeout 500 cuts those): fds back to baseline, RSS within 8 MiB
     of it, and the server burns no CPU afterwards (nothing is built for
     clients that are gone);
  3. --max-body 1024: a POST whose 2 MiB body is sent in one go after the
     head gets its 413 and a clean end (no ECONNRESET), from a raw socket and
     from curl;
  4. nginx (nginx-light) as a reverse proxy in front: 6 oversized POSTs get
     413 through nginx, none 502; wrk through nginx mixing GETs and
     oversized POSTs: no 502 at all;
  5. SIGINT while 30 streams to clients that do not read are in progress:
     exit status 0 within 1 s.

usage: http_clients_test.py PATH/TO/ringshard-http [--only N,N,...]
Exit status: 0 pass, 1 fail, 77 skip (io_uring unavailable, or curl, wrk or
nginx missing: scripts/bootstrap.sh installs them).
"""
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import http_test as ht  # noqa: E402  (the Server and Conn helpers)
from http_test import Failure, check  # noqa: E402

SKIP = 77
MIB = 1 << 20


def cpu_seconds(server):
    with open(f"/proc/{server.proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def closed_after(sock, t0, limit):
    """Seconds from t0 until the server closes `sock` (EOF or reset)."""
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise Failure(f"not closed within {limit} s")
    return time.monotonic() - t0


# ---- 1. silent, slow and idle clients ------------------------------------------

def timeouts(s):
    silent = socket.create_connection(("127.0.0.1", s.port))
    t0 = time.monotonic()
    slow = socket.create_connection(("127.0.0.1", s.port))
    head = b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    slow.setblocking(False)
    sent, slow_closed = 0, None
    while sent < len(head) and time.monotonic() - t0 < 2:
        try:
            slow.send(head[sent:sent + 1])
            sent += 1
            if slow.recv(1) == b"":
                slow_closed = time.monotonic() - t0
                break
        except BlockingIOError:
            pass
        except (ConnectionResetError, BrokenPipeError):
            slow_closed = time.monotonic() - t0
            break
        time.sleep(0.02)
    check(slow_closed is not None, f"slowloris not cut off after {sent} bytes in 2 s")
    check(0.29 <= slow_closed <= 0.9, f"slowloris cut off after {slow_closed:.2f} s with --header-timeout 300")
    silent_closed = closed_after(silent, t0, 2.0)
    check(0.29 <= silent_closed <= 0.9, f"silent connection closed after {silent_closed:.2f} s")
    with ht.Conn(s.port) as idle, ht.Conn(s.port) as busy:
        idle.send(ht.get("/plaintext"))
        idle.response()
        t1 = time.monotonic()
        idle_closed = None
        while time.monotonic() - t1 < 1.0:  # busy: a request every 100 ms
            busy.send(ht.get("/plaintext"))
            check(busy.response(2.0).status == 200, "busy keep-alive connection")
            if idle_closed is None and not idle.still_open(0.1):
                idle_closed = time.monotonic() - t1
        check(idle_closed is not None and 0.29 <= idle_closed <= 0.9,
              f"idle keep-alive connection closed after {idle_closed} s with --keepalive-timeout 300")
        busy.send(ht.get("/plaintext"))
        check(busy.response(2.0).status == 200, "the busy connection was closed")
    ht.served(s)
    return (f"silent closed after {silent_closed * 1000:.0f} ms, slowloris after {slow_closed * 1000:.0f} ms "
            f"({sent} bytes), idle keep-alive after {idle_closed * 1000:.0f} ms; a busy one stays")


# ---- 2. clients that never read 64 MiB ------------------------------------------

def non_readers(s):
    for _ in range(8):  # both shards have served, streamed and built their buffers
        with ht.Conn(s.port) as c:
            c.send(ht.get("/bytes?n=3000000"))
            check(len(c.response().body) == 3000000, "warm-up /bytes")
    time.sleep(0.2)
    baseline_fds, baseline = s.fd_count(), s.rss_kib()
    socks = []
    for _ in range(30):
        c = socket.create_connection(("127.0.0.1", s.port))
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        c.sendall(ht.get(f"/bytes?n={64 * MIB}"))
        socks.append(c)
    peak = baseline
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.4:
        peak = max(peak, s.rss_kib())
        time.sleep(0.02)
    check((peak - baseline) / 1024 <= 40, f"RSS grew by {(peak - baseline) / 1024:.1f} MiB for 30 non-readers")
    served_in = ht.served(s)
    # Half go away (some with a reset), half stay without reading: the send
    # timeout cuts those.
    for i, c in enumerate(socks[:15]):
        if i % 2:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    t1 = time.monotonic()
    deadline = t1 + 4
    while s.fd_count() != baseline_fds:
        check(time.monotonic() < deadline, f"{s.fd_count()} fds 4 s later, {baseline_fds} before the clients")
        time.sleep(0.02)
    back = time.monotonic() - t1
    reset = 0
    for c in socks[15:]:
        try:
            c.setblocking(False)
            while c.recv(1 << 20):
                pass
        except BlockingIOError:
            pass
        except ConnectionResetError:
            reset += 1
        c.close()
    time.sleep(0.1)
    cpu0 = cpu_seconds(s)
    time.sleep(0.5)
    cpu = cpu_seconds(s) - cpu0
    after = s.rss_kib()
    check(cpu < 0.05, f"the server used {cpu:.2f} s of CPU in 0.5 s after every client had gone")
    check((after - baseline) / 1024 <= 8, f"RSS {after / 1024:.1f} MiB after the clients, {baseline / 1024:.1f} before")
    return (f"RSS {baseline / 1024:.1f} MiB before, {peak / 1024:.1f} MiB at most with 30 x 64 MiB unread "
            f"(+{(peak - baseline) / 1024:.1f}), another client served in {served_in * 1000:.0f} ms; 15 gone, "
            f"15 cut by the send timeout ({reset} saw the reset): fds back to {baseline_fds} in {back:.2f} s, "
            f"RSS {after / 1024:.1f} MiB, {cpu * 1000:.0f} ms CPU in the next 0.5 s")


# ---- 3. 413 with the body still coming -------------------------------------------

def refused_body(small):
    body = b"z" * (2 * MIB)
    results = []
    for attempt in range(3):
        c = socket.create_connection(("127.0.0.1", small.port), timeout=5)
        try:
            c.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            conn = ht.Conn.__new__(ht.Conn)
            conn.sock, conn.buf, conn.reads = c, bytearray(), 0
            r = conn.response(5.0)
            check(r.status == 413, f"oversized POST answered {r!r}")
            c.settimeout(3)
            rest = c.recv(1)
            check(rest == b"", f"bytes after the 413: {rest!r}")
        except (ConnectionResetError, BrokenPipeError) as e:
            raise Failure(f"oversized POST #{attempt}: {e!r} instead of a 413 and a clean end")
        finally:
            c.close()
        results.append("413")
    with tempfile.NamedTemporaryFile() as f:
        f.write(body)
        f.flush()
        p = ht.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect:", "--data-binary",
                    f"@{f.name}", f"{small.url}/echo"], timeout=15)
    check(p.returncode == 0 and p.stdout == b"413",
          f"curl POST of 2 MiB: exit {p.returncode}, status {p.stdout!r} {p.stderr[-300:]!r}")
    ht.served(small)
    return f"raw socket: {', '.join(results)}, each then a clean end; curl: 413, exit 0"


# ---- 4. nginx in front -------------------------------------------------------------

NGINX_CONF = """
worker_processes 1;
daemon off;
master_process off;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  client_max_body_size 0;
  upstream ringshard {{ server 127.0.0.1:{upstream}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://ringshard;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""

WRK_SCRIPT = """
local n = 0
local big = string.rep("p", 200000)
statuses = {}
request = function()
  n = n + 1
  if n % 4 == 0 then
    return wrk.format("POST", "/echo", nil, big)
  end
  return wrk.format("GET", "/plaintext")
end
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
local threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  for _, t in ipairs(threads) do
    for status, count in pairs(t:get("statuses")) do
      io.write(string.format("status %d %d\\n", status, count))
    end
  end
end
"""


def free_port():
    with socket.socket() as t:
        t.bind(("127.0.0.1", 0))
        return t.getsockname()[1]


def behind_nginx(small):
    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=d, upstream=small.port, port=port))
        nginx = subprocess.Popen(["nginx", "-p", d, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 5
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    check(nginx.poll() is None, f"nginx exited: {nginx.stderr.read().decode()[-500:]}")
                    check(time.monotonic() < deadline, "nginx did not listen within 5 s")
                    time.sleep(0.05)
            statuses = []
            body = b"o" * (300 * 1024)
            for _ in range(6):
                with ht.Conn(port) as c:
                    c.send(ht.post("/echo", body))
                    statuses.append(c.response(5.0).status)
            check(statuses == [413] * 6, f"6 oversized POSTs through nginx: {statuses}")
            with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
                script.write(WRK_SCRIPT)
                script.flush()
                p = ht.run(["wrk", "-t1", "-c8", "-d1s", "--timeout", "2s", "-s", script.name,
                            f"http://127.0.0.1:{port}/"], timeout=20)
            out = p.stdout.decode(errors="replace")
            counts = {int(a): int(b) for a, b in re.findall(r"status (\d+) (\d+)", out)}
            check(p.returncode == 0 and counts, f"wrk through nginx: {out} {p.stderr.decode(errors='replace')}")
            check(counts.get(502, 0) == 0, f"wrk through nginx got 502s: {counts}")
            check(counts.get(413, 0) > 0 and counts.get(200, 0) > 0, f"wrk through nginx: {counts}")
            with open(os.path.join(d, "error.log")) as f:
                upstream_errors = sum(1 for line in f if "upstream" in line)
        finally:
            nginx.terminate()
            try:
                nginx.wait(timeout=5)
            except subprocess.TimeoutExpired:
                nginx.kill()
    ht.served(small)
    return (f"6 oversized POSTs: 413 x6; wrk: {', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}, "
            f"no 502; {upstream_errors} upstream errors in nginx's log")


# ---- 5. SIGINT with streams in progress ---------------------------------------------

def stop_while_streaming(binary):
    """A graceful stop waits for responses in progress, for the stop
    timeout (2 s) at most: streams to clients that never read cannot end,
    so SIGINT takes about that long; a second SIGINT cuts it short."""
    results = []
    for second_signal in (False, True):
        s = ht.Server(binary)
        try:
            socks = []
            for _ in range(30):
                c = socket.create_connection(("127.0.0.1", s.port))
                c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
                c.sendall(ht.get(f"/bytes?n={64 * MIB}"))
                socks.append(c)
            time.sleep(0.3)
            if second_signal:
                threading.Timer(0.2, lambda: s.proc.send_signal(signal.SIGINT)).start()
            took = s.stop()
            if second_signal:
                check(took < 1.0, f"SIGINT, then another 0.2 s later: the stop took {took:.2f} s")
            else:
                check(took < 3.0, f"SIGINT took {took:.2f} s (stop timeout 2 s)")
            results.append(took)
            for c in socks:
                c.close()
        finally:
            s.kill()
    return (f"exit status 0 in {results[0] * 1000:.0f} ms with 30 streams to non-readers in progress, "
            f"{results[1] * 1000:.0f} ms with a second SIGINT")


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    binary, only = args[0], None
    if len(args) >= 3 and args[1] == "--only":
        only = {int(x) for x in args[2].split(",")}
    ht.SERVER_BINARY = binary
    missing = [tool for tool in ("curl", "wrk", "nginx") if shutil.which(tool) is None
               and not os.path.exists(f"/usr/sbin/{tool}")]
    if missing:
        print(f"skipped: {', '.join(missing)} not installed (scripts/bootstrap.sh installs them)")
        return SKIP
    if shutil.which("nginx") is None:
        os.environ["PATH"] += ":/usr/sbin"
    started = time.monotonic()
    servers = []
    try:
        timed = ht.Server(binary, "--header-timeout", "300", "--keepalive-timeout", "300", "--send-timeout", "500")
        servers.append(timed)
        small = ht.Server(binary, "--max-body", "1024")
        servers.append(small)
    except Failure as e:
        print(f"FAIL start: {e}")
        for srv in servers:
            srv.kill()
        return 1
    checks = [
        (1, "silent, slowloris and idle keep-alive clients", lambda: timeouts(timed)),
        (2, "30 clients not reading 64 MiB", lambda: non_readers(timed)),
        (3, "413 while the body still comes", lambda: refused_body(small)),
        (4, "nginx as a reverse proxy", lambda: behind_nginx(small)),
        (5, "SIGINT with streams in progress", lambda: stop_while_streaming(binary)),
    ]
    failures, passed = [], 0
    try:
        for number, name, fn in checks:
            if only is not None and number not in only:
                continue
            t0 = time.monotonic()
            try:
                result = fn()
                passed += 1
                print(f"ok   {number}. {name}: {result} ({time.monotonic() - t0:.1f} s)", flush=True)
            except Exception as e:  # Failure, or an OSError where none was expected
                failures.append(f"{number}. {name}")
                print(f"FAIL {number}. {name}: {e if isinstance(e, Failure) else repr(e)}", flush=True)
        for srv in servers:
            if not srv.alive():
                failures.append(f"server {' '.join(srv.args)} died")
    finally:
        for srv in servers:
            srv.kill()
    elapsed = time.monotonic() - started
    if failures:
        for srv in servers:
            text = srv.stderr_text()
            if text:
                print(f"server {' '.join(srv.args)} stderr:\n{text}")
        print(f"FAILED {len(failures)} of {passed + len(failures)} checks: {'; '.join(failures)} ({elapsed:.1f} s)")
        return 1
    print(f"passed: {passed} checks in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
