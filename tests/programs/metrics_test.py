#!/usr/bin/env python3
"""The Prometheus metrics of the servers, scraped with curl and parsed with
python3-prometheus-client, checked against the traffic sent:

  (a) ringshard-echo --shards 2 --metrics-port 0: after N bytes echoed over
      C connections, received and sent bytes grew by at least N, accepted
      connections by at least C, and once the clients closed, connections
      closed by the peer by at least C; every series has a shard label for
      shards 0 and 1.
  (b) ringshard-http --shards 2, /metrics on its own port: after K requests
      to /plaintext and one to a missing path, 2xx responses grew by exactly
      K + 1 (the first scrape is one), 4xx by exactly 1, and the handler
      latency histogram's count by K + 1 (a 404 runs no handler).
  (c) ringshard-kv and ringshard-chat --metrics-port 0: scrapes parse, and
      the kv bytes received count a PING.

usage: metrics_test.py BIN_DIR
Exit status: 0 pass, 1 fail, 77 skip (curl or python3-prometheus-client missing).
"""
import os
import shutil
import socket
import subprocess
import sys
import time

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print("skip: python3-prometheus-client is not installed (scripts/bootstrap.sh installs it)")
    sys.exit(77)


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Server:
    def __init__(self, path, *args):
        self.proc = subprocess.Popen([path, "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.port = self.metrics_port = None
        deadline = time.time() + 10
        want_metrics = "--metrics-port" in args
        while time.time() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                raise Failure(f"{path} exited: {self.proc.stderr.read().decode()}")
            if line.startswith("listening on "):
                self.port = int(line.rsplit(":", 1)[1])
            elif line.startswith("metrics on "):
                self.metrics_port = int(line.rsplit(":", 1)[1])
            if self.port and (self.metrics_port or not want_metrics):
                return
        raise Failure(f"{path}: no listening line")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        check(self.proc.returncode == 0, f"exit status {self.proc.returncode}")


def scrape(port):
    """{(name, labels without shard): {shard: value}} from one scrape, checked for format."""
    p = subprocess.run(["curl", "-s", "--max-time", "5", "-D", "-", f"http://127.0.0.1:{port}/metrics"],
                       capture_output=True, timeout=10)
    check(p.returncode == 0, f"curl failed: {p.stderr.decode()}")
    head, _, body = p.stdout.decode().partition("\r\n\r\n")
    check("content-type: text/plain; version=0.0.4" in head.lower(), f"content type:\n{head}")
    values = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            labels = dict(s.labels)
            shard = labels.pop("shard", None)
            check(shard is not None, f"{s.name} has no shard label")
            values.setdefault((s.name, tuple(sorted(labels.items()))), {})[shard] = s.value
    return values


def total(values, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    check(key in values, f"no series {name} {labels}")
    return sum(values[key].values())


def test_echo(bin_dir):
    # One slot per shard's fixed file table: of the 4 connections (2 per
    # shard, open together) at least one per shard keeps a plain descriptor.
    s = Server(os.path.join(bin_dir, "ringshard-echo"), "--shards", "2", "--metrics-port", "0", "--fixed-files", "1")
    try:
        before = scrape(s.metrics_port)
        for (name, _), shards in before.items():
            check(set(shards) == {"0", "1"}, f"{name}: shards {sorted(shards)}")
        conns, per_conn = 4, 256 * 1024
        payload = bytes(range(256)) * (per_conn // 256)
        socks = [socket.create_connection(("127.0.0.1", s.port), timeout=10) for _ in range(conns)]
        for c in socks:
            c.sendall(payload)
            got = 0
            while got < per_conn:
                chunk = c.recv(65536)
                check(chunk, "echo closed early")
                got += len(chunk)
        n = conns * per_conn
        after = scrape(s.metrics_port)
        d = lambda name, **l: total(after, name, **l) - total(before, name, **l)
        check(d("ringshard_received_bytes_total") >= n, f"bytes in grew {d('ringshard_received_bytes_total')} < {n}")
        check(d("ringshard_sent_bytes_total") >= n, f"bytes out grew {d('ringshard_sent_bytes_total')} < {n}")
        check(d("ringshard_recv_completions_total") >= conns, "recv completions")
        check(d("ringshard_send_completions_total") >= conns, "send completions")
        check(d("ringshard_direct_fallbacks_total") >= 2, f"direct fallbacks grew {d('ringshard_direct_fallbacks_total')}")
        check(d("ringshard_kept_copies_total") >= 0, "kept copies")
        check(d("ringshard_connections_accepted_total") >= conns, "accepted")
        check(total(after, "ringshard_connections_open") >= conns, "open connections")
        check(total(after, "ringshard_ring_enters_total") > 0 and total(after, "ringshard_ring_completions_total") > 0,
              "ring enters and completions")
        for c in socks:
            c.close()
        deadline = time.time() + 5
        while True:
            now = scrape(s.metrics_port)
            closed = total(now, "ringshard_connections_closed_total", reason="peer_closed") - \
                total(before, "ringshard_connections_closed_total", reason="peer_closed")
            if closed >= conns:
                break
            check(time.time() < deadline, f"peer_closed grew by {closed} < {conns} after the clients closed")
            time.sleep(0.05)
        print(f"ok: ringshard-echo metrics: {n} bytes echoed, in +{d('ringshard_received_bytes_total'):.0f}, "
              f"out +{d('ringshard_sent_bytes_total'):.0f}, peer_closed +{closed:.0f}")
    finally:
        s.stop()


def test_http(bin_dir):
    s = Server(os.path.join(bin_dir, "ringshard-http"), "--shards", "2")
    try:
        before = scrape(s.port)
        k = 50
        urls = [f"http://127.0.0.1:{s.port}/plaintext"] * k + [f"http://127.0.0.1:{s.port}/missing"]
        args = [a for u in urls for a in ("-o", "/dev/null", u)]  # one connection, kept alive
        p = subprocess.run(["curl", "-s", "--max-time", "10", "-w", "%{http_code}\n", *args],
                           capture_output=True, timeout=20)
        codes = p.stdout.decode().split()
        check(codes == ["200"] * k + ["404"], f"curl codes {codes}")
        after = scrape(s.port)
        d = lambda name, **l: total(after, name, **l) - total(before, name, **l)
        check(d("ringshard_http_responses_total", code="2xx") == k + 1, f"2xx grew {d('ringshard_http_responses_total', code='2xx')}, not {k + 1}")
        check(d("ringshard_http_responses_total", code="4xx") == 1, "4xx did not grow by 1")
        check(d("ringshard_http_responses_total", code="5xx") == 0, "5xx grew")
        check(d("ringshard_http_handler_seconds_count") == k + 1, f"histogram count grew {d('ringshard_http_handler_seconds_count')}")
        check(d("ringshard_http_handler_seconds_bucket", le="+Inf") == k + 1, "+Inf bucket")
        check(d("ringshard_http_requests_total") >= k + 1, "requests")
        print(f"ok: ringshard-http metrics: {k} requests and one 404 counted as 2xx +{k + 1} (with a scrape), 4xx +1")
    finally:
        s.stop()


def test_kv_and_chat(bin_dir):
    s = Server(os.path.join(bin_dir, "ringshard-kv"), "--shards", "2", "--metrics-port", "0")
    try:
        before = scrape(s.metrics_port)
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
            c.sendall(b"*1\r\n$4\r\nPING\r\n")
            check(c.recv(64) == b"+PONG\r\n", "PING")
        after = scrape(s.metrics_port)
        grew = total(after, "ringshard_received_bytes_total") - total(before, "ringshard_received_bytes_total")
        check(grew >= 14, f"kv bytes in grew {grew}")
    finally:
        s.stop()
    s = Server(os.path.join(bin_dir, "ringshard-chat"), "--shards", "2", "--metrics-port", "0")
    try:
        check(total(scrape(s.metrics_port), "ringshard_actors_live") >= 2, "chat: Room actors")
    finally:
        s.stop()
    print("ok: ringshard-kv and ringshard-chat serve metrics")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    if shutil.which("curl") is None:
        print("skip: curl is not installed")
        return 77
    try:
        test_echo(sys.argv[1])
        test_http(sys.argv[1])
        test_kv_and_chat(sys.argv[1])
    except Failure as e:
        print("FAIL:", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
