#!/usr/bin/env python3
"""ringshard-chat keeps its memory bounded and gives it back.

usage: chat_memory_test.py PATH/TO/ringshard-chat slow-consumer|burst

slow-consumer: one client never reads while three others each send 16 MiB of
  lines and read. The others get every line, in order; the server drops the
  one that does not read (it passed --max-output); its RSS stays within
  baseline + 56 MiB; a line over 64 KiB still ends its connection;
  afterwards no descriptor is left open.
burst: 8 clients each send 4 MiB of lines at once (28 MiB to each reader)
  and read; every one gets every line. Then all leave: RSS comes back within
  twice the idle baseline, and no descriptor is left open.

The RSS figures (baseline, peak, after) are printed. In an AddressSanitizer
build (its allocator quarantines freed memory, and shadow memory comes on
top) they are printed but not checked.
"""
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time

MIB = 1 << 20
SHARDS = 2
# The RSS bound of slow-consumer above the idle baseline, from the server's
# limits with its defaults:
#   receive rings       2 shards x 4096 buffers x 4 KiB       32 MiB
#                       (pages get touched as receives cycle through them)
#   unsent output       4 connections x --max-output 4 MiB    16 MiB
#                       (a recipient's lines; a sender holds at most 32 KiB
#                       per Room unacknowledged besides)
#   allocator and thread slack                                 8 MiB
RSS_BOUND_ABOVE_BASELINE_MIB = 56


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Server:
    def __init__(self, binary):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([binary, "--port", "0", "--shards", str(SHARDS)],
                                     stdout=subprocess.PIPE, stderr=self.stderr)
        line = self.proc.stdout.readline().decode()
        assert line.startswith("listening on "), line
        self.port = int(line.rsplit(":", 1)[1])
        with open(binary, "rb") as f:
            self.instrumented = b"__asan_init" in f.read()
        self.peak = 0
        self._stop = False
        time.sleep(0.3)  # idle: the shards are up
        self.baseline = rss_kib(self.proc.pid)
        self.baseline_fds = fds(self.proc.pid)
        self.peak = self.baseline
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self):
        while not self._stop and self.proc.poll() is None:
            try:
                self.peak = max(self.peak, rss_kib(self.proc.pid))
            except OSError:
                return
            time.sleep(0.005)

    def rss(self):
        return rss_kib(self.proc.pid)

    def stderr_text(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def stop(self):
        self._stop = True
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def connect(port, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: a small window
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def read_available(c):
    """What the socket has now, without waiting."""
    data = b""
    c.setblocking(False)
    try:
        while True:
            chunk = c.recv(1 << 20)
            if not chunk:
                raise AssertionError("a client was closed while joining")
            data += chunk
    except (BlockingIOError, InterruptedError):
        pass
    finally:
        c.setblocking(True)
        c.settimeout(5)
    return data


def sync(clients, listeners, names):
    """Every client says `ready NAME` until each listener has heard every
    other client: then all are registered in the Rooms of every shard."""
    heard = {id(c): set() for c in listeners}
    buffers = {id(c): b"" for c in listeners}
    deadline = time.monotonic() + 10
    while any(len(heard[id(c)]) < len(clients) - 1 for c in listeners):
        if time.monotonic() > deadline:
            raise AssertionError("clients did not all hear each other's ready lines")
        for c, name in zip(clients, names):
            c.sendall(b"ready %s\n" % name)
        time.sleep(0.05)
        for c in listeners:
            buffers[id(c)] += read_available(c)
            for line in buffers[id(c)].split(b"\n"):
                if line.startswith(b"ready "):
                    heard[id(c)].add(line.split()[1])
    time.sleep(0.2)  # the ready lines still in flight arrive; drop them
    for c in listeners:
        read_available(c)


def exchange(talkers, payloads, want, deadline_s):
    """Each talker writes its payload while reading; returns what each
    received once it has `want[i]` bytes."""
    sel = selectors.DefaultSelector()
    views = [memoryview(p) for p in payloads]
    got = [bytearray() for _ in talkers]
    sent = [0] * len(talkers)
    traffic = [0] * len(talkers)
    for i, t in enumerate(talkers):
        t.setblocking(False)
        sel.register(t, selectors.EVENT_READ | selectors.EVENT_WRITE, i)
    done = set()
    deadline = time.monotonic() + deadline_s
    while len(done) < len(talkers):
        if time.monotonic() > deadline:
            raise AssertionError(f"traffic did not complete in {deadline_s} s: sent {sent}, "
                                 f"received {traffic} of {want}")
        for key, events in sel.select(0.2):
            i = key.data
            t = key.fileobj
            if events & selectors.EVENT_READ:
                try:
                    chunk = t.recv(1 << 20)
                except (BlockingIOError, InterruptedError):
                    chunk = None
                if chunk == b"":
                    raise AssertionError(f"talker {i} was disconnected")
                if chunk:
                    got[i] += chunk
                    traffic[i] += len(chunk)
            if events & selectors.EVENT_WRITE:
                if sent[i] < len(payloads[i]):
                    try:
                        sent[i] += t.send(views[i][sent[i]:sent[i] + (1 << 20)])
                    except (BlockingIOError, InterruptedError):
                        pass
                else:
                    sel.modify(t, selectors.EVENT_READ, i)
            if traffic[i] >= want[i]:
                done.add(i)
    for t in talkers:
        sel.unregister(t)
        t.setblocking(True)
        t.settimeout(5)
    return [bytes(g) for g in got]


def wait_for(predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def payload(tag, count, size):
    """`count` lines of `size` bytes: TAG, a sequence number, filler, '\n'."""
    filler = b"x" * size
    return b"".join(b"%s %07d %s\n" % (tag, k, filler[:size - len(tag) - 10]) for k in range(count))


def slow_consumer(server):
    port = server.port
    bad = connect(port, rcvbuf=4096)
    talkers = [connect(port) for _ in range(3)]
    sync([bad] + talkers, talkers, [b"bad", b"t0", b"t1", b"t2"])
    per_talker = 16 * MIB
    size = 1024
    count = per_talker // size
    payloads = [payload(b"t%d" % i, count, size) for i in range(3)]
    want = [sum(len(payloads[j]) for j in range(3) if j != i) for i in range(3)]
    started = time.monotonic()
    got = exchange(talkers, payloads, want, deadline_s=30)
    took = time.monotonic() - started
    for i in range(3):
        assert len(got[i]) == want[i], f"talker {i}: {len(got[i])} bytes, expected {want[i]}"
        lines = got[i].split(b"\n")
        for j in range(3):
            if j != i:
                tag = b"t%d " % j
                mine = b"\n".join(l for l in lines if l.startswith(tag)) + b"\n"
                assert mine == payloads[j], f"talker {i} did not get talker {j}'s lines whole and in order"
    peak = server.peak
    if not server.instrumented:
        assert peak <= server.baseline + RSS_BOUND_ABOVE_BASELINE_MIB * 1024, \
            f"peak RSS {mib(peak)} over baseline {mib(server.baseline)} + {RSS_BOUND_ABOVE_BASELINE_MIB} MiB"
    # The client that never read was dropped: reading now, it finds the end.
    bad.settimeout(5)
    closed = False
    try:
        while bad.recv(1 << 20):
            pass
        closed = True
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        pass
    assert closed, "the client that did not read is still connected"
    assert "slow consumer" in server.stderr_text(), "no 'slow consumer' line in the server's log"
    # A line longer than 64 KiB still ends its connection.
    talkers[0].sendall(b"z" * 70000)
    try:
        assert talkers[0].recv(1) == b"", "data after a line of 70000 bytes"
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError("a line of 70000 bytes did not end its connection")
    bad.close()
    for t in talkers:
        t.close()
    fds_back = wait_for(lambda: fds(server.proc.pid) <= server.baseline_fds, 3)
    after = server.rss() if wait_for(lambda: server.rss() <= 2 * server.baseline, 3) else server.rss()
    print(f"slow-consumer: 3 talkers x {per_talker // MIB} MiB in {took:.2f} s, every line delivered; "
          f"RSS baseline {mib(server.baseline)}, peak {mib(peak)}, after {mib(after)}; "
          f"fds {fds(server.proc.pid)} (baseline {server.baseline_fds})")
    assert fds_back, f"descriptors left open: {fds(server.proc.pid)}, baseline {server.baseline_fds}"
    if server.instrumented:
        print("(AddressSanitizer build: RSS not checked)")


def burst(server):
    port = server.port
    n = 6
    clients = [connect(port) for _ in range(n)]
    names = [b"c%d" % i for i in range(n)]
    sync(clients, clients, names)
    per_client = 3 * MIB
    size = 128
    count = per_client // size
    payloads = [payload(names[i], count, size) for i in range(n)]
    want = [sum(len(payloads[j]) for j in range(n) if j != i) for i in range(n)]
    started = time.monotonic()
    got = exchange(clients, payloads, want, deadline_s=30)
    took = time.monotonic() - started
    for i in range(n):
        assert len(got[i]) == want[i], f"client {i}: {len(got[i])} bytes, expected {want[i]}"
        for j in range(n):
            expected = 0 if j == i else count
            seen = got[i].count(b"\n" + names[j] + b" ") + got[i].startswith(names[j] + b" ")
            assert seen == expected, f"client {i} got {seen} lines of client {j}, expected {expected}"
    peak = server.peak
    for c in clients:
        c.close()
    fds_back = wait_for(lambda: fds(server.proc.pid) <= server.baseline_fds, 3)
    back = wait_for(lambda: server.rss() <= 2 * server.baseline, 3)
    after = server.rss()
    print(f"burst: {n} clients x {per_client // MIB} MiB ({sum(want) // MIB} MiB delivered) in {took:.2f} s; "
          f"RSS baseline {mib(server.baseline)}, peak {mib(peak)}, after all left {mib(after)}; "
          f"fds {fds(server.proc.pid)} (baseline {server.baseline_fds})")
    assert fds_back, f"descriptors left open: {fds(server.proc.pid)}, baseline {server.baseline_fds}"
    if server.instrumented:
        print("(AddressSanitizer build: RSS not checked)")
        return
    assert back, f"RSS after all left {mib(after)}, more than twice the idle baseline {mib(server.baseline)}"


def main():
    binary, mode = sys.argv[1], sys.argv[2]
    test = {"slow-consumer": slow_consumer, "burst": burst}[mode]
    server = Server(binary)
    try:
        test(server)
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        print(f"RSS baseline {mib(server.baseline)}, peak {mib(server.peak)}, now {mib(server.rss())}",
              file=sys.stderr)
        print(server.stderr_text()[-4000:], file=sys.stderr)
        server.stop()
        return 1
    except BaseException:
        print(server.stderr_text()[-4000:], file=sys.stderr)
        server.stop()
        raise
    server.stop()
    if server.proc.returncode != 0:
        print(f"FAIL: exit status {server.proc.returncode}", file=sys.stderr)
        print(server.stderr_text()[-8000:], file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
