#!/usr/bin/env python3
"""End-to-end test of ringshard-http against real clients (curl, ab, wrk) and
raw sockets, on 127.0.0.1 with --shards 2.

Checks, each printed as `ok  NAME: measurements` or `FAIL NAME: reason`:
  1. curl: keep-alive reuse, HTTP/1.0 with and without keep-alive, a chunked
     POST /echo, `Expect: 100-continue`, Date/Server/Content-Length headers,
     /json, /stats (JSON, 2 shards), /visits (consecutive counts);
  2. 16 pipelined requests written at once come back in order (and a second
     batch with deferred /visits answers in between);
  3. ab -k -n 20000 -c 32 and wrk -t1 -c64 -d2s on /plaintext: no failures;
  4. 431, 414, 413, 400 (garbage, Content-Length with Transfer-Encoding) close
     the connection; 404 and 405 (with Allow) keep it; the server serves on;
  5. clients resetting in the middle of a 50 MB response;
  6. a client that never reads a 10 MiB response: others are served fast, RSS
     stays within 30 MiB of its level before, then all 10 MiB arrive intact;
  7. 1,000 connections dropped at once (half reset): fds back to baseline;
  8. --request-timeout 300: an incomplete request is cut off after 0.25-3 s,
     a slow but complete one is answered, the clock restarts per request;
  9. SIGINT: exit status 0 within 5 s, with fds back to baseline before;
 10. a client that shuts down its sending side after pipelined requests still
     gets every response, then the server closes;
 11. the same while a deferred answer (/visits) is owed;
 12. 1,000 pipelined GET /bytes?n=100000 from a client that does not read:
     the server stops answering (backpressure: fewer than half answered, RSS
     within 30 MiB), then all responses arrive.

usage: http_test.py PATH/TO/ringshard-http [--policy P] [--only N,N,...]
(--only picks checks by number; 9 needs the servers' fds back to baseline)
Exit status: 0 pass, 1 fail, 77 skip (io_uring unavailable, or curl/ab/wrk
missing: scripts/bootstrap.sh installs them).
"""
import email.utils
import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import progtest  # noqa: E402
from progtest import SKIP, Failure, check  # noqa: E402

SERVER_BINARY = None


def rss_limit_mib():
    """30 MiB; twice that for an AddressSanitizer build, whose allocator keeps
    freed blocks in quarantine (the 10 MiB response is built from copies)."""
    with open(SERVER_BINARY, "rb") as f:
        instrumented = b"__asan_init" in f.read()
    return 60 if instrumented else 30
SHARDS = "2"
DEFAULT_CHECKS = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
ROUND_ROBIN = True  # no --policy, or --policy round-robin




# ---- the server process ------------------------------------------------------

class Server(progtest.Server):
    """One ringshard-http process; stderr goes to a file shown on failure."""
    exact_fds = True

    def __init__(self, binary, *args):
        # settle: the sanitizers' runtime opens a pipe for a moment while the
        # shards start (seen under load: 12 fds at start, 10 after), which
        # the exact count would take for a descriptor given back too soon.
        super().__init__(binary, "--shards", SHARDS, *args, settle=0.3)
        self.url = f"http://127.0.0.1:{self.port}"


# ---- a minimal HTTP/1.x client on a raw socket -------------------------------

