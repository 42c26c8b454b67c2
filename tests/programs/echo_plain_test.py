#!/usr/bin/env python3
"""End-to-end test of ringshard-echo-plain.

Starts the server on port 0 and checks, with bounded time for every step:
  (a) 100 concurrent connections, each writing 1-4 random payloads of 1 B to
      1 MiB (log-uniform sizes) in random chunks without waiting for replies,
      get every byte back in order;
  (b) a client that writes 10 MiB while not reading, then reads, gets all of
      it back, and another connection is served meanwhile;
  (c) 500 connections that close at once and 50 that reset (SO_LINGER 0)
      mid-stream do not disturb the server;
then that the server's open descriptors are back to their count at start,
and that SIGINT makes it exit with status 0 within 5 s. Two more servers:
  (d) one with 4 receive buffers, so that multishot recvs end with -ENOBUFS
      all the time, still echoes 20 pipelined connections exactly;
  (e) with RLIMIT_NOFILE exhausted, one pauses accepting instead of spinning
      and accepts again once descriptors are free;
  (f) one with an 8-slot fixed file table (--fixed-files 8) takes 20
      connections opened one after another: 8 as direct descriptors, 12 as
      plain ones (the exit line counts 12, none dropped), all echo exactly;
      after they close, 8 more are direct again (the slots were freed);
  (g) with --send-zc, one whose client writes 16 MiB and never reads exits
      0 within 5 s of SIGINT, saying a notification was still outstanding.
The fd check also counts the fixed files installed in the ring (the
UserFiles list of the ring's /proc/PID/fdinfo): back to none. The startup
line must show every feature the arguments did not switch off as on, or an
"unavailable" line for it (an older kernel); zero-copy sends, send bundles
and NAPI busy polling off unless --send-zc / --send-bundle /
--napi-busy-poll-us ask for them. With --send-zc, the exit line must count
notifications for the zero-copy sends, some reporting that the kernel copied
(it always does on loopback), none left outstanding; with --send-bundle, it
must count bundled sends and the parts they took (at least one each), and
no send may have ended inside a buffer; with --napi-busy-poll-us, the
registration must be undone
at exit (loopback has no NAPI instance: only registration and echo are
checked, not busy polling itself).

usage: echo_plain_test.py [--echo-plain] [--scenarios NAME,...] PATH/TO/SERVER [SERVER ARGS...]
(the server must take --port, and --buffers for scarce_buffers; the extra
arguments, such as --shards 2 --policy reuse-port, are passed to every server
started). --echo-plain says the server is ringshard-echo-plain: its
feature line is checked and (f) runs; the same checks serve the other echo
servers without it. --scenarios runs only the named ones of
concurrent_pipelined (a), slow_reader (b), closes_and_resets (c),
scarce_buffers (d), fd_exhaustion (e), fixed_table_full (f; with
--echo-plain, not with --no-direct), stop_with_unread_zc (g; with
--echo-plain and --send-zc) and many_connections
(10,000 connections open at once, each echoing 8 bytes; not run by
default); the fd and SIGINT checks always run. Default:
all but many_connections.
Exit status: 0 pass, 1 fail, 77 skip (io_uring unavailable).
"""
import contextlib
import os
import random
import re
import resource
import selectors
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import progtest  # noqa: E402
from progtest import SKIP, Failure, check  # noqa: E402

EXTRA_ARGS = []  # given after the binary: passed to every server started




class Server(progtest.Server):
    """One server process, with EXTRA_ARGS; stderr goes to a file shown at the end."""

    def __init__(self, binary, *args, nofile=None):
        super().__init__(binary, *EXTRA_ARGS, *args, nofile=nofile)


@contextlib.contextmanager
def own_server(binary, *args, nofile=None):
    """A server of one scenario's own: its stderr is printed if the scenario
    fails, and it is killed when the scenario ends."""
    server = Server(binary, *args, nofile=nofile)
    try:
        yield server
    except BaseException:
        print(server.stderr_text(), file=sys.stderr)
        raise
    finally:
        server.kill()


