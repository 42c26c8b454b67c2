#!/usr/bin/env python3
"""Two ringshard-http instances behind HAProxy (the scale-out recipe of the
README's "More than one machine"), on 127.0.0.1:

  1. HAProxy (roundrobin, `option httpchk GET /plaintext`, checks every
     100 ms, fall 2, rise 2, `retries 3` on refused connections and on
     reused connections closed without an answer, `option redispatch`) in
     front of two `ringshard-http --shards 1` answers, both servers UP;
  2. wrk -t1 -c16 -d6s through HAProxy; 2 s in, one instance gets SIGTERM
     (it stops accepting at once and answers what it received, the last
     answer with Connection: close). Both instances served traffic before
     the stop; wrk sees no non-2xx answer and at most a few socket errors;
     HAProxy marks the stopped server DOWN within its health-check window
     (plus margin); the stopped instance exits with status 0;
  3. then 200 requests, each on a new connection, all answered 200 by the
     surviving instance.

Prints `ok ...`/`FAIL ...` lines with the figures (requests, non-2xx,
socket errors, time until HAProxy marked the server DOWN).

usage: haproxy_test.py PATH/TO/ringshard-http
Exit status: 0 pass, 1 fail, 77 skip (io_uring unavailable, or haproxy or
wrk missing: scripts/bootstrap.sh installs them).
"""
import csv
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from progtest import SKIP, Failure, Server, check, run_checks, wait_for  # noqa: E402

STOP_AFTER = 2.0       # s into the wrk run, the SIGTERM
WRK_SECONDS = 6
INTER_MS, FALL = 100, 2
DOWN_WITHIN = 1.5      # s: fall x inter is 0.2 s; the rest is margin for a loaded machine
MAX_NON_2XX = 0
MAX_SOCKET_ERRORS = 5
BURST = 200

CONFIG = """\
global
    stats socket {sock} mode 600 level user

defaults
    mode http
    timeout connect 300ms
    timeout client 5s
    timeout server 5s
    timeout check 1s
    retries 3
    retry-on conn-failure empty-response
    option redispatch

frontend web
    bind 127.0.0.1:{front}
    default_backend ringshard

backend ringshard
    balance roundrobin
    option httpchk GET /plaintext
    http-check expect status 200
    default-server inter {inter}ms fall {fall} rise 2
    server a 127.0.0.1:{port_a} check
    server b 127.0.0.1:{port_b} check
"""


def find_tool(name):
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)),
                                      None)


def free_port():
    """A port nothing listens on now: bound to 0, read, released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, timeout=2.0):
    """(status, body) of GET path on a new connection with Connection: close."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def answers(port):
    try:
        return get(port, "/plaintext", timeout=0.5)[0] == 200
    except OSError:
        return False


def instance_requests(server):
    """Requests an instance served, all shards (its /stats)."""
    status, body = get(server.port, "/stats")
    check(status == 200, f"/stats answered {status}")
    return sum(s["requests"] for s in json.loads(body)["shards"])


