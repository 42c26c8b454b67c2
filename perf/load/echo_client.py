#!/usr/bin/env python3
"""A bounded load for an echo server: N connections, each sending a 128-byte
message and waiting for its echo before sending the next (lockstep), for a
fixed duration. Every echoed byte is compared with what was sent.

    echo_client.py --port PORT [--host 127.0.0.1] [--connections 50]
                   [--duration 5] [--size 128]

Prints one summary line:
    requests 123456 in 5.00 s: 24691 requests/s, 50 connections, 0 errors
and exits non-zero when there was any error (a refused or reset connection,
a wrong byte, an early close) or no request completed.

It is a single Python thread, so it measures the client as much as the
server; it shows that the server works under load, not how fast it is.
"""
import argparse
import os
import selectors
import socket
import sys
import time


class Connection:
    def __init__(self, sock, message):
        self.sock = sock
        self.message = message
        self.to_send = memoryview(message)  # what is still unsent of the current message
        self.received = 0                   # bytes of the current echo received


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds")
    parser.add_argument("--size", type=int, default=128, help="message size in bytes")
    args = parser.parse_args()

    errors = 0
    sel = selectors.DefaultSelector()
    for i in range(args.connections):
        try:
            sock = socket.create_connection((args.host, args.port), timeout=5)
        except OSError as e:
            print(f"connect: {e}", file=sys.stderr)
            errors += 1
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        # Each connection has its own message so that crossed streams show up.
        message = (i.to_bytes(4, "little") + os.urandom(args.size))[:args.size]
        sel.register(sock, selectors.EVENT_WRITE, Connection(sock, message))

    requests = 0
    started = time.monotonic()
    deadline = started + args.duration
    last_progress = started
    while time.monotonic() < deadline and sel.get_map():
        events = sel.select(timeout=0.1)
        if events:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > 2.0:
            print("no progress for 2 s", file=sys.stderr)
            errors += 1
            break
        for key, mask in events:
            c = key.data
            try:
                if mask & selectors.EVENT_WRITE:
                    c.to_send = c.to_send[c.sock.send(c.to_send):]
                    if not c.to_send:
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                if mask & selectors.EVENT_READ:
                    data = c.sock.recv(len(c.message) - c.received)
                    if not data:
                        raise ConnectionError("server closed the connection")
                    if data != c.message[c.received:c.received + len(data)]:
                        raise ConnectionError("echo differs from what was sent")
                    c.received += len(data)
                    if c.received == len(c.message):
                        requests += 1
                        c.received = 0
                        c.to_send = memoryview(c.message)
                        sel.modify(c.sock, selectors.EVENT_WRITE, c)
            except BlockingIOError:
                pass
            except OSError as e:
                print(f"connection: {e}", file=sys.stderr)
                errors += 1
                sel.unregister(c.sock)
                c.sock.close()
    elapsed = time.monotonic() - started
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()

    rate = requests / elapsed if elapsed > 0 else 0.0
    print(f"requests {requests} in {elapsed:.2f} s: {rate:.0f} requests/s, "
          f"{args.connections} connections, {errors} errors")
    return 0 if errors == 0 and requests > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