def fixed_files_in_use(server):
    """Files installed in the server's fixed file table, from the fdinfo of
    its io_uring descriptor (one `  SLOT: FILE` line each)."""
    pid = server.proc.pid
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if "io_uring" not in os.readlink(f"/proc/{pid}/fd/{fd}"):
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                text = f.read()
        except OSError:
            continue
        section = text.split("UserFiles:", 1)[1].split("UserBufs:", 1)[0] if "UserFiles:" in text else ""
        count += sum(1 for line in section.splitlines()[1:] if re.match(r"\s*\d+: ", line))
    return count


def wait_for_no_fixed_files(server, timeout=5.0):
    deadline = time.monotonic() + timeout
    while (n := fixed_files_in_use(server)) != 0:
        if time.monotonic() > deadline:
            raise Failure(f"{n} fixed files still installed {timeout:.0f} s after every connection closed")
        time.sleep(0.02)


def check_features(server):
    """Every feature not switched off is on, or reported unavailable."""
    text = server.stderr_text()
    line = next((l for l in text.splitlines() if "direct descriptors" in l and "bundles" in l), "")
    check(line, f"no feature line on stderr: {text}")
    wanted = {"direct descriptors": "--no-direct", "receive bundles": "--no-bundle",
              "incremental buffers": "--no-incremental"}
    for name, option in wanted.items():
        on = re.search(name + r" on\b", line) is not None
        if option in EXTRA_ARGS:
            check(not on, f"{name} on despite {option}: {line}")
        elif not on:
            check(f"{name} unavailable" in text, f"{name} off without an 'unavailable' line: {line}")
    # Off unless asked for: on when asked, or an "unavailable" line.
    for name, option in {"zero-copy sends": "--send-zc", "send bundles": "--send-bundle",
                         "NAPI busy poll": "--napi-busy-poll-us"}.items():
        on = re.search(name + r" on\b", line) is not None
        if option in EXTRA_ARGS:
            check(on or f"{name} unavailable" in text, f"{name} off without an 'unavailable' line: {line}")
        else:
            check(re.search(name + r" off\b", line), f"{name} not off without {option}: {line}")
    return line.split("echo-plain: ", 1)[-1]


def check_exit(server, chosen):
    """After SIGINT, with --send-zc: every zero-copy send's notification came
    (none left outstanding), and on loopback the kernel reports copying; with
    --send-bundle: bundled sends took parts, none ended inside a buffer; with
    --napi-busy-poll-us: the registration was undone."""
    text = server.stderr_text()
    said = []
    if re.search(r"zero-copy sends on\b", text):
        m = re.search(r"(\d+) zero-copy sends, (\d+) notifications \((\d+) copied by the kernel\)", text)
        check(m, f"no zero-copy counts in the exit line: {text}")
        sends, notifs, copied = (int(g) for g in m.groups())
        check("still outstanding" not in text, f"notifications outstanding at exit: {text}")
        check(0 < notifs <= sends, f"{notifs} notifications for {sends} zero-copy sends")
        check(copied > 0, f"no notification reported a copy on loopback ({notifs} notifications)")
        said.append(f"{sends} zero-copy sends, {notifs} notifications, {copied} copied")
    if re.search(r"send bundles on\b", text):
        m = re.search(r"(\d+) bundled sends of (\d+) parts \((\d+) copied at a low receive ring, "
                      r"(\d+) connections copying after a bundle that ended short\)", text)
        check(m, f"no send bundle counts in the exit line: {text}")
        sends, parts, copies, abandoned = (int(g) for g in m.groups())
        # concurrent_pipelined echoes up to 1 MiB per connection: bundles
        # (less than 2 KiB waiting is copied, so small echoes alone have none).
        check(sends <= parts and (sends > 0 or "concurrent_pipelined" not in chosen),
              f"{sends} bundled sends of {parts} parts")
        check("ended inside a buffer" not in text, f"a bundled send ended inside a buffer: {text}")
        check("more than its ring held" not in text, f"a bundled send reported more than its ring held: {text}")
        said.append(f"{sends} bundled sends of {parts} parts, {copies} copied, "
                    f"{abandoned} connections copying after a short bundle")
    if re.search(r"NAPI busy poll on\b", text):
        check("NAPI busy poll unregistered" in text, f"NAPI busy poll not unregistered at exit: {text}")
        said.append("NAPI busy poll unregistered")
    return "; ".join(said)


