#!/usr/bin/env python3
"""The per-core throughput report (run through perf/report.sh, which builds).

Starts every server under test, drives it, and writes a markdown report, the
raw results (JSON) and charts (gnuplot, SVG and PNG) to a new directory under
perf/results/. Measurements are interleaved: for every cell of a grid, round
r runs each server once (A B C ... A B C ...), so that the machine's drift
touches every server alike; the tables give medians over the rounds.

Grids: echo servers driven by ringshard-load; HTTP servers by wrk and
h2load; Redis-protocol servers (ringshard-kv, redis-server) by
redis-benchmark. Memory: idle connections per echo server, and bytes per
key for 1,000,000 small keys in ringshard-kv and redis-server.

Pinning: a one-core server runs on CPU 0 and the load on CPU 1. A two-core
server (2 shards, 2 nginx workers) may use both CPUs, and the load is not
pinned: it shares the cores with the server.

Per-core throughput: requests/s divided by the CPU the server used (CPU
seconds per second, from /proc). When the load generator saturates before the
server (as wrk does against a fast HTTP server), raw requests/s compare the
load generators; requests/s per core still compares the servers. Both are
reported, with the CPU use of server and load, and the server's CPU microseconds
per request (µs/req, the inverse of per core; field us_per_req in results.json).
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HZ = os.sysconf("SC_CLK_TCK")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---- processes ----------------------------------------------------------------------

def process_tree(pid):
    """pid and its descendants (nginx's workers are children of its master)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def cpu_seconds(pid):
    """User + system CPU seconds of a process tree (all threads)."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / HZ


def rss_kib(pid):
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def open_fds(pid):
    """Open files of a process tree: its descriptors, and the files installed
    in its io_uring fixed file tables (direct descriptors, which have no fd:
    the `SLOT: PATH` lines after UserFiles in the ring's fdinfo)."""
    total = 0
    for p in process_tree(pid):
        try:
            fds = os.listdir(f"/proc/{p}/fd")
        except OSError:
            continue
        total += len(fds)
        for fd in fds:
            try:
                if "io_uring" in os.readlink(f"/proc/{p}/fd/{fd}"):
                    with open(f"/proc/{p}/fdinfo/{fd}") as f:
                        info = f.read()
                    table = info.partition("UserFiles:")[2].partition("UserBufs:")[0]
                    total += len(re.findall(r"^\s*\d+: ", table, re.M))
            except OSError:
                pass
    return total


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def taskset(cpus):
    return ["taskset", "-c", cpus] if cpus else []


class Server:
    """A server under test. `cpus` is the taskset CPU list (None: any)."""

    def __init__(self, name, label, cores, cpus):
        self.name, self.label, self.cores, self.cpus = name, label, cores, cpus
        self.proc = None
        self.port = None
        self.workdir = tempfile.mkdtemp(prefix=f"ringshard-report-{name}-")

    def start(self):
        raise NotImplementedError

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    stop_signal = signal.SIGINT

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class ListeningServer(Server):
    """A program that takes --port 0 and prints `listening on HOST:PORT` first."""

    def __init__(self, name, label, cores, cpus, argv):
        super().__init__(name, label, cores, cpus)
        self.argv = argv

    def start(self):
        self.stderr = open(os.path.join(self.workdir, "stderr"), "wb")
        self.proc = subprocess.Popen(taskset(self.cpus) + self.argv + ["--port", "0"],
                                     stdout=subprocess.PIPE, stderr=self.stderr)
        line = self.proc.stdout.readline().decode().strip()
        m = re.fullmatch(r"listening on [0-9.]+:(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"{self.name}: expected 'listening on HOST:PORT', got {line!r}")
        self.port = int(m.group(1))


NGINX_CONF = """worker_processes {workers};
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      default_type text/plain;
      return 200 "Hello, World!";
    }}
  }}
}}
"""


class Nginx(Server):
    """nginx from Debian's nginx-light with a generated configuration."""

    stop_signal = signal.SIGTERM

    def __init__(self, name, label, cores, cpus, workers):
        super().__init__(name, label, cores, cpus)
        self.workers = workers

    def start(self):
        self.port = free_port()
        conf = os.path.join(self.workdir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(workers=self.workers, dir=self.workdir, port=self.port))
        self.stderr = open(os.path.join(self.workdir, "stderr"), "wb")
        self.proc = subprocess.Popen(taskset(self.cpus) + [nginx_binary(), "-c", conf, "-p", self.workdir],
                                     stdout=subprocess.DEVNULL, stderr=self.stderr)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {open(os.path.join(self.workdir, 'stderr')).read()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                if len(process_tree(self.pid)) > self.workers:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("nginx did not start listening")


class RedisServer(Server):
    """redis-server from Debian's redis-server package, without persistence."""

    stop_signal = signal.SIGTERM

    def start(self):
        self.port = free_port()
        self.stderr = open(os.path.join(self.workdir, "stderr"), "wb")
        self.proc = subprocess.Popen(
            taskset(self.cpus) + [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no", "--daemonize", "no", "--dir", self.workdir,
                                  "--logfile", os.path.join(self.workdir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=self.stderr)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {open(os.path.join(self.workdir, 'stderr')).read()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start listening")


def redis_binary():
    path = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(path, os.X_OK):
        raise RuntimeError("redis-server not found (Debian package redis-server)")
    return path


def nginx_binary():
    for path in ("/usr/sbin/nginx", shutil.which("nginx") or ""):
        if path and os.access(path, os.X_OK):
            return path
    raise RuntimeError("nginx not found (Debian package nginx-light)")


# ---- loads --------------------------------------------------------------------------

def machine_busy_seconds():
    """CPU seconds the whole machine has spent busy since boot, all CPUs:
    user, nice, system, irq and softirq of /proc/stat's "cpu" line (not idle,
    iowait or steal)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def run_measured(server, argv, cpus):
    """Runs a load program to its end while timing the server's CPU use.
    Returns (exit status, stdout, stderr, wall seconds, server CPU seconds,
    machine busy seconds); the load's own CPU comes from RUSAGE_CHILDREN
    (ChildCpu)."""
    cpu0 = cpu_seconds(server.pid)
    busy0 = machine_busy_seconds()
    t0 = time.monotonic()
    proc = subprocess.Popen(taskset(cpus) + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=600)
    wall = time.monotonic() - t0
    cpu1 = cpu_seconds(server.pid)
    busy = machine_busy_seconds() - busy0
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"), wall, cpu1 - cpu0, busy


class ChildCpu:
    """CPU seconds used by finished children since the last call."""

    def __init__(self):
        self.last = self._now()

    @staticmethod
    def _now():
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def delta(self):
        now = self._now()
        d, self.last = now - self.last, now
        return d


CHILD_CPU = None


def measure(server, argv, load_cpus, parse):
    """One run: the load's own figures, plus CPU use of both sides."""
    CHILD_CPU.delta()
    code, out, err, wall, server_cpu, machine_busy = run_measured(server, argv, load_cpus)
    load_cpu = CHILD_CPU.delta()
    if not server.alive():
        raise RuntimeError(f"{server.name} died during {' '.join(argv)}")
    result = parse(code, out, err)
    result["server_cores"] = server_cpu / wall
    result["load_cores"] = load_cpu / wall
    result["per_core"] = result["rps"] / result["server_cores"] if result["server_cores"] > 0 else 0.0
    # The server's CPU time per request: a gain shows here even where the load
    # generator, not the server, limits the raw requests/s.
    result["us_per_req"] = 1e6 * result["server_cores"] / result["rps"] if result["rps"] > 0 else 0.0
    # The whole machine's busy CPU (server, load, ksoftirqd and anything else
    # running) per request. On loopback the receiving side's TCP work runs
    # in softirq or in the process context of either side, depending on
    # timing, and tick accounting charges softirq time to whichever task the
    # tick interrupted: at large messages the server's own CPU swings with
    # it (the load's the other way), the machine's total much less.
    # Comparable only between servers driven by the same load generator.
    result["machine_cores"] = machine_busy / wall
    result["machine_us_per_req"] = 1e6 * result["machine_cores"] / result["rps"] if result["rps"] > 0 else 0.0
    return result


def echo_load_argv(binary, port, conns, size, depth, warmup, duration):
    return [binary, "--host", "127.0.0.1", "--port", str(port), "--connections", str(conns),
            "--size", str(size), "--depth", str(depth), "--warmup", str(warmup),
            "--duration", str(duration), "--json"]


def parse_echo_load(code, out, err):
    lines = [l for l in out.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"ringshard-load printed no JSON (exit {code}): {err.strip()[-500:]}")
    j = json.loads(lines[-1])
    if code != 0 or j.get("errors", 0):
        raise RuntimeError(f"ringshard-load failed (exit {code}, {j.get('errors')} errors): {err.strip()[-500:]}")
    return {"rps": float(j["requests_per_s"]), "mbps": float(j.get("mb_per_s", 0.0)),
            "p50_us": float(j.get("p50_us", 0.0)), "p99_us": float(j.get("p99_us", 0.0)),
            "p999_us": float(j.get("p999_us", 0.0)), "errors": int(j.get("errors", 0))}


def wrk_argv(port, conns, duration, depth):
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(duration))}s", "--latency"]
    if depth > 1:
        argv += ["-s", os.path.join(ROOT, "perf", "load", "pipeline.lua")]
    argv.append(f"http://127.0.0.1:{port}/plaintext")
    if depth > 1:
        argv += ["--", str(depth)]
    return argv


def latency_us(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s)", text)
    if not m:
        return 0.0
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]


def parse_wrk(code, out, err):
    if code != 0:
        raise RuntimeError(f"wrk failed (exit {code}): {out.strip()[-300:]} {err.strip()[-300:]}")
    m = re.search(r"^Requests/sec:\s*([0-9.]+)", out, re.M)
    if not m:
        raise RuntimeError(f"wrk printed no rate: {out[-300:]}")
    errors = 0
    for pat in (r"Non-2xx or 3xx responses:\s*(\d+)", r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"):
        em = re.search(pat, out)
        if em:
            errors += sum(int(g) for g in em.groups())
    # "50%  88.00us" (wrk 4), "50.000%  88.00us" (wrk2)
    pct = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)", out, re.M))
    if errors:
        raise RuntimeError(f"wrk reported {errors} errors: {out[-400:]}")
    return {"rps": float(m.group(1)), "p50_us": latency_us(pct.get("50", "")),
            "p99_us": latency_us(pct.get("99", "")), "errors": errors}


def h2load_argv(port, conns, duration, depth, warmup):
    return ["h2load", "--h1", "-t1", f"-c{conns}", f"-m{depth}", "-D", str(max(1, round(duration))),
            f"--warm-up-time={max(100, round(warmup * 1000))}ms", f"http://127.0.0.1:{port}/plaintext"]


def parse_h2load(code, out, err):
    m = re.search(r"finished in [0-9.]+s, ([0-9.]+) req/s", out)
    s = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    if code != 0 or not m or not s:
        raise RuntimeError(f"h2load failed (exit {code}): {out[-300:]} {err[-300:]}")
    if int(s.group(2)) or int(s.group(3)):
        raise RuntimeError(f"h2load reported failures: {s.group(0)}")
    return {"rps": float(m.group(1)), "errors": 0}


KV_KEYSPACE = 100_000  # redis-benchmark -r: keys key:000000000000 .. key:000000099999


def redis_benchmark_argv(port, test, depth, n):
    return ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", "50", "-n", str(n), "-P", str(depth),
            "-r", str(KV_KEYSPACE), "-t", test, "--csv"]


def parse_redis_benchmark(code, out, err):
    rows = re.findall(r'^"([^"]+)","([0-9.]+)","([0-9.]+)","[0-9.]+","([0-9.]+)","[0-9.]+","([0-9.]+)"', out, re.M)
    if code != 0 or not rows or "Error" in out + err:
        raise RuntimeError(f"redis-benchmark failed (exit {code}): {out.strip()[-300:]} {err.strip()[-300:]}")
    _, rps, _, p50, p99 = rows[-1]
    return {"rps": float(rps), "p50_us": float(p50) * 1000, "p99_us": float(p99) * 1000, "errors": 0}


def kv_fill(server):
    """Every key of the keyspace set once (so that GETs find values), unmeasured."""
    proc = subprocess.run(redis_benchmark_argv(server.port, "set", 16, 3 * KV_KEYSPACE),
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"filling {server.name} with redis-benchmark failed: {proc.stdout[-300:]} {proc.stderr[-300:]}")


def kv_requests(server, test, depth, duration):
    """How many requests make a run of about `duration` seconds, from a short
    unmeasured run (redis-benchmark counts requests, not seconds)."""
    n = 20000 * (8 if depth > 1 else 1) // (5 if test == "mset" else 1)
    proc = subprocess.run(redis_benchmark_argv(server.port, test, depth, n), capture_output=True, text=True, timeout=300)
    rate = parse_redis_benchmark(proc.returncode, proc.stdout, proc.stderr)["rps"]
    return max(n, int(rate * duration))


# ---- grids --------------------------------------------------------------------------

def interleaved(cell, servers, rounds, run_one):
    """Round r runs every server once; returns {server name: [result per round]}."""
    results = {s.name: [] for s in servers}
    for r in range(rounds):
        for s in servers:
            res = run_one(s)
            results[s.name].append(res)
            log(f"  {cell} round {r + 1}/{rounds} {s.label:24} {res['rps']:>11,.0f} req/s  "
                f"server {res['server_cores']:.2f} cores  load {res['load_cores']:.2f} cores  "
                f"{res['per_core']:>11,.0f} req/s per core  {res['us_per_req']:.2f} µs/req")
    return results


def run_grid(servers, rounds, cells):
    """Starts `servers`, measures each cell (key, label, fields, run) with
    interleaved rounds, stops the servers; returns {key: fields + runs + medians}."""
    out = {}
    for s in servers:
        s.start()
    try:
        for key, label, fields, run in cells:
            runs = interleaved(label, servers, rounds, run)
            out[key] = {**fields, "runs": runs, "median": {k: summarize(v) for k, v in runs.items()}}
    finally:
        for s in servers:
            s.stop()
    return out


def median_of(runs, key):
    return statistics.median(r[key] for r in runs)


def summarize(runs):
    keys = [k for k in runs[0] if isinstance(runs[0][k], (int, float))]
    return {k: median_of(runs, k) for k in keys}


# ---- memory -------------------------------------------------------------------------

def open_idle(port, count, timeout=60):
    socks = []
    deadline = time.monotonic() + timeout
    for _ in range(count):
        if time.monotonic() > deadline:
            raise RuntimeError("opening idle connections took too long")
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        socks.append(s)
    return socks


def wait_for_fds(pid, target, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if open_fds(pid) >= target:
            return True
        time.sleep(0.05)
    return False


def memory_run(server, counts):
    """RSS of a fresh server holding each number of idle connections."""
    server.start()
    try:
        # One short echo first, so that the first-connection setup (buffer
        # rings, tables) is in the baseline and not charged to the idle ones.
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"x")
            s.recv(1)
        time.sleep(0.3)
        base_fds = open_fds(server.pid)
        base_rss = rss_kib(server.pid)
        points = [(0, base_rss)]
        socks = []
        for n in counts:
            socks += open_idle(server.port, n - len(socks))
            if not wait_for_fds(server.pid, base_fds + n):
                raise RuntimeError(f"{server.name} did not accept {n} connections "
                                   f"({open_fds(server.pid) - base_fds} seen)")
            time.sleep(0.5)
            points.append((n, rss_kib(server.pid)))
        for s in socks:
            s.close()
        return points
    finally:
        server.stop()


def kv_memory_run(server, keys):
    """RSS of a fresh key-value server before and after `keys` SETs of
    key:%012d (16 bytes) to a 3-byte value (redis-benchmark's default),
    written with one pipelined connection. Before the first figure, 32 MiB
    go through that connection (SETs of one 1 MiB value, then a DEL), so
    that receive buffers and query buffers touched by any load are in the
    baseline and not counted per key."""
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            big = b"x" * (1 << 20)
            for _ in range(32):
                s.sendall(b"*3\r\n$3\r\nSET\r\n$4\r\nwarm\r\n$%d\r\n%s\r\n" % (len(big), big))
                if s.recv(16) != b"+OK\r\n":
                    raise RuntimeError(f"{server.name} did not answer the warm-up SET")
            s.sendall(b"*2\r\n$3\r\nDEL\r\n$4\r\nwarm\r\n")
            s.recv(16)
            time.sleep(0.3)
            before = rss_kib(server.pid)
            batch = 10_000
            for start in range(0, keys, batch):
                s.sendall(b"".join(b"*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d\r\n$3\r\nxxx\r\n" % i
                                   for i in range(start, min(keys, start + batch))))
                want, got = 5 * min(batch, keys - start), b""
                while len(got) < want:
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        raise RuntimeError(f"{server.name} closed the connection while loading keys")
                    got += chunk
                if got != b"+OK\r\n" * (want // 5):
                    raise RuntimeError(f"{server.name} did not answer +OK to every SET: {got[:80]!r}")
            s.sendall(b"*1\r\n$6\r\nDBSIZE\r\n")
            size = int(s.recv(64).strip()[1:])
            if size != keys:
                raise RuntimeError(f"{server.name} holds {size} keys, not {keys}")
            time.sleep(0.3)
            after = rss_kib(server.pid)
        return before, after
    finally:
        server.stop()


# ---- output -------------------------------------------------------------------------

def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024 // 1024
    virt = ""
    if shutil.which("systemd-detect-virt"):
        virt = subprocess.run(["systemd-detect-virt"], capture_output=True, text=True).stdout.strip()
    distro = ""
    try:
        with open("/etc/os-release") as f:
            distro = dict(l.rstrip().split("=", 1) for l in f if "=" in l).get("PRETTY_NAME", "").strip('"')
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem} GiB, Linux {platform.release()}"
            f"{', ' + virt if virt and virt != 'none' else ''}, {distro}")


def cell_text(m, p99=True):
    """One server's median in a table cell: per core, the server's CPU µs per
    request (the inverse of per core, so results.json files written before
    the us_per_req field show it too), raw requests/s, cores, p99."""
    us = 1e6 / m["per_core"] if m.get("per_core") else 0.0
    text = (f"**{fmt_k(m['per_core'])}** per core, {us:.2f} µs/req; {fmt_k(m['rps'])}/s, "
            f"cpu {m['server_cores']:.2f}, load {m['load_cores']:.2f}")
    return text + (f", p99 {m['p99_us']:.0f} µs" if p99 else "")


def fmt_k(v):
    return f"{v / 1000:,.1f}k"


def ratio_text(values):
    if not values:
        return "n/a"
    lo, hi = min(values), max(values)
    med = statistics.median(values)
    return f"{med:.2f}" if len(values) == 1 else f"{med:.2f} (min {lo:.2f}, max {hi:.2f})"


def write_gnuplot(path_prefix, title, panels, ylabel, logx=True):
    """panels: list of (panel title, x values, {series label: [y values]})."""
    data_path = path_prefix + ".dat"
    with open(data_path, "w") as f:
        for i, (ptitle, xs, series) in enumerate(panels):
            labels = list(series)
            f.write(f"# {ptitle}\n# x " + " ".join(f'"{l}"' for l in labels) + "\n")
            for j, x in enumerate(xs):
                f.write((f"{x} " if logx else f'"{x}" ') + " ".join(f"{series[l][j]:.1f}" for l in labels) + "\n")
            f.write("\n\n")
    cols = 2 if len(panels) > 1 else 1
    rows = (len(panels) + cols - 1) // cols
    script = []
    for term, ext in (("svg size 1200,{h} dynamic font 'sans,11'", "svg"),
                      ("pngcairo size 1200,{h} font 'sans,10'", "png")):
        script.append(f"set terminal {term.format(h=420 * rows)}")
        script.append(f"set output '{path_prefix}.{ext}'")
        script.append(f"set multiplot layout {rows},{cols} title '{title}'")
        script.append("set key top left font ',9'")
        script.append("set grid")
        script.append(f"set ylabel '{ylabel}'")
        script.append("set format y '%.1s%c'")
        script.append("set yrange [0:*]")
        if logx:
            script.append("set logscale x")
            script.append("set xlabel 'connections'")
        else:
            script.append("set style data histograms")
            script.append("set style histogram clustered gap 1")
            script.append("set style fill solid 0.8 border -1")
        for i, (ptitle, xs, series) in enumerate(panels):
            script.append(f"set title '{ptitle}'")
            if logx and len(set(xs)) == 1:
                # One x value (the quick report measures one connection count):
                # autoscaling would give gnuplot an empty x range to warn about.
                script.append(f"set xrange [{xs[0] / 2}:{xs[0] * 2}]")
            elif logx:
                script.append("set autoscale x")
            plots = []
            for k, label in enumerate(series):
                if logx:
                    plots.append(f"'{data_path}' index {i} using 1:{k + 2} with linespoints lw 2 title '{label}'")
                else:
                    plots.append(f"'{data_path}' index {i} using {k + 2}:xtic(1) title '{label}'")
            script.append("plot " + ", ".join(plots))
        script.append("unset multiplot")
        script.append("unset output")
    subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=True)


# ---- main ---------------------------------------------------------------------------

def main():
    global CHILD_CPU
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="directory with the Release binaries")
    ap.add_argument("--out", default=os.path.join(ROOT, "perf", "results"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--connections", default="1,50,100,500,1000")
    ap.add_argument("--sizes", default="128,1024")
    ap.add_argument("--depths", default="1,8")
    ap.add_argument("--http-connections", default="64,256")
    ap.add_argument("--http-depths", default="1,16")
    ap.add_argument("--http-loaders", default="wrk,h2load")
    ap.add_argument("--idle", type=int, default=10000, help="idle connections for the memory figure")
    ap.add_argument("--parts", default="echo,http,kv,memory,kv-memory")
    ap.add_argument("--kv-tests", default="set,get,incr,mset", help="redis-benchmark tests of the kv grid")
    ap.add_argument("--kv-depths", default="1,16", help="redis-benchmark -P values of the kv grid")
    ap.add_argument("--kv-servers", default="kv-1,redis,kv-2",
                    help="which of the Redis-protocol servers to measure, in this order")
    ap.add_argument("--kv-keys", type=int, default=1_000_000, help="keys for the memory-per-key figure")
    ap.add_argument("--echo-servers", default="echo-plain,echo-1,echo-co-1,liburing-echo,epoll-echo,echo-2",
                    help="which of the built-in echo servers to measure, in this order")
    ap.add_argument("--extra-echo", action="append", default=[], metavar="NAME=COMMAND",
                    help="one more one-core echo server (it takes --port and prints `listening on`), "
                         "e.g. an older build: --extra-echo 'before=/tmp/old/ringshard-echo --shards 1'")
    ap.add_argument("--http-servers", default="http-1,nginx-1,http-2,nginx-2",
                    help="HTTP servers of the grid, among http-1,nginx-1,http-2,nginx-2")
    ap.add_argument("--extra-http", action="append", default=[], metavar="NAME=COMMAND",
                    help="one more one-core HTTP server to measure (it must take --port 0 and print "
                         "'listening on HOST:PORT'), e.g. an older build: "
                         "--extra-http 'before=/tmp/old/ringshard-http --shards 1'")
    ap.add_argument("--quick", action="store_true", help="the short version (scripts/demo.sh)")
    ap.add_argument("--from-json", metavar="RESULTS_JSON",
                    help="rewrite the table and charts from an earlier run's results.json, measuring nothing")
    args = ap.parse_args()
    if args.quick:
        args.connections, args.sizes, args.depths = "100", "128", "1,8"
        args.http_connections, args.http_depths, args.http_loaders = "64", "1,16", "wrk"
        args.duration, args.warmup, args.idle = 1.0, 0.3, 2000
        args.kv_tests, args.kv_servers = "get", "kv-1,redis"
        if args.parts == ap.get_default("parts"):
            args.parts = "echo,http,kv,memory"
    parts = set(args.parts.split(","))
    CHILD_CPU = ChildCpu()
    ncpu = len(os.sched_getaffinity(0))
    one, load_cpus, two = ("0", "1", "0,1") if ncpu >= 2 else (None, None, None)
    if ncpu < 2:
        log("report: fewer than 2 CPUs: nothing is pinned, server and load share the CPU")
    b = lambda name: os.path.join(args.bin, name)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the servers
    started = datetime.datetime.now(datetime.timezone.utc)
    report = {"date": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
              "rounds": args.rounds, "duration": args.duration, "echo": {}, "http": {}, "memory": {},
              "kv": {}, "kv_memory": {}}

    builtin_echo = [
        ListeningServer("echo-plain", "ringshard-echo-plain", 1, one, [b("ringshard-echo-plain")]),
        ListeningServer("echo-1", "ringshard-echo 1 shard", 1, one, [b("ringshard-echo"), "--shards", "1"]),
        ListeningServer("echo-co-1", "ringshard-echo-co 1 shard", 1, one, [b("ringshard-echo-co"), "--shards", "1"]),
        ListeningServer("liburing-echo", "liburing-echo", 1, one, [b("ringshard-liburing-echo")]),
        ListeningServer("epoll-echo", "epoll-echo", 1, one, [b("ringshard-epoll-echo")]),
        ListeningServer("echo-2", "ringshard-echo 2 shards", 2, two, [b("ringshard-echo"), "--shards", "2"]),
    ]
    by_name = {s.name: s for s in builtin_echo}
    unknown = [n for n in args.echo_servers.split(",") if n and n not in by_name]
    if unknown:
        ap.error(f"--echo-servers: unknown {', '.join(unknown)} (known: {', '.join(by_name)})")
    echo_servers = [by_name[n] for n in args.echo_servers.split(",") if n]
    for extra in args.extra_echo:
        name, _, command = extra.partition("=")
        echo_servers.append(ListeningServer(name, name, 1, one, shlex.split(command)))
    builtin_http = [
        ListeningServer("http-1", "ringshard-http 1 shard", 1, one, [b("ringshard-http"), "--shards", "1"]),
        Nginx("nginx-1", "nginx 1 worker", 1, one, 1),
        ListeningServer("http-2", "ringshard-http 2 shards", 2, two, [b("ringshard-http"), "--shards", "2"]),
        Nginx("nginx-2", "nginx 2 workers", 2, two, 2),
    ]
    http_by_name = {s.name: s for s in builtin_http}
    unknown = [n for n in args.http_servers.split(",") if n and n not in http_by_name]
    if unknown:
        ap.error(f"--http-servers: unknown {', '.join(unknown)} (known: {', '.join(http_by_name)})")
    http_servers = [http_by_name[n] for n in args.http_servers.split(",") if n]
    for extra in args.extra_http:
        name, _, command = extra.partition("=")
        http_servers.append(ListeningServer(name, name, 1, one, shlex.split(command)))

    builtin_kv = [
        ListeningServer("kv-1", "ringshard-kv 1 shard", 1, one, [b("ringshard-kv"), "--shards", "1"]),
        RedisServer("redis", "redis-server", 1, one),
        ListeningServer("kv-2", "ringshard-kv 2 shards", 2, two, [b("ringshard-kv"), "--shards", "2"]),
    ]
    kv_by_name = {s.name: s for s in builtin_kv}
    unknown = [n for n in args.kv_servers.split(",") if n and n not in kv_by_name]
    if unknown:
        ap.error(f"--kv-servers: unknown {', '.join(unknown)} (known: {', '.join(kv_by_name)})")
    kv_servers = [kv_by_name[n] for n in args.kv_servers.split(",") if n]

    def load_cpus_for(server):
        return load_cpus if server.cores == 1 else None

    if args.from_json:
        with open(args.from_json) as f:
            report = json.load(f)
        report.setdefault("kv", {})
        report.setdefault("kv_memory", {})
        args.out = os.path.dirname(os.path.dirname(os.path.abspath(args.from_json)))
        args.quick = os.path.basename(os.path.dirname(os.path.abspath(args.from_json))).endswith("-quick")
        parts = set()

    if "echo" in parts:
        log("report: echo grid")
        report["echo"] = run_grid(echo_servers, args.rounds, (
            (f"{size}/{depth}/{conns}", f"echo {size} B depth {depth} {conns} conns",
             {"size": size, "depth": depth, "connections": conns},
             lambda s, size=size, depth=depth, conns=conns: measure(
                 s, echo_load_argv(b("ringshard-load"), s.port, conns, size, depth, args.warmup, args.duration),
                 load_cpus_for(s), parse_echo_load))
            for size in map(int, args.sizes.split(","))
            for depth in map(int, args.depths.split(","))
            for conns in map(int, args.connections.split(","))))

    if "http" in parts:
        log("report: HTTP grid")

        def http_run(loader, conns, depth):
            if loader == "wrk":
                return lambda s: measure(s, wrk_argv(s.port, conns, args.duration, depth), load_cpus_for(s), parse_wrk)
            return lambda s: measure(s, h2load_argv(s.port, conns, args.duration, depth, args.warmup),
                                     load_cpus_for(s), parse_h2load)

        report["http"] = run_grid(http_servers, args.rounds, (
            (f"{loader}/{depth}/{conns}", f"http {loader} depth {depth} {conns} conns",
             {"loader": loader, "depth": depth, "connections": conns}, http_run(loader, conns, depth))
            for depth in map(int, args.http_depths.split(","))
            for conns in map(int, args.http_connections.split(","))
            for loader in args.http_loaders.split(",")))

    if "kv" in parts:
        log("report: Redis-protocol grid (redis-benchmark -c 50 -r 100000)")
        for s in kv_servers:
            s.start()
        try:
            for s in kv_servers:
                kv_fill(s)
            cells = []
            for depth in map(int, args.kv_depths.split(",")):
                for test in args.kv_tests.split(","):
                    n = kv_requests(kv_servers[0], test, depth, args.duration)
                    cells.append((f"{test}/{depth}", f"kv {test} -P {depth}", {"test": test, "depth": depth, "requests": n},
                                  lambda s, test=test, depth=depth, n=n: measure(
                                      s, redis_benchmark_argv(s.port, test, depth, n), load_cpus_for(s),
                                      parse_redis_benchmark)))
            for key, label, fields, run in cells:
                runs = interleaved(label, kv_servers, args.rounds, run)
                report["kv"][key] = {**fields, "runs": runs, "median": {k: summarize(v) for k, v in runs.items()}}
        finally:
            for s in kv_servers:
                s.stop()

    if "kv-memory" in parts:
        log(f"report: memory per key, {args.kv_keys:,} keys")
        for s in [ListeningServer("kv-1", "ringshard-kv 1 shard", 1, one, [b("ringshard-kv"), "--shards", "1"]),
                  RedisServer("redis", "redis-server", 1, one),
                  ListeningServer("kv-2", "ringshard-kv 2 shards", 2, two, [b("ringshard-kv"), "--shards", "2"])]:
            before, after = kv_memory_run(s, args.kv_keys)
            per_key = (after - before) * 1024 / args.kv_keys
            report["kv_memory"][s.name] = {"label": s.label, "keys": args.kv_keys, "rss_before_kib": before,
                                           "rss_after_kib": after, "bytes_per_key": per_key}
            log(f"  {s.label:24} RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB: {per_key:.1f} B per key")

    if "memory" in parts:
        log(f"report: memory with {args.idle} idle connections")
        counts = sorted({max(1, args.idle // 10), args.idle})
        for s in (s for s in echo_servers if s.cores == 1):
            fresh = ListeningServer(s.name, s.label, 1, one, s.argv)
            points = memory_run(fresh, counts)
            (n1, r1), (n2, r2) = points[1], points[-1]
            per_conn = (r2 - r1) * 1024 / (n2 - n1) if n2 > n1 else 0.0
            report["memory"][s.name] = {"label": s.label, "points": points, "bytes_per_connection": per_conn}
            log(f"  {s.label:24} RSS {points[0][1] / 1024:.1f} MiB idle, {r2 / 1024:.1f} MiB with {n2} "
                f"connections: {per_conn:.0f} B per connection")

    write_outputs(report, args, echo_servers, http_servers, kv_servers)


TARGETS = [
    # (what, numerator, denominator, kind, filter, target)
    ("ringshard-echo-plain / liburing-echo, 50-1000 connections, both sizes", "echo-plain", "liburing-echo", "echo",
     lambda c: c["connections"] >= 50, 1.05),
    ("ringshard-echo (1 shard) / ringshard-echo-plain", "echo-1", "echo-plain", "echo", lambda c: True, 0.95),
    ("ringshard-echo-plain / epoll-echo", "echo-plain", "epoll-echo", "echo", lambda c: True, 1.3),
    ("ringshard-echo-co (coroutines, 1 shard) / ringshard-echo (actors, 1 shard)", "echo-co-1", "echo-1", "echo",
     lambda c: True, 0.95),
    ("ringshard-http (1 shard) / nginx (1 worker), keep-alive", "http-1", "nginx-1", "http",
     lambda c: c["depth"] == 1, 1.5),
    ("ringshard-http (1 shard) / nginx (1 worker), pipelined 16", "http-1", "nginx-1", "http",
     lambda c: c["depth"] > 1, 2.0),
    ("ringshard-kv (1 shard) / redis-server, redis-benchmark -P 1", "kv-1", "redis", "kv",
     lambda c: c["depth"] == 1, 1.3),
    ("ringshard-kv (1 shard) / redis-server, redis-benchmark -P 16", "kv-1", "redis", "kv",
     lambda c: c["depth"] > 1, 1.5),
    ("ringshard-echo 2 shards / 1 shard (load on the same 2 cores)", "echo-2", "echo-1", "echo", lambda c: True, None),
    ("ringshard-http 2 shards / 1 shard (load on the same 2 cores)", "http-2", "http-1", "http", lambda c: True, None),
    ("ringshard-kv 2 shards / 1 shard (load on the same 2 cores)", "kv-2", "kv-1", "kv", lambda c: True, None),
]


def cell_ratios(report, kind, num, den, keep, key):
    out = []
    for cell in report[kind].values():
        if not keep(cell):
            continue
        m = cell["median"]
        if num in m and den in m and m[den][key] > 0:
            out.append(m[num][key] / m[den][key])
    return out


def write_outputs(report, args, echo_servers, http_servers, kv_servers):
    stamp = report["date"].replace(" ", "-").replace(":", "")
    outdir = os.path.join(args.out, stamp.replace("-UTC", "") + ("-quick" if args.quick else ""))
    os.makedirs(outdir, exist_ok=True)
    md = []
    md.append(f"# ringshard per-core throughput, {report['date']}\n")
    md.append(f"Machine: {report['machine']}.  ")
    md.append(f"Each figure is the median of {report['rounds']} interleaved rounds of {report['duration']:g} s. "
              "One-core servers run on CPU 0 and the load on CPU 1; two-core servers share both CPUs with the load. "
              "*per core* = requests/s divided by the CPU the server used (cores busy); "
              "*µs/req* = the server's CPU microseconds per request (the inverse of per core); "
              "*cpu* = cores the server kept busy; *load* = cores the load generator used.\n")
    # targets
    md.append("## Targets\n")
    md.append("| what | ratio of requests/s per core | ratio of raw requests/s | target |")
    md.append("|---|---|---|---|")
    for what, num, den, kind, keep, target in TARGETS:
        if not report.get(kind):
            continue
        pc = cell_ratios(report, kind, num, den, keep, "per_core")
        raw = cell_ratios(report, kind, num, den, keep, "rps")
        if not pc:
            continue
        verdict = "report" if target is None else (f"≥ {target:g} " + ("met" if statistics.median(pc) >= target else "**missed**"))
        md.append(f"| {what} | {ratio_text(pc)} | {ratio_text(raw)} | {verdict} |")
    if report["memory"]:
        mine = report["memory"].get("echo-1", {}).get("bytes_per_connection")
        if mine is not None:
            md.append(f"| RSS growth per idle connection, ringshard-echo | {mine:.0f} B | | ≤ 2048 B "
                      + ("met" if mine <= 2048 else "**missed**") + " |")
        co = report["memory"].get("echo-co-1", {}).get("bytes_per_connection")
        if co is not None:
            md.append(f"| RSS growth per idle connection, ringshard-echo-co | {co:.0f} B | | ≤ 2048 B "
                      + ("met" if co <= 2048 else "**missed**") + " |")
    if report.get("kv_memory"):
        mem = report["kv_memory"]
        if "kv-1" in mem and "redis" in mem:
            md.append(f"| memory per key, {mem['kv-1']['keys']:,} small keys: ringshard-kv (1 shard) / redis-server | "
                      f"{mem['kv-1']['bytes_per_key']:.0f} B / {mem['redis']['bytes_per_key']:.0f} B = "
                      f"{mem['kv-1']['bytes_per_key'] / mem['redis']['bytes_per_key']:.2f} | | report |")
    md.append("")
    if report["echo"]:
        md.append("## Echo (ringshard-load)\n")
        names = [s.name for s in echo_servers]
        labels = {s.name: s.label for s in echo_servers}
        cells = list(report["echo"].values())
        for size in sorted({c["size"] for c in cells}):
            for depth in sorted({c["depth"] for c in cells}):
                sub = [c for c in cells if c["size"] == size and c["depth"] == depth]
                md.append(f"### {size} B messages, {'lockstep' if depth == 1 else f'{depth} in flight per connection'}\n")
                md.append("| connections | " + " | ".join(labels[n] for n in names) + " |")
                md.append("|---" * (len(names) + 1) + "|")
                for c in sorted(sub, key=lambda c: c["connections"]):
                    row = []
                    for n in names:
                        m = c["median"].get(n)
                        if not m:
                            row.append("")
                            continue
                        row.append(cell_text(m))
                    md.append(f"| {c['connections']} | " + " | ".join(row) + " |")
                md.append("")
    if report["http"]:
        md.append("## HTTP GET /plaintext\n")
        names = [s.name for s in http_servers]
        labels = {s.name: s.label for s in http_servers}
        md.append("| load | " + " | ".join(labels[n] for n in names) + " |")
        md.append("|---" * (len(names) + 1) + "|")
        for key, c in report["http"].items():
            what = f"{c['loader']} -c{c['connections']} " + ("keep-alive" if c["depth"] == 1 else f"pipelined {c['depth']}")
            row = []
            for n in names:
                m = c["median"].get(n)
                # wrk reports p99, h2load not (and results before 2026-12-07 lack it)
                row.append(cell_text(m, p99=m.get("p99_us", 0) > 0) if m else "")
            md.append(f"| {what} | " + " | ".join(row) + " |")
        md.append("")
    if report.get("kv"):
        md.append("## Redis protocol (redis-benchmark -c 50 -r 100000, 3-byte values)\n")
        names = [s.name for s in kv_servers if any(s.name in c["median"] for c in report["kv"].values())]
        labels = {s.name: s.label for s in kv_servers}
        md.append("| load | " + " | ".join(labels[n] for n in names) + " |")
        md.append("|---" * (len(names) + 1) + "|")
        for c in report["kv"].values():
            row = []
            for n in names:
                m = c["median"].get(n)
                row.append(cell_text(m) if m else "")
            md.append(f"| {c['test'].upper()} -P {c['depth']} | " + " | ".join(row) + " |")
        md.append("")
    if report.get("kv_memory"):
        md.append("## Memory per key\n")
        md.append("| server | keys | RSS before | RSS after | bytes per key |")
        md.append("|---|---|---|---|---|")
        for v in report["kv_memory"].values():
            md.append(f"| {v['label']} | {v['keys']:,} | {v['rss_before_kib'] / 1024:.1f} MiB | "
                      f"{v['rss_after_kib'] / 1024:.1f} MiB | {v['bytes_per_key']:.1f} |")
        md.append("")
    if report["memory"]:
        md.append("## Memory: idle connections\n")
        md.append("| server | RSS before | RSS with connections | growth per connection |")
        md.append("|---|---|---|---|")
        for v in report["memory"].values():
            pts = v["points"]
            md.append(f"| {v['label']} | {pts[0][1] / 1024:.1f} MiB | "
                      + ", ".join(f"{p[1] / 1024:.1f} MiB at {p[0]:,}" for p in pts[1:])
                      + f" | {v['bytes_per_connection']:.0f} B |")
        md.append("")
    charts = []
    if report["echo"]:
        panels = []
        cells = list(report["echo"].values())
        for size in sorted({c["size"] for c in cells}):
            for depth in sorted({c["depth"] for c in cells}):
                sub = sorted((c for c in cells if c["size"] == size and c["depth"] == depth),
                             key=lambda c: c["connections"])
                xs = [c["connections"] for c in sub]
                series = {s.label: [c["median"][s.name]["per_core"] for c in sub] for s in echo_servers}
                panels.append((f"echo {size} B, " + ("lockstep" if depth == 1 else f"depth {depth}"), xs, series))
        write_gnuplot(os.path.join(outdir, "echo"), "Echo: requests/s per server core", panels, "requests/s per core")
        charts.append("echo")
    if report["http"]:
        panels = []
        for loader in ("wrk", "h2load"):
            sub = [c for c in report["http"].values() if c["loader"] == loader]
            if not sub:
                continue
            xs = [f"-c{c['connections']} " + ("ka" if c["depth"] == 1 else f"p{c['depth']}") for c in sub]
            series = {s.label: [c["median"][s.name]["per_core"] for c in sub] for s in http_servers}
            panels.append((f"HTTP /plaintext, {loader}", xs, series))
        write_gnuplot(os.path.join(outdir, "http"), "HTTP: requests/s per server core", panels,
                      "requests/s per core", logx=False)
        charts.append("http")
    if report.get("kv"):
        cells = list(report["kv"].values())
        xs = [f"{c['test']} -P{c['depth']}" for c in cells]
        names = [s for s in kv_servers if all(s.name in c["median"] for c in cells)]
        series = {s.label: [c["median"][s.name]["per_core"] for c in cells] for s in names}
        write_gnuplot(os.path.join(outdir, "kv"), "Redis protocol: requests/s per server core",
                      [("redis-benchmark -c 50", xs, series)], "requests/s per core", logx=False)
        charts.append("kv")
    for c in charts:
        md.append(f"![{c}]({c}.svg)\n")
    md.append("Reproduce: `./perf/report.sh" + (" --quick" if args.quick else "") + "`\n")
    text = "\n".join(md)
    with open(os.path.join(outdir, "report.md"), "w") as f:
        f.write(text)
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(text)
    log(f"report: written to {os.path.relpath(outdir, ROOT)}/")


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        log(f"report: {e}")
        sys.exit(1)