class Response:
    def __init__(self, version, status, reason, headers, body):
        self.version, self.status, self.reason, self.headers, self.body = version, status, reason, headers, body

    def header(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return f"<{self.version} {self.status} {self.reason}, {len(self.body)} body bytes>"


class Conn:
    """A client connection that reads responses with a deadline on every step."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = bytearray()
        self.reads = 0

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline, what):
        remaining = deadline - time.monotonic()
        check(remaining > 0, f"timed out waiting for {what}; have {bytes(self.buf[:200])!r}")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise Failure(f"timed out waiting for {what}; have {bytes(self.buf[:200])!r}")
        except ConnectionResetError:
            chunk = b""
        self.reads += 1
        return chunk

    def response(self, timeout=5.0, head_request=False):
        deadline = time.monotonic() + timeout
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            chunk = self._fill(deadline, "a response head")
            check(chunk, f"connection closed before a complete response head; have {bytes(self.buf[:200])!r}")
            self.buf += chunk
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[:end + 4]
        lines = head.split("\r\n")
        m = re.fullmatch(r"(HTTP/1\.[01]) (\d{3}) ?(.*)", lines[0])
        check(m, f"bad status line {lines[0]!r}")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            check(sep and name and name == name.strip(), f"bad header line {line!r}")
            headers.append((name, value.strip()))
        status = int(m.group(2))
        r = Response(m.group(1), status, m.group(3), headers, b"")
        if head_request or 100 <= status < 200 or status in (204, 304):
            return r
        length = r.header("Content-Length")
        check(length is not None and length.isdigit(), f"response without a valid Content-Length: {headers}")
        length = int(length)
        while len(self.buf) < length:
            chunk = self._fill(deadline, f"{length} body bytes")
            check(chunk, f"connection closed after {len(self.buf)} of {length} body bytes")
            self.buf += chunk
        r.body = bytes(self.buf[:length])
        del self.buf[:length]
        return r

    def wait_closed(self, timeout=3.0):
        """Seconds until the server closes (EOF or reset); fails if it sends
        anything more or does not close within `timeout`."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            check(not self.buf, f"unexpected bytes before close: {bytes(self.buf[:200])!r}")
            chunk = self._fill(deadline, "the server to close the connection")
            if not chunk:
                return time.monotonic() - t0
            self.buf += chunk

    def still_open(self, wait=0.2):
        """True if nothing (no EOF, no bytes) arrives within `wait` seconds."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(1)
        except socket.timeout:
            return True
        except ConnectionResetError:
            return False
        self.buf += chunk
        return False

    def reset(self):
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()


def get(path, version="1.1", extra=""):
    return f"GET {path} HTTP/{version}\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


def post(path, body, extra=""):
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode()
            + body)


def served(server, timeout=5.0):
    """A GET /plaintext on a new connection is answered within `timeout`;
    returns the seconds it took."""
    check(server.alive(), f"server exited with status {server.proc.returncode}")
    t0 = time.monotonic()
    with Conn(server.port, timeout) as c:
        c.send(get("/plaintext"))
        r = c.response(timeout)
    check(r.status == 200 and r.body == b"Hello, World!", f"GET /plaintext on a new connection gave {r!r}")
    return time.monotonic() - t0


def run(cmd, timeout=30):
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failure(f"{cmd[0]} did not finish within {timeout} s: {' '.join(cmd)}")


def curl(*args, timeout=15):
    p = run(["curl", "--max-time", "10", *args], timeout)
    check(p.returncode == 0, f"curl {' '.join(args)} exited {p.returncode}: {p.stderr.decode(errors='replace')[-800:]}")
    return p


def header_blocks(text):
    """The response header blocks in `curl -D -` output, as lists of lines."""
    return [block.split("\r\n")[:-1] for block in re.findall(r"HTTP/1\.[01] [^\r]*\r\n(?:[^\r]+\r\n)*", text)]


def header_value(lines, name):
    for line in lines[1:]:
        n, _, v = line.partition(":")
        if n.lower() == name.lower():
            return v.strip()
    return None


# ---- 1. curl -----------------------------------------------------------------

def curl_keep_alive(s):
    p = curl("-sv", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}\\n",
             f"{s.url}/plaintext", f"{s.url}/json")
    counts = [int(x) for x in p.stdout.split()]
    check(len(counts) == 2 and sum(counts) == 1, f"two URLs in one curl made {counts} connects (want 1 in all)")
    reused = b"Re-using existing connection" in p.stderr
    return f"num_connects {counts}, curl -v says re-using: {reused}"


def curl_http10(s):
    # Without keep-alive: the server answers HTTP/1.0 with Connection: close
    # and closes; curl therefore connects twice for two URLs.
    p = curl("-0", "-s", "-D", "-", "-o", "/dev/null", "-o", "/dev/null", "-w", "connects=%{num_connects}\\n",
             f"{s.url}/plaintext", f"{s.url}/plaintext")
    out = p.stdout.decode()
    blocks = header_blocks(out)
    check(len(blocks) == 2, f"expected 2 responses, curl printed {out!r}")
    for b in blocks:
        check(b[0].startswith("HTTP/1.0 200"), f"HTTP/1.0 request answered with {b[0]!r}")
        check((header_value(b, "Connection") or "").lower() == "close", f"no Connection: close in {b}")
    connects = [int(x) for x in re.findall(r"connects=(\d+)", out)]
    check(sum(connects) == 2, f"HTTP/1.0 without keep-alive: curl made {connects} connects, want 2")
    with Conn(s.port) as c:  # and the server itself closes
        c.send(get("/plaintext", "1.0"))
        r = c.response()
        check(r.version == "HTTP/1.0" and r.status == 200 and r.body == b"Hello, World!", f"raw HTTP/1.0 gave {r!r}")
        closed_in = c.wait_closed(2.0)
    # With Connection: keep-alive: the response says keep-alive and the
    # connection is reused.
    p = curl("-0", "-s", "-H", "Connection: keep-alive", "-D", "-", "-o", "/dev/null", "-o", "/dev/null",
             "-w", "connects=%{num_connects}\\n", f"{s.url}/plaintext", f"{s.url}/json")
    out = p.stdout.decode()
    blocks = header_blocks(out)
    check(len(blocks) == 2, f"expected 2 responses, curl printed {out!r}")
    for b in blocks:
        check(b[0].startswith("HTTP/1.0 200"), f"HTTP/1.0 keep-alive request answered with {b[0]!r}")
        check((header_value(b, "Connection") or "").lower() == "keep-alive", f"no Connection: keep-alive in {b}")
    connects = [int(x) for x in re.findall(r"connects=(\d+)", out)]
    check(sum(connects) == 1, f"HTTP/1.0 keep-alive: curl made {connects} connects, want 1")
    with Conn(s.port) as c:
        for _ in range(2):
            c.send(get("/json", "1.0", "Connection: keep-alive\r\n"))
            r = c.response()
            check(r.status == 200 and (r.header("Connection") or "").lower() == "keep-alive", f"gave {r!r}")
        check(c.still_open(0.2), "HTTP/1.0 keep-alive connection closed by the server")
    return f"close: 2 connects, server closed in {closed_in * 1000:.0f} ms; keep-alive: 1 connect, stays open"


def curl_chunked_echo(s, rng):
    body = bytes(rng.getrandbits(8) for _ in range(200_000))
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in"), os.path.join(d, "out")
        with open(src, "wb") as f:
            f.write(body)
        p = curl("-sv", "-H", "Transfer-Encoding: chunked", "-H", "Expect:", "--data-binary", f"@{src}",
                 "-o", dst, "-w", "%{http_code}", f"{s.url}/echo")
        check(b"> Transfer-Encoding: chunked" in p.stderr, "curl did not send a chunked body")
        check(p.stdout == b"200", f"chunked POST /echo gave status {p.stdout!r}")
        with open(dst, "rb") as f:
            got = f.read()
    check(got == body, f"chunked POST /echo: {len(got)} bytes back for {len(body)} sent, or different bytes")
    return f"{len(body)} bytes echoed exactly"


def curl_expect_continue(s, rng):
    body = bytes(rng.getrandbits(8) for _ in range(5000))
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in"), os.path.join(d, "out")
        with open(src, "wb") as f:
            f.write(body)
        t0 = time.monotonic()
        # --expect100-timeout 3: curl would send the body anyway after 3 s
        # without a 100; the elapsed time shows the 100 came at once.
        p = curl("-sv", "--expect100-timeout", "3", "-H", "Expect: 100-continue", "--data-binary", f"@{src}",
                 "-o", dst, "-w", "%{http_code}", f"{s.url}/echo")
        elapsed = time.monotonic() - t0
        with open(dst, "rb") as f:
            got = f.read()
    check(b"> Expect: 100-continue" in p.stderr, "curl did not send Expect: 100-continue")
    check(b"< HTTP/1.1 100 Continue" in p.stderr, "curl got no interim 100 Continue")
    check(p.stdout == b"200" and got == body, f"Expect POST /echo gave {p.stdout!r} and {len(got)} bytes")
    check(elapsed < 2.5, f"curl took {elapsed:.2f} s: it waited for a 100 that did not come")
    # The same on a raw socket: the 100 arrives before any body byte is sent.
    with Conn(s.port) as c:
        c.send(f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
               "Expect: 100-continue\r\n\r\n".encode())
        r = c.response(3.0)
        check(r.status == 100, f"headers with Expect: 100-continue answered with {r!r} instead of 100")
        c.send(body)
        r = c.response()
        check(r.status == 200 and r.body == body, f"body after 100 Continue gave {r!r}")
    return f"interim 100 then {len(body)} bytes echoed, curl took {elapsed * 1000:.0f} ms"


def curl_headers(s):
    p = curl("-s", "-D", "-", "-o", "/dev/null", f"{s.url}/plaintext")
    [b] = header_blocks(p.stdout.decode())
    server = header_value(b, "Server")
    check(server == "ringshard", f"Server header {server!r}")
    date = header_value(b, "Date")
    check(date and re.fullmatch(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|"
                                r"Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT", date), f"Date header {date!r} is no IMF-fixdate")
    skew = abs(email.utils.parsedate_to_datetime(date).timestamp() - time.time())
    check(skew < 5, f"Date header {date!r} is {skew:.0f} s off the clock")
    return f"Server: {server}, Date: {date} ({skew:.1f} s off)"


def curl_content_length(s, rng):
    cases = [("/plaintext", 13), ("/json", 27), ("/bytes?n=0", 0), ("/bytes?n=1", 1), ("/bytes?n=123457", 123457)]
    for path, want in cases:
        p = curl("-s", "-D", "-", "-o", "/dev/null", "-w", "size=%{size_download}", f"{s.url}{path}")
        out = p.stdout.decode()
        [b] = header_blocks(out)
        cl = header_value(b, "Content-Length")
        size = int(re.search(r"size=(\d+)", out).group(1))
        check(cl == str(want) and size == want, f"GET {path}: Content-Length {cl}, {size} bytes, want {want}")
    body = bytes(rng.getrandbits(8) for _ in range(777))
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "in")
        with open(src, "wb") as f:
            f.write(body)
        p = curl("-s", "-D", "-", "-o", "/dev/null", "-w", "size=%{size_download}", "--data-binary", f"@{src}",
                 f"{s.url}/echo")
    out = p.stdout.decode()
    [b] = header_blocks(out)
    check(header_value(b, "Content-Length") == "777" and "size=777" in out, f"POST /echo of 777 bytes: {out!r}")
    for bad in ("/bytes?n=abc", "/bytes?n=12x", "/bytes?n=99999999999999999999999"):
        p = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", f"{s.url}{bad}")
        check(p.stdout.decode() == "400", f"GET {bad}: status {p.stdout.decode()}, want 400")
    p = curl("-s", "-I", f"{s.url}/plaintext")  # HEAD: the GET length, no body
    [b] = header_blocks(p.stdout.decode())
    check(b[0].startswith("HTTP/1.1 200") and header_value(b, "Content-Length") == "13", f"HEAD /plaintext: {b}")
    return f"{len(cases)} GETs, a POST and a HEAD: Content-Length matches the bytes; a bad n is a 400"


def curl_json(s):
    p = curl("-s", "-D", "-", f"{s.url}/json")
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    check(body == b'{"message":"Hello, World!"}', f"/json body {body!r}")
    [b] = header_blocks(head.decode() + "\r\n")
    check(header_value(b, "Content-Type") == "application/json", f"/json Content-Type {header_value(b, 'Content-Type')!r}")
    return "body exact, application/json"


def curl_stats(s):
    p = curl("-s", f"{s.url}/stats")
    try:
        stats = json.loads(p.stdout)
    except ValueError:
        raise Failure(f"/stats is not JSON: {p.stdout[:300]!r}")
    shards = stats.get("shards") if isinstance(stats, dict) else None
    check(isinstance(shards, list) and len(shards) == 2, f"/stats does not list 2 shards: {stats}")
    check([x.get("shard") for x in shards] == [0, 1], f"/stats shard ids: {stats}")
    for x in shards:
        check(isinstance(x.get("connections"), int) and isinstance(x.get("requests"), int), f"/stats fields: {x}")
    check(sum(x["requests"] for x in shards) > 0, f"/stats counts no request: {stats}")
    if ROUND_ROBIN:  # the connections so far alternated between the shards
        check(all(x["requests"] > 0 for x in shards), f"a shard served no request so far: {stats}")
    return f"{p.stdout.decode()}"


def curl_visits(s):
    counts = []
    for _ in range(3):  # separate connections: round-robin puts them on both shards
        counts.append(curl("-s", f"{s.url}/visits").stdout)
    counts.append(curl("-s", f"{s.url}/visits", f"{s.url}/visits", f"{s.url}/visits").stdout)
    numbers = [int(n) for n in re.findall(rb"visit (\d+)\n", b"".join(counts))]
    check(len(numbers) == 6, f"/visits answers {counts}")
    check(numbers == list(range(numbers[0], numbers[0] + 6)), f"/visits counts not consecutive: {numbers}")
    return f"counts {numbers}"


# ---- 2. pipelining ---------------------------------------------------------------

def pipelined(s):
    requests, expected = [], []
    for i in range(16):
        kind = i % 3
        if kind == 0:
            requests.append(get("/plaintext"))
            expected.append(b"Hello, World!")
        elif kind == 1:
            requests.append(get("/json"))
            expected.append(b'{"message":"Hello, World!"}')
        else:
            body = f"pipelined body #{i:02d}".encode()
            requests.append(post("/echo", body))
            expected.append(body)
    batch = b"".join(requests)
    with Conn(s.port) as c:
        c.send(batch)  # one write
        for i, want in enumerate(expected):
            r = c.response()
            check(r.status == 200 and r.body == want, f"pipelined response #{i}: {r!r} {r.body[:60]!r}, want {want!r}")
        reads = c.reads
        check(not c.buf, f"bytes after the 16th response: {bytes(c.buf[:100])!r}")
        check(reads <= 4, f"16 pipelined responses took {reads} reads (want them batched)")
        # A second batch with deferred answers (/visits asks shard 0) in between.
        order = [get("/visits"), get("/plaintext"), post("/echo", b"after visit"), get("/visits"), get("/json")]
        c.send(b"".join(order))
        got = [c.response() for _ in order]
        check(re.fullmatch(rb"visit \d+\n", got[0].body) and got[1].body == b"Hello, World!"
              and got[2].body == b"after visit" and re.fullmatch(rb"visit \d+\n", got[3].body)
              and got[4].body == b'{"message":"Hello, World!"}', f"deferred batch out of order: {[r.body for r in got]}")
        a, b = int(got[0].body.split()[1]), int(got[3].body.split()[1])
        check(b == a + 1, f"pipelined /visits counts {a} then {b}")
    return f"{len(batch)} request bytes in one write, 16 responses in order in {reads} read(s); deferred batch in order"


def requests_served(s):
    with Conn(s.port) as c:
        c.send(get("/stats"))
        return sum(x["requests"] for x in json.loads(c.response().body)["shards"])


def pipelined_flood(s):
    """1,000 pipelined GET /bytes?n=100000 (100 MB of responses) from a client
    that does not read: the server answers only until its send queue passes
    the high watermark, then holds the rest back (and stops reading) instead
    of queueing 100 MB; every response arrives once the client reads."""
    n, size = 1000, 100_000
    before = requests_served(s)
    baseline = s.rss_kib()
    c = Conn(s.port)
    c.send(get(f"/bytes?n={size}") * n)  # 47 KB: the kernel takes it all at once
    time.sleep(0.5)
    peak = s.rss_kib()
    answered = requests_served(s) - before - 1  # less the /stats request itself
    latency = served(s)
    peak = max(peak, s.rss_kib())
    growth_mib = (peak - baseline) / 1024
    check(answered < n // 2, f"the server answered {answered} of {n} pipelined requests while the client read nothing")
    check(growth_mib <= rss_limit_mib(), f"RSS grew by {growth_mib:.1f} MiB while a pipelining client does not read")
    deadline = time.monotonic() + 30
    body = b"x" * size
    for i in range(n):
        r = c.response(max(0.1, deadline - time.monotonic()))
        check(r.status == 200 and r.body == body, f"pipelined response #{i} of {n}: {r!r}")
    c.close()
    return (f"answered {answered} of {n} while the client did not read (RSS +{growth_mib:.1f} MiB, another "
            f"client served in {latency * 1000:.0f} ms); then all {n} responses ({n * size // 1000000} MB) arrived")


# ---- 10. half-close ---------------------------------------------------------------

def half_close(s, requests, want):
    """The client sends `requests` then shuts down its sending side: every
    response still arrives, then the server closes."""
    with Conn(s.port) as c:
        c.send(b"".join(requests))
        c.sock.shutdown(socket.SHUT_WR)
        got = []
        for i in range(len(requests)):
            r = c.response(3.0)
            check(r.status == 200 and re.fullmatch(want[i], r.body), f"response #{i} after a half-close: {r!r}")
            got.append(r.body)
        closed_in = c.wait_closed(3.0)
    return f"{len(got)} responses after the client's FIN, then closed in {closed_in * 1000:.0f} ms"


def half_close_immediate(s):
    return half_close(s, [get("/plaintext"), post("/echo", b"half"), get("/json")],
                      [rb"Hello, World!", rb"half", rb'\{"message":"Hello, World!"\}'])


def half_close_deferred(s):
    # Several connections: round-robin puts some on shard 1, where /visits
    # waits for the actor on shard 0 and the FIN is seen first.
    return "; ".join(half_close(s, [get("/visits"), get("/plaintext")], [rb"visit \d+\n", rb"Hello, World!"])
                     for _ in range(4))


# ---- 3. load -------------------------------------------------------------------

def ab_load(s):
    p = run(["ab", "-k", "-n", "20000", "-c", "32", "-s", "10", f"{s.url}/plaintext"], timeout=45)
    out = p.stdout.decode(errors="replace")
    check(p.returncode == 0, f"ab exited {p.returncode}: {out[-600:]} {p.stderr.decode(errors='replace')[-400:]}")

    def field(name):
        m = re.search(rf"^{name}:\s+([\d.]+)", out, re.M)
        check(m, f"no '{name}' in ab output: {out[-800:]}")
        return float(m.group(1))
    complete, failed, rps = field("Complete requests"), field("Failed requests"), field("Requests per second")
    keep_alive = field("Keep-Alive requests")
    non2xx = re.search(r"^Non-2xx responses:\s+(\d+)", out, re.M)
    check(complete == 20000 and failed == 0, f"ab: {complete:.0f} complete, {failed:.0f} failed")
    check(non2xx is None or int(non2xx.group(1)) == 0, f"ab: {non2xx.group(0) if non2xx else ''}")
    check(keep_alive == 20000, f"ab: only {keep_alive:.0f} of 20000 requests on kept-alive connections")
    return f"20000 complete, 0 failed, 0 non-2xx, 20000 keep-alive, {rps:.0f} requests/s"


def wrk_load(s):
    p = run(["wrk", "-t1", "-c64", "-d2s", "--timeout", "2s", f"{s.url}/plaintext"], timeout=20)
    out = p.stdout.decode(errors="replace")
    check(p.returncode == 0, f"wrk exited {p.returncode}: {out} {p.stderr.decode(errors='replace')}")
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    check(m and int(m.group(1)) > 0, f"wrk made no request: {out}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    check(errors is None or all(int(x) == 0 for x in errors.groups()), f"wrk: {errors.group(0) if errors else ''}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    check(non2xx is None, f"wrk: {non2xx.group(0) if non2xx else ''}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return f"{m.group(1)} requests in {m.group(2)}{m.group(3)}, no socket error, no non-2xx, " \
           f"{float(rps.group(1)) if rps else 0:.0f} requests/s"


# ---- 4. bad input -------------------------------------------------------------

def error_then_close(s, raw, status, what):
    with Conn(s.port) as c:
        c.send(raw)
        r = c.response()
        check(r.status == status, f"{what}: {r!r}, want {status}")
        check((r.header("Connection") or "").lower() == "close", f"{what}: {status} without Connection: close")
        c.wait_closed(3.0)
    served(s)


def bad_input(s, small):
    big = b"a" * 9216
    error_then_close(s, b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Big: " + big + b"\r\n\r\n", 431, "9 KiB header")
    error_then_close(s, b"GET /plaintext HTTP/1.1\r\nHost: x\r\n" + b"".join(
        f"X-H{i}: {'b' * 100}\r\n".encode() for i in range(90)) + b"\r\n", 431, "90 headers of 100 B")
    error_then_close(s, b"GET /" + big + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "9 KiB request-target")
    with Conn(s.port) as c:  # just under the limit is fine
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 7000 + b"\r\n\r\n")
        r = c.response()
        check(r.status == 200, f"7 KB header gave {r!r}")
    error_then_close(small, post("/echo", b"z" * 2048), 413, "Content-Length 2048 over --max-body 1024")
    error_then_close(small, b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"400\r\n" + b"y" * 1024 + b"\r\n400\r\n" + b"y" * 1024 + b"\r\n0\r\n\r\n", 413,
                     "chunked body of 2048 over --max-body 1024")
    with Conn(small.port) as c:  # exactly the limit is fine
        c.send(post("/echo", b"q" * 1024))
        r = c.response()
        check(r.status == 200 and r.body == b"q" * 1024, f"1024-byte body with --max-body 1024 gave {r!r}")
    served(small)
    error_then_close(s, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n\r\n", 400, "TLS-like garbage")
    error_then_close(s, b"GET /plaintext HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400, "header without colon")
    error_then_close(s, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n0\r\n\r\n", 400, "Content-Length with Transfer-Encoding")
    with Conn(s.port) as c:  # 404 and 405 keep the connection
        c.send(get("/nope"))
        r = c.response()
        check(r.status == 404, f"GET /nope: {r!r}")
        c.send(post("/plaintext", b""))
        r = c.response()
        check(r.status == 405, f"POST /plaintext: {r!r}")
        allow = r.header("Allow") or ""
        check("GET" in [m.strip() for m in allow.split(",")], f"405 Allow header {allow!r}")
        c.send(get("/plaintext"))
        r = c.response()
        check(r.status == 200, f"GET /plaintext after 404 and 405 on the same connection: {r!r}")
    served(s)
    return f"431 x2, 414, 413 x2, 400 x3 closed; 404, 405 (Allow: {allow}) kept the connection; still serving"


# ---- 5. reset during a large response ------------------------------------------

def reset_mid_response(s):
    details = []
    for _ in range(3):
        t0 = time.monotonic()
        c = Conn(s.port)
        c.send(get("/bytes?n=50000000"))
        deadline = time.monotonic() + 10
        got = 0
        while got < 256 * 1024:
            chunk = c._fill(deadline, "the start of a 50 MB response")
            check(chunk, "server closed during the 50 MB response")
            got += len(chunk)
        first = time.monotonic() - t0
        c.reset()
        latency = served(s)
        details.append(f"{got // 1024} KiB after {first:.2f} s, next GET {latency * 1000:.0f} ms")
    return f"reset after {'; '.join(details)}"


# ---- 6. a client that never reads -------------------------------------------------

def stalled_reader(s):
    n = 10 * 1024 * 1024
    for _ in range(8):  # every shard has had connections (its receive buffers are allocated)
        served(s)
    time.sleep(0.1)
    baseline = s.rss_kib()
    stalled = Conn(s.port)
    # A small receive buffer, so that nearly all of the response stays queued
    # in the server.
    stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    stalled.send(get(f"/bytes?n={n}"))
    # Until the first response bytes arrive (peeked, not read) the handler
    # builds the response: RSS then peaks briefly, not counted as stalled.
    building_peak = baseline
    deadline = time.monotonic() + 10
    stalled.sock.setblocking(False)
    while True:
        building_peak = max(building_peak, s.rss_kib())
        try:
            if stalled.sock.recv(1, socket.MSG_PEEK):
                break
        except BlockingIOError:
            pass
        check(time.monotonic() < deadline, "no byte of the 10 MiB response within 10 s")
        time.sleep(0.002)
    time.sleep(0.1)
    latencies, peak = [], s.rss_kib()
    with Conn(s.port) as kept:
        for i in range(40):
            if i % 2:
                latencies.append(served(s, timeout=2.0))
            else:
                t0 = time.monotonic()
                kept.send(get("/json"))
                r = kept.response(2.0)
                check(r.status == 200, f"keep-alive GET /json while a client stalls: {r!r}")
                latencies.append(time.monotonic() - t0)
            peak = max(peak, s.rss_kib())
            time.sleep(0.01)
    slowest = max(latencies)
    check(slowest < 0.5, f"with a stalled client, the slowest of 40 requests took {slowest:.2f} s")
    growth_mib = (peak - baseline) / 1024
    check(growth_mib <= rss_limit_mib(), f"RSS grew by {growth_mib:.1f} MiB while a client stalls on 10 MiB")
    r = stalled.response(timeout=20)
    check(r.status == 200 and len(r.body) == n and r.body.count(b"x") == n,
          f"stalled client: {r!r}, {r.body.count(b'x')} 'x' of {n}")
    stalled.close()
    return (f"40 requests meanwhile, slowest {slowest * 1000:.1f} ms; RSS {baseline / 1024:.0f} MiB before, "
            f"+{(building_peak - baseline) / 1024:.1f} MiB while building the response, "
            f"+{growth_mib:.1f} MiB at most while stalled; then all {n} bytes read intact")


# ---- 7. many connections dropped at once ----------------------------------------

def mass_drop(s):
    socks = []
    for i in range(1000):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        socks.append(c)
    for i, c in enumerate(socks):
        if i % 4 == 1:
            c.send(get("/plaintext"))
        elif i % 4 == 2:
            c.send(b"GET /plaintext HTTP/1.1\r\nHo")
        elif i % 4 == 3:
            c.send(get("/bytes?n=100000"))
    time.sleep(0.1)
    peak = s.fd_count()
    for i, c in enumerate(socks):
        if i % 2 == 0:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    latency = served(s)
    took = s.wait_for_baseline_fds(5.0)
    with Conn(s.port) as c:  # /stats agrees: only this connection is live
        deadline = time.monotonic() + 3
        while True:
            c.send(get("/stats"))
            live = sum(x["connections"] for x in json.loads(c.response().body)["shards"])
            if live == 1:
                break
            check(time.monotonic() < deadline, f"/stats counts {live} live connections, want 1")
            time.sleep(0.05)
    return (f"{peak} fds with 1,000 open; right after the drop a GET took {latency * 1000:.0f} ms; fds back to "
            f"{s.baseline_fds} {took * 1000:.0f} ms later; /stats: 1 live")


# ---- 8. slow clients ----------------------------------------------------------

def slow_clients(s, timed):
    # On the default server (10 s timeout) the same partial request survives:
    # the cut-off on `timed` comes from --request-timeout.
    untimed = Conn(s.port)
    untimed.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n")
    results = []
    for what, raw in (("incomplete header block", b"GET /plaintext HTTP/1.1\r\nHost: x\r\n"),
                      ("incomplete body", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")):
        with Conn(timed.port) as c:
            c.send(raw)
            t0 = time.monotonic()
            closed_in = c.wait_closed(3.0)
            check(0.25 <= closed_in <= 3.0, f"{what}: closed after {closed_in:.2f} s with --request-timeout 300")
            results.append(f"{what} cut off after {closed_in * 1000:.0f} ms")
    served(timed)
    # A slow request within the timeout is answered; the clock restarts with
    # each request, and idling between requests is not timed.
    with Conn(timed.port) as c:
        for _ in range(2):
            t0 = time.monotonic()
            for piece in (b"GET /plaintext HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
                c.send(piece)
                time.sleep(0.06)
            r = c.response(2.0)
            check(r.status == 200 and r.body == b"Hello, World!", f"slow but complete request gave {r!r}")
            slow = time.monotonic() - t0
            check(c.still_open(0.5), "keep-alive connection closed while idle between requests")
    results.append(f"two requests sent over {slow * 1000:.0f} ms each with 500 ms idle between: both answered")
    check(untimed.still_open(0.05), "the default server closed a partial request within ~1 s")
    untimed.send(b"\r\n")
    r = untimed.response()
    check(r.status == 200, f"completing the partial request on the default server gave {r!r}")
    untimed.close()
    return "; ".join(results)


# ---- main ---------------------------------------------------------------------

def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    binary, extra, only = args[0], [], None
    global SERVER_BINARY
    SERVER_BINARY = binary
    i = 1
    while i < len(args):
        if args[i] == "--only":
            only = {int(x) for x in args[i + 1].split(",")}
        else:
            extra += args[i:i + 2]
        i += 2
    global ROUND_ROBIN
    if "--policy" in extra:
        ROUND_ROBIN = extra[extra.index("--policy") + 1] == "round-robin"
    missing = [tool for tool in ("curl", "ab", "wrk") if shutil.which(tool) is None]
    if missing:
        print(f"skipped: {', '.join(missing)} not installed (scripts/bootstrap.sh installs them)")
        return SKIP
    seed = int(os.environ.get("RINGSHARD_TEST_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    print(f"seed {seed} (set RINGSHARD_TEST_SEED to repeat)")
    started = time.monotonic()
    servers = []
    try:
        main_server = Server(binary, *extra)
        servers.append(main_server)
        timed = Server(binary, *extra, "--max-body", "1024", "--request-timeout", "300")
        servers.append(timed)
    except Failure as e:
        print(f"FAIL start: {e}")
        for srv in servers:
            srv.kill()
        return 1
    try:
        return run_checks(main_server, timed, servers, only, rng, started)
    finally:
        for srv in servers:
            srv.kill()


def run_checks(s, timed, servers, only, rng, started):
    failures = []
    passed = 0
    print(f"server pid {s.proc.pid} port {s.port} ({s.baseline_fds} fds); "
          f"--max-body 1024 --request-timeout 300 server pid {timed.proc.pid} port {timed.port}")
    checks = [
        (1, "curl keep-alive reuse", lambda: curl_keep_alive(s)),
        (1, "curl HTTP/1.0 with and without keep-alive", lambda: curl_http10(s)),
        (1, "curl chunked POST /echo", lambda: curl_chunked_echo(s, rng)),
        (1, "curl Expect: 100-continue", lambda: curl_expect_continue(s, rng)),
        (1, "curl Date and Server headers", lambda: curl_headers(s)),
        (1, "curl Content-Length", lambda: curl_content_length(s, rng)),
        (1, "curl /json", lambda: curl_json(s)),
        (1, "curl /stats", lambda: curl_stats(s)),
        (1, "curl /visits", lambda: curl_visits(s)),
        (2, "16 pipelined requests", lambda: pipelined(s)),
        (3, "ab -k -n 20000 -c 32", lambda: ab_load(s)),
        (3, "wrk -t1 -c64 -d2s", lambda: wrk_load(s)),
        (4, "bad input", lambda: bad_input(s, timed)),
        (5, "reset in a 50 MB response", lambda: reset_mid_response(s)),
        (6, "stalled reader of 10 MiB", lambda: stalled_reader(s)),
        (7, "1,000 connections dropped", lambda: mass_drop(s)),
        (8, "slow clients, --request-timeout 300", lambda: slow_clients(s, timed)),
        (10, "half-close after immediate answers", lambda: half_close_immediate(s)),
        (11, "half-close while a deferred answer is owed", lambda: half_close_deferred(s)),
        (12, "1,000 pipelined 100 kB responses, not reading", lambda: pipelined_flood(s)),
    ]
    for number, name, fn in checks:
        if number not in (only if only is not None else DEFAULT_CHECKS):
            continue
        t0 = time.monotonic()
        try:
            result = fn()
            passed += 1
            print(f"ok   {number}. {name}: {result} ({time.monotonic() - t0:.1f} s)", flush=True)
        except Exception as e:  # Failure, or an OSError such as a reset where none was expected
            failures.append(f"{number}. {name}")
            print(f"FAIL {number}. {name}: {e if isinstance(e, Failure) else repr(e)}", flush=True)
            if not s.alive() or not timed.alive():
                print("FAIL a server died; stopping here")
                break
    if 9 in (only if only is not None else DEFAULT_CHECKS):
        for label, srv in (("main", s), ("--request-timeout", timed)):
            try:
                back = srv.wait_for_baseline_fds(5.0)
                took = srv.stop()
                passed += 1
                print(f"ok   9. SIGINT ({label} server): fds back to {srv.baseline_fds} after {back * 1000:.0f} ms, "
                      f"exit status 0 in {took * 1000:.0f} ms")
            except Exception as e:
                failures.append(f"9. SIGINT ({label} server)")
                print(f"FAIL 9. SIGINT ({label} server): {e}")
    for srv in servers:
        srv.kill()
    elapsed = time.monotonic() - started
    if failures:
        for srv in servers:
            text = srv.stderr_text()
            if text:
                print(f"server {' '.join(srv.proc.args)} stderr:\n{text}")
        print(f"FAILED {len(failures)} of {passed + len(failures)} checks: {'; '.join(failures)} ({elapsed:.1f} s)")
        return 1
    print(f"passed: {passed} checks in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