def exit_counts(server):
    """(accepted as plain descriptors, dropped at a full table) from the exit line."""
    m = re.search(r"(\d+) accepted as plain descriptors .* (\d+) dropped by the kernel", server.stderr_text())
    check(m, f"no exit line with the fallback counts: {server.stderr_text()}")
    return int(m.group(1)), int(m.group(2))


def connect(port, timeout=5.0):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def round_trip(port, payload=b"ping", timeout=5.0):
    """A small echo on a fresh connection: proves the server is serving."""
    with connect(port, timeout) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(len(payload) - len(got))
            check(chunk, "connection closed during a round trip")
            got += chunk
        check(got == payload, "round trip returned different bytes")


class Stream:
    """A non-blocking client connection that writes `payload` in random
    chunks while it reads the echo back and compares every byte."""

    def __init__(self, port, payload, rng, read_after=0.0, read_size=256 * 1024, read_pause=0.0):
        self.sock = connect(port)
        self.sock.setblocking(False)
        self.payload = memoryview(payload)
        self.sent = 0
        self.received = 0
        self.rng = rng
        self.read_from = time.monotonic() + read_after  # do not read before this
        self.read_size = read_size    # the most one read takes
        self.read_pause = read_pause  # seconds without reading after each read

    @property
    def done(self):
        return self.received == len(self.payload)

    def on_writable(self):
        chunk = self.rng.randint(1, 256 * 1024)
        try:
            self.sent += self.sock.send(self.payload[self.sent:self.sent + chunk])
        except BlockingIOError:
            pass

    def on_readable(self):
        try:
            data = self.sock.recv(self.read_size)
        except BlockingIOError:
            return
        if self.read_pause:
            self.read_from = time.monotonic() + self.read_pause
        check(data, f"server closed a connection after echoing {self.received} of {len(self.payload)} bytes")
        expected = self.payload[self.received:self.received + len(data)]
        if data != expected:
            at = next(i for i in range(len(data)) if i >= len(expected) or data[i] != expected[i])
            raise Failure(f"echo differs at byte {self.received + at} of {len(self.payload)}")
        self.received += len(data)


def drive(streams, timeout, during=None):
    """Runs the streams until all are echoed in full or the timeout passes.
    `during` is called once per loop turn (for checks while data flows)."""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        registered = {}  # stream -> the events it waits for
        while not all(s.done for s in streams):
            now = time.monotonic()
            if now > deadline:
                behind = [s for s in streams if not s.done]
                raise Failure(f"{len(behind)} connections not echoed in full within {timeout} s; first: "
                              f"sent {behind[0].sent}, received {behind[0].received} of {len(behind[0].payload)}")
            for s in streams:
                events = 0
                if s.sent < len(s.payload):
                    events |= selectors.EVENT_WRITE
                if now >= s.read_from and not s.done:
                    events |= selectors.EVENT_READ
                before = registered.get(s, 0)
                if events == before:
                    continue
                if not before:
                    sel.register(s.sock, events, s)
                elif not events:
                    sel.unregister(s.sock)
                else:
                    sel.modify(s.sock, events, s)
                registered[s] = events
            for key, events in sel.select(timeout=0.05):
                if events & selectors.EVENT_WRITE:
                    key.data.on_writable()
                if events & selectors.EVENT_READ:
                    key.data.on_readable()
            if during:
                during()
    for s in streams:
        s.sock.close()


def log_uniform_size(rng, largest=1 << 20):
    return max(1, min(largest, int(2 ** rng.uniform(0, 20))))


def concurrent_pipelined(server, rng):
    streams = []
    total = 0
    for _ in range(100):
        payload = b"".join(rng.randbytes(log_uniform_size(rng)) for _ in range(rng.randint(1, 4)))
        total += len(payload)
        streams.append(Stream(server.port, payload, rng))
    drive(streams, timeout=30)
    return f"100 connections, {total} bytes echoed"


