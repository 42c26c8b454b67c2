"""What the whole-program tests share: a server process started with
`--port 0` whose first line on stdout is `listening on 127.0.0.1:PORT`, its
descriptors, memory and CPU, and the check/Failure convention (exit status
0 pass, 1 fail, 77 skip)."""
import collections
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def wait_for(predicate, seconds, step=0.02):
    """True once predicate() is; False after `seconds`."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def connect(port, timeout=5.0):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def reset(sock):
    """Closes with a RST (SO_LINGER 0) instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


class Server:
    """One server process; stderr goes to a file (stderr_text()). With
    exact_fds, wait_for_baseline_fds wants the count at start exactly (fewer
    counts as a difference too)."""

    exact_fds = False

    def __init__(self, binary, *args, nofile=None, settle=0.0):
        self.stderr = tempfile.TemporaryFile()
        limit = None
        if nofile is not None:
            def limit():
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.proc = subprocess.Popen([binary, "--port", "0", *args], stdout=subprocess.PIPE, stderr=self.stderr,
                                     preexec_fn=limit)
        self.port = self._read_port(deadline=time.monotonic() + 10)
        if settle:
            time.sleep(settle)  # the shards' first work done
        self.baseline_fds = self.fd_count()

    def _read_port(self, deadline):
        line = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                if time.monotonic() > deadline:
                    raise Failure("no 'listening on' line within 10 s")
                if not sel.select(timeout=0.1):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 256)
                if not chunk:
                    self.proc.wait(timeout=5)
                    if "io_uring itself is unavailable" in self.stderr_text():
                        print(self.stderr_text(), file=sys.stderr)
                        sys.exit(SKIP)
                    raise Failure(f"server exited with {self.proc.returncode} before listening: {self.stderr_text()}")
                line += chunk
        m = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)", line.decode().strip())
        check(m is not None, f"unexpected first line {line!r}")
        return int(m.group(1))

    def alive(self):
        return self.proc.poll() is None

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def fd_kinds(self):
        """Open fds by kind ("socket", "anon_inode", a path), for messages."""
        kinds = collections.Counter()
        for name in os.listdir(f"/proc/{self.proc.pid}/fd"):
            try:
                kinds[os.readlink(f"/proc/{self.proc.pid}/fd/{name}").split(":[")[0]] += 1
            except OSError:
                pass
        return dict(kinds)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise Failure("no VmRSS in /proc/PID/status")

    def cpu_seconds(self):
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def wait_for_baseline_fds(self, timeout=5.0):
        """Waits until no more descriptors are open than at start (fewer is
        not a leak: the start count can include ones still settling);
        returns how long that took."""
        t0 = time.monotonic()
        while (self.fd_count() != self.baseline_fds) if self.exact_fds else (self.fd_count() > self.baseline_fds):
            if time.monotonic() - t0 > timeout:
                raise Failure(f"server has {self.fd_count()} open fds {timeout:.0f} s later, "
                              f"{self.baseline_fds} at start: {self.fd_kinds()}")
            time.sleep(0.02)
        return time.monotonic() - t0

    def stop(self, sig=signal.SIGINT):
        """Sends `sig`, wants exit status 0 within 5 s; returns how long it took."""
        self.proc.send_signal(sig)
        t0 = time.monotonic()
        try:
            status = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            raise Failure(f"server did not exit within 5 s of signal {sig}")
        check(status == 0, f"server exited with status {status} after signal {sig}")
        return time.monotonic() - t0

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stderr_text(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")


def run_checks(checks, only=None):
    """Runs (name, function) pairs, printing `ok  NAME: details` or
    `FAIL NAME: reason`; returns the exit status."""
    failed = 0
    for number, (name, fn) in enumerate(checks, 1):
        if only and number not in only:
            continue
        t0 = time.monotonic()
        try:
            details = fn()
            details = details if isinstance(details, str) else ""
            print(f"ok   {number}. {name} ({time.monotonic() - t0:.1f} s){': ' + details if details else ''}", flush=True)
        except Failure as e:
            failed += 1
            print(f"FAIL {number}. {name}: {e}", flush=True)
    return 1 if failed else 0
