#!/usr/bin/env python3
"""End-to-end test of ringshard-links (the URL shortener sample) on 2 shards,
with Python's http.client over 127.0.0.1: create, redirect (counted), preview,
stats, the bearer token on DELETE, JSON errors from the router (404, 405,
invalid JSON, 422), a request id on every response, and SIGTERM.

usage: links_test.py PATH/TO/ringshard-links
Exit status: 0 pass, 1 fail, 77 skip (io_uring unavailable).
"""
import http.client
import json
import signal
import subprocess
import sys
import tempfile

SKIP = 77


def main():
    binary = sys.argv[1]
    stderr = tempfile.TemporaryFile()
    proc = subprocess.Popen([binary, "--port", "0", "--shards", "2", "--token", "t0k3n"],
                            stdout=subprocess.PIPE, stderr=stderr)
    line = proc.stdout.readline().decode()
    if not line.startswith("listening on "):
        proc.wait(timeout=10)
        stderr.seek(0)
        text = stderr.read().decode(errors="replace")
        if "io_uring itself is unavailable" in text:
            print("skip: " + text.strip())
            return SKIP
        print("FAIL: the server did not start: " + text)
        return 1
    host, port = line.split()[-1].rsplit(":", 1)
    failures = []

    def check(cond, what):
        print(("ok   " if cond else "FAIL ") + what)
        if not cond:
            failures.append(what)

    conn = http.client.HTTPConnection(host, int(port), timeout=5)

    def call(method, path, body=None, headers=None):
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r, data

    try:
        r, data = call("POST", "/links", json.dumps({"url": "https://example.org/a?b=c"}),
                       {"Content-Type": "application/json"})
        created = json.loads(data)
        check(r.status == 201 and r.getheader("Location") == "/links/" + created["id"], "POST /links: 201, Location")
        check(r.getheader("Content-Type") == "application/json" and created["short"] == "/l/" + created["id"],
              "POST /links: a JSON body with the short path")
        link = created["id"]
        r, _ = call("GET", "/l/" + link)
        check(r.status == 302 and r.getheader("Location") == "https://example.org/a?b=c", "GET /l/{id}: 302 to the URL")
        call("GET", "/l/" + link)
        r, data = call("GET", "/l/" + link + "?preview=1")
        check(r.status == 200 and json.loads(data) == {"url": "https://example.org/a?b=c"}, "?preview=1: the URL")
        r, data = call("GET", "/links/" + link + "/stats")
        check(r.status == 200 and json.loads(data) == {"id": link, "hits": 2}, "stats: 2 visits, the preview not counted")
        r, data = call("GET", "/links/" + link)
        check(r.status == 200 and json.loads(data)["url"] == "https://example.org/a?b=c", "GET /links/{id}")
        r, data = call("DELETE", "/links/" + link)
        check(r.status == 401 and r.getheader("WWW-Authenticate") == "Bearer", "DELETE without the token: 401")
        r, data = call("DELETE", "/links/" + link, headers={"Authorization": "Bearer wrong"})
        check(r.status == 401, "DELETE with a wrong token: 401")
        r, _ = call("DELETE", "/links/" + link, headers={"Authorization": "Bearer t0k3n"})
        check(r.status == 204, "DELETE with the token: 204")
        r, data = call("GET", "/l/" + link)
        check(r.status == 404 and json.loads(data) == {"error": "no such link"}, "a deleted link: 404")
        r, data = call("GET", "/nowhere")
        check(r.status == 404 and json.loads(data) == {"error": "Not Found"}, "the router's 404 in JSON")
        r, data = call("PUT", "/links/" + link, body="")
        check(r.status == 405 and r.getheader("Allow") == "GET, DELETE, HEAD" and
              json.loads(data) == {"error": "Method Not Allowed"}, "405 with Allow, in JSON")
        r, data = call("POST", "/links", "{not json")
        check(r.status == 400 and json.loads(data)["error"].startswith("invalid JSON"), "invalid JSON: 400")
        r, data = call("POST", "/links", json.dumps({"url": "https://x/\r\nSet-Cookie: a=b"}))
        check(r.status == 422, "a URL with CR LF: 422")
        r, data = call("GET", "/l/%zz")
        check(r.status == 400, "an invalid escape: 400")
        r, data = call("GET", "/plaintext")
        check(r.status == 200 and data == b"Hello, World!" and r.getheader("X-Request-Id") is not None,
              "/plaintext, with a request id")
    except Exception as e:  # a connection error, a timeout, a non-JSON body
        failures.append(repr(e))
        print("FAIL " + repr(e))
    finally:
        conn.close()
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            status = "hung"
    check(status == 0, "SIGTERM: exit status 0 (got %s)" % status)
    if failures:
        stderr.seek(0)
        print("server stderr:\n" + stderr.read().decode(errors="replace"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