def slow_reader(server, rng):
    payload = rng.randbytes(10 << 20)
    stream = Stream(server.port, payload, rng, read_after=1.0)
    served_meanwhile = []

    def other_connection():
        if not served_meanwhile and time.monotonic() > stream.read_from - 0.5:
            round_trip(server.port, b"x" * 1000)
            served_meanwhile.append(stream.sent)

    drive([stream], timeout=30, during=other_connection)
    check(served_meanwhile, "no other connection was served while the slow reader stalled")
    return f"10 MiB echoed; {served_meanwhile[0]} bytes written before reading began"


def throttled_reader(server, rng):
    """A client that writes 8 MiB as fast as the server takes it (a thread)
    while it reads at most 64 KiB every 5 ms: the server's sends keep
    finding the socket full and go out in parts (with send bundles,
    bundles that end short)."""
    payload = rng.randbytes(8 << 20)
    with connect(server.port, timeout=30) as s:
        def write_all():
            try:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)  # the echo must still come back in full
            except OSError:
                pass  # the reader below reports what came back

        writer = threading.Thread(target=write_all)
        writer.start()
        got = bytearray()
        try:
            while len(got) < len(payload):
                data = s.recv(64 * 1024)
                if not data:
                    break
                got += data
                time.sleep(0.005)
        finally:
            writer.join(30)
        check(len(got) == len(payload) and got == payload,
              f"throttled reader: {len(got)} of {len(payload)} bytes came back, "
              f"{'the first ' + str(len(got)) + ' intact' if got == payload[:len(got)] else 'differing'}")
    round_trip(server.port)
    return "8 MiB echoed to a reader of 64 KiB per 5 ms"


def closes_and_resets(server, rng):
    for _ in range(500):
        connect(server.port).close()
    for i in range(50):
        s = connect(server.port)
        s.setblocking(False)
        data = rng.randbytes(rng.randint(1, 512 * 1024))
        try:
            s.send(data)
        except BlockingIOError:
            pass
        if i % 2:
            time.sleep(0.002)  # let some echo come back before the reset
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST
    round_trip(server.port)
    return "500 immediate closes, 50 resets, still serving"


def scarce_buffers(binary, rng):
    with own_server(binary, "--buffers", "4") as server:
        streams = [Stream(server.port, rng.randbytes(log_uniform_size(rng, 256 * 1024)), rng) for _ in range(20)]
        drive(streams, timeout=30)
        server.wait_for_baseline_fds()
        server.stop()
        said = f"20 connections, {sum(len(s.payload) for s in streams)} bytes echoed through 4 buffers"
        text = server.stderr_text()
        if re.search(r"send bundles on\b", text):
            # Parts waiting to be sent hold receive buffers. The server keeps
            # an eighth of them, at least one, free by copying: with a single
            # buffer (an incremental ring of 4 x 4 KiB is one 64 KiB buffer)
            # every receive is copied; with 4 whole buffers, those received
            # while 3 are held.
            m = re.search(r"(\d+) bundled sends of (\d+) parts \((\d+) copied", text)
            check(m, f"no send bundle counts in the exit line: {text}")
            if re.search(r"\(1 x \d+ KiB\)", text):
                check(int(m.group(3)) > 0, f"a one-buffer ring and no receive copied: {text}")
            said += f", {m.group(1)} bundled sends of {m.group(2)} parts, {m.group(3)} receives copied at a low ring"
        return said


def fd_exhaustion(binary, rng):
    with open(binary, "rb") as f:
        if b"__asan_init" in f.read():
            # The sanitizers probe memory through a pipe: with no descriptor
            # left they report false errors, so this runs in plain builds only.
            return "not run under AddressSanitizer (it needs free descriptors itself)"
    held = []
    with own_server(binary, nofile=32) as server:
        try:
            # More than the server can hold, with direct descriptors too (RLIMIT_NOFILE
            # fixed slots, then as many plain descriptors): the rest wait in the backlog.
            for _ in range(80):
                held.append(connect(server.port))
            time.sleep(0.2)
            before = server.cpu_seconds()
            time.sleep(1.0)
            spent = server.cpu_seconds() - before
            check(spent < 0.3, f"server used {spent:.2f} s of CPU in 1 s while out of descriptors (busy loop?)")
            check("pausing accepts" in server.stderr_text(), f"accepts never failed: {server.stderr_text()}")
        finally:
            for s in held:
                s.close()
        round_trip(server.port, timeout=5)
        server.wait_for_baseline_fds()
        server.stop()
        return f"paused accepting at RLIMIT_NOFILE=32 ({spent:.2f} s CPU in 1 s), then served again"