class HAProxy:
    def __init__(self, binary, port_a, port_b):
        self.dir = tempfile.TemporaryDirectory()
        self.sock = os.path.join(self.dir.name, "stats.sock")
        self.front = free_port()
        self.config = os.path.join(self.dir.name, "haproxy.cfg")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(sock=self.sock, front=self.front, inter=INTER_MS, fall=FALL,
                                  port_a=port_a, port_b=port_b))
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([binary, "-f", self.config, "-db"], stdout=self.log, stderr=subprocess.STDOUT)

    def servers(self):
        """{server name: its row of `show stat`} for the backend."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(self.sock)
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        text = data.decode().lstrip("# ")
        return {row["svname"]: row for row in csv.DictReader(text.splitlines())
                if row["pxname"] == "ringshard" and row["svname"] in ("a", "b")}

    def log_text(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.dir.cleanup()


def parse_wrk(out):
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    check(m is not None, f"no request count in wrk's output: {out!r}")
    result = {"requests": int(m.group(1))}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()))) if m else {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"^\s*99%\s+(\S+)", out, re.MULTILINE)
    result["p99"] = m.group(1) if m else "?"
    m = re.search(r"^\s*Latency\s+\S+\s+\S+\s+(\S+)", out, re.MULTILINE)
    result["max"] = m.group(1) if m else "?"
    return result


class Scenario:
    def __init__(self, binary, haproxy, wrk):
        self.binary, self.haproxy_bin, self.wrk = binary, haproxy, wrk
        self.a = self.b = self.proxy = None
        self.stopped = False

    def start(self):
        self.a = Server(self.binary, "--shards", "1")
        self.b = Server(self.binary, "--shards", "1")
        self.proxy = HAProxy(self.haproxy_bin, self.a.port, self.b.port)
        t0 = time.monotonic()
        ok = wait_for(lambda: self.proxy.proc.poll() is not None or answers(self.proxy.front), 10, step=0.05)
        check(self.proxy.proc.poll() is None, f"haproxy exited with {self.proxy.proc.returncode}: "
                                              f"{self.proxy.log_text()}")
        check(ok, f"haproxy on port {self.proxy.front} not answering within 10 s: {self.proxy.log_text()}")
        answered = time.monotonic() - t0
        check(wait_for(lambda: all(r["status"] == "UP" for r in self.proxy.servers().values()), 5),
              f"servers not UP: { {n: r['status'] for n, r in self.proxy.servers().items()} }")
        return (f"instances on {self.a.port} and {self.b.port}, haproxy on {self.proxy.front}, "
                f"answering after {answered:.2f} s, both servers UP")

    def stop_one_under_load(self):
        url = f"http://127.0.0.1:{self.proxy.front}/plaintext"
        wrk = subprocess.Popen([self.wrk, "-t1", "-c16", f"-d{WRK_SECONDS}s", "--latency", url],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            t0 = time.monotonic()
            time.sleep(STOP_AFTER)
            before = self.proxy.servers()
            served_a, served_b = instance_requests(self.a), instance_requests(self.b)
            stopped_at = time.monotonic()
            self.a.proc.send_signal(signal.SIGTERM)
            self.stopped = True
            down = None
            while time.monotonic() - stopped_at < 5:
                if self.proxy.servers()["a"]["status"].startswith("DOWN"):
                    down = time.monotonic() - stopped_at
                    break
                time.sleep(0.01)
            out, _ = wrk.communicate(timeout=WRK_SECONDS + 10)
            out = out.decode(errors="replace")
            elapsed = time.monotonic() - t0
        finally:
            if wrk.poll() is None:
                wrk.kill()
                wrk.wait()
        check(wrk.returncode == 0, f"wrk exited with {wrk.returncode}: {out}")
        try:
            status = self.a.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            raise Failure("the stopped instance did not exit within 5 s of SIGTERM")
        w = parse_wrk(out)
        errors = sum(w["errors"].values())
        via_a, via_b = int(before["a"]["hrsp_2xx"]), int(before["b"]["hrsp_2xx"])
        figures = (f"{w['requests']} requests in {elapsed:.1f} s ({w['rps']:.0f}/s, p99 {w['p99']}, max {w['max']}), "
                   f"non-2xx {w['non2xx']}, socket errors {errors}{' ' + str(w['errors']) if errors else ''}, "
                   + (f"DOWN {down * 1000:.0f} ms after SIGTERM" if down is not None else "never DOWN"))
        figures += (f"; before the stop HAProxy had 2xx {via_a} via a, {via_b} via b "
                    f"(instances' /stats: {served_a}, {served_b} requests incl. checks); "
                    f"after: retries {self.proxy.servers()['a'].get('wretr', '?')}, "
                    f"redispatches {self.proxy.servers()['a'].get('wredis', '?')} on a")
        check(status == 0, f"the stopped instance exited with status {status}; {figures}")
        check(min(via_a, via_b) > 0.25 * (via_a + via_b) and min(via_a, via_b) >= 100,
              f"traffic not spread over both instances; {figures}")
        check(down is not None and down <= DOWN_WITHIN, f"not marked DOWN within {DOWN_WITHIN} s; {figures}")
        check(w["non2xx"] <= MAX_NON_2XX, f"more than {MAX_NON_2XX} non-2xx answers; {figures}")
        check(errors <= MAX_SOCKET_ERRORS, f"more than {MAX_SOCKET_ERRORS} socket errors; {figures}")
        check(w["requests"] > 1000, f"too few requests; {figures}")
        return figures

    def burst_to_survivor(self):
        check(self.stopped and not self.a.alive(), "no instance was stopped (an earlier check failed)")
        check(self.proxy.servers()["a"]["status"].startswith("DOWN"), "server a is not DOWN")
        before_b = int(self.proxy.servers()["b"]["hrsp_2xx"])
        before_instance = instance_requests(self.b)
        statuses = {}
        t0 = time.monotonic()
        for _ in range(BURST):
            try:
                status, body = get(self.proxy.front, "/plaintext")
                key = status if body == b"Hello, World!" or status != 200 else "200 with a wrong body"
            except OSError as e:
                key = type(e).__name__
            statuses[key] = statuses.get(key, 0) + 1
        elapsed = time.monotonic() - t0
        via_b = int(self.proxy.servers()["b"]["hrsp_2xx"]) - before_b
        served = instance_requests(self.b) - before_instance - 1  # not its own /stats
        figures = f"{BURST} requests in {elapsed:.2f} s: {statuses}; via b {via_b}, instance b served {served}"
        check(statuses == {200: BURST}, f"not all answered 200; {figures}")
        check(via_b == BURST and served >= BURST, f"not all from the surviving instance; {figures}")
        return figures

    def cleanup(self):
        for p in (self.proxy, self.a, self.b):
            if p is not None:
                p.kill()


def main():
    binary = sys.argv[1]
    haproxy, wrk = find_tool("haproxy"), find_tool("wrk")
    if haproxy is None or wrk is None:
        print("haproxy or wrk is missing (scripts/bootstrap.sh installs them)", file=sys.stderr)
        return SKIP
    scenario = Scenario(binary, haproxy, wrk)
    status = 1
    try:
        try:
            print(f"ok   0. started: {scenario.start()}", flush=True)
        except Failure as e:
            print(f"FAIL 0. start: {e}", flush=True)
            return 1
        status = run_checks([
            (f"wrk -c16 -d{WRK_SECONDS}s through HAProxy, SIGTERM to one instance after {STOP_AFTER:.0f} s",
             scenario.stop_one_under_load),
            (f"{BURST} new connections after the health-check window, all 200 from the survivor",
             scenario.burst_to_survivor),
        ])
    finally:
        if status and scenario.proxy is not None:
            print(scenario.proxy.log_text()[-3000:], file=sys.stderr)
        scenario.cleanup()
    return status


if __name__ == "__main__":
    sys.exit(main())