def fixed_table_full(binary, rng):
    if "--no-direct" in EXTRA_ARGS:
        return "not run: --no-direct"
    with own_server(binary, "--fixed-files", "8") as server:
        check("direct descriptors on (8 slots)" in server.stderr_text(),
              f"no 8-slot table: {server.stderr_text()}")
        streams = []
        for _ in range(20):  # one after another: each accepted before the next connects
            st = Stream(server.port, rng.randbytes(log_uniform_size(rng, 1 << 20)), rng)
            st.sock.setblocking(True)
            st.sock.sendall(b"!")
            check(st.sock.recv(1) == b"!", "no echo of the first byte")
            st.sock.setblocking(False)
            streams.append(st)
        check(fixed_files_in_use(server) == 8, f"{fixed_files_in_use(server)} fixed files with 20 connections")
        drive(streams, timeout=30)  # closes them
        server.wait_for_baseline_fds()
        wait_for_no_fixed_files(server)
        again = [connect(server.port) for _ in range(8)]
        for s in again:
            s.sendall(b"ok")
            check(s.recv(2) == b"ok", "no echo after the table drained")
        check(fixed_files_in_use(server) == 8, f"{fixed_files_in_use(server)} fixed files for 8 new connections")
        for s in again:
            s.close()
        wait_for_no_fixed_files(server)
        server.stop()
        plain, dropped = exit_counts(server)
        check(plain == 12 and dropped == 0,
              f"{plain} connections accepted as plain descriptors (want 12), {dropped} dropped (want 0)")
        total = sum(len(s.payload) for s in streams)
        return f"20 connections through 8 slots ({plain} plain), {total} bytes echoed; 8 direct again after"


def stop_with_unread_zc(binary, rng):
    """With --send-zc: a client that writes 16 MiB and never reads keeps a
    zero-copy send's notification back (its bytes wait in the socket). SIGINT
    must still end the server with status 0 within 5 s: it waits 1 s, says
    so, and exits without freeing the buffers."""
    if "--send-zc" not in EXTRA_ARGS:
        return "not run: no --send-zc"
    with own_server(binary) as server:
        if not re.search(r"zero-copy sends on\b", server.stderr_text()):
            return "not run: zero-copy sends unavailable"
        s = connect(server.port)
        try:
            s.setblocking(False)
            payload = rng.randbytes(16 << 20)
            sent = 0
            deadline = time.monotonic() + 2.0
            while sent < len(payload) and time.monotonic() < deadline:
                try:
                    sent += s.send(payload[sent:sent + (1 << 20)])
                except BlockingIOError:
                    time.sleep(0.01)  # both directions full: the server's send waits on us
            took = server.stop()
        finally:
            s.close()
        text = server.stderr_text()
        check("still outstanding" in text, f"no notification was outstanding at the stop: {text}")
        return f"{sent} bytes written, none read; exited {took:.1f} s after SIGINT with a notification outstanding"


def many_connections(server, rng, count=10_000):
    """`count` connections open at once, each echoing its own 8 bytes while
    all are open; then all close. Not in the default set (--scenarios)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1000), hard))
    socks = []
    try:
        sel = selectors.DefaultSelector()
        for i in range(count):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", server.port))
            socks.append(s)
        deadline = time.monotonic() + 60
        want = {}
        for i, s in enumerate(socks):
            sel.register(s, selectors.EVENT_WRITE, i)
        got = {}
        while sel.get_map() and time.monotonic() < deadline:
            for key, ev in sel.select(timeout=1.0):
                s, i = key.fileobj, key.data
                if ev & selectors.EVENT_WRITE:
                    want[i] = struct.pack(">Q", i)
                    s.send(want[i])
                    sel.modify(s, selectors.EVENT_READ, i)
                else:
                    chunk = s.recv(64)
                    check(chunk, f"connection {i} closed before its echo")
                    got[i] = got.get(i, b"") + chunk
                    if len(got[i]) >= 8:
                        check(got[i] == want[i], f"connection {i} got {got[i]!r}")
                        sel.unregister(s)
        check(not sel.get_map(), f"{len(sel.get_map())} of {count} connections not echoed within 60 s")
        open_fds, fixed = server.fd_count(), fixed_files_in_use(server)
        check(open_fds + fixed >= count,
              f"the server holds {open_fds} fds and {fixed} fixed files with {count} connections open")
    finally:
        for s in socks:
            s.close()
    return f"{count} connections open at once, each echoed"


SHARED_SERVER_SCENARIOS = (concurrent_pipelined, slow_reader, throttled_reader, closes_and_resets, many_connections)
DEFAULT_OFF = {"many_connections"}
OWN_SERVER_SCENARIOS = (scarce_buffers, fd_exhaustion, fixed_table_full, stop_with_unread_zc)


def parse_options(args):
    """Takes the leading options off `args`: --scenarios LIST (or
    --scenarios=LIST) and --echo-plain. Returns (the set of scenario names to
    run, whether the server is ringshard-echo-plain)."""
    known = {f.__name__ for f in SHARED_SERVER_SCENARIOS + OWN_SERVER_SCENARIOS}
    chosen = known - DEFAULT_OFF
    echo_plain = False
    while args and args[0].startswith("--"):
        option = args.pop(0)
        if option == "--echo-plain":
            echo_plain = True
            continue
        if option == "--scenarios":
            if not args:
                raise ValueError("--scenarios needs a comma-separated list")
            value = args.pop(0)
        elif option.startswith("--scenarios="):
            value = option[len("--scenarios="):]
        else:
            raise ValueError(f"unknown option {option}")
        chosen = {name for name in value.split(",") if name}
        unknown = chosen - known
        if unknown:
            raise ValueError(f"unknown scenarios {sorted(unknown)}; known: {sorted(known)}")
    if not echo_plain:
        chosen.discard("fixed_table_full")
        chosen.discard("stop_with_unread_zc")
    return chosen, echo_plain


def main():
    args = sys.argv[1:]
    try:
        chosen, echo_plain = parse_options(args)
    except ValueError as e:
        print(f"{e}\n{__doc__}", file=sys.stderr)
        return 2
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    binary = args[0]
    EXTRA_ARGS.extend(args[1:])
    seed = int(os.environ.get("RINGSHARD_TEST_SEED", time.time_ns() % 1_000_000))
    print(f"seed {seed} (set RINGSHARD_TEST_SEED to repeat)")
    rng = random.Random(seed)
    started = time.monotonic()
    server = Server(binary)
    try:
        print(f"server pid {server.proc.pid} on port {server.port}, {server.baseline_fds} fds at start")
        if echo_plain:
            print(f"ok  features: {check_features(server)}")
        for scenario in (s for s in SHARED_SERVER_SCENARIOS if s.__name__ in chosen):
            t0 = time.monotonic()
            result = scenario(server, rng)
            print(f"ok  {scenario.__name__}: {result} ({time.monotonic() - t0:.1f} s)")
        server.wait_for_baseline_fds()
        wait_for_no_fixed_files(server)
        print(f"ok  fds back to {server.baseline_fds}, no fixed file installed")
        server.stop()
        print("ok  SIGINT: exit status 0")
        if echo_plain and (said := check_exit(server, chosen)):
            print(f"ok  exit line: {said}")
        for scenario in (s for s in OWN_SERVER_SCENARIOS if s.__name__ in chosen):
            t0 = time.monotonic()
            result = scenario(binary, rng)
            print(f"ok  {scenario.__name__}: {result} ({time.monotonic() - t0:.1f} s)")
    except (Failure, OSError) as e:  # OSError: the server reset or refused a connection
        print(f"FAIL: {e!r}" if isinstance(e, OSError) else f"FAIL: {e}", file=sys.stderr)
        return 1
    finally:
        server.kill()
        print("server stderr:\n" + server.stderr_text(), file=sys.stderr)
    print(f"passed in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
