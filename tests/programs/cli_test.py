#!/usr/bin/env python3
"""The samples' command lines (samples/common/cli.hpp): for every program,
--help prints its options on stdout and exits 0, and a bad number or an
unknown option exits 2 with one line on stderr that names the option.
Nothing is started: each case ends while parsing.

usage: cli_test.py BIN_DIR
Exit status: 0 pass, 1 fail.
"""
import os
import subprocess
import sys

# program -> (options its --help must list, bad arguments: the option each names)
CASES = {
    "ringshard-echo": (["--host", "--port", "--shards", "--policy", "--buffers", "--metrics-port",
                        "--min-wait-us", "--registered-wait"],
                       [(["--port", "x"], "--port"), (["--shards", "-1"], "--shards"),
                        (["--metrics-port", "http"], "--metrics-port"),
                        (["--buffers", "3"], "--buffers"), (["--policy", "random"], "--policy")]),
    "ringshard-echo-co": (["--host", "--port", "--shards", "--policy", "--buffers"],
                          [(["--port", "70000"], "--port"), (["--buffers", "lots"], "--buffers")]),
    "ringshard-echo-plain": (["--host", "--port", "--buffers", "--send-bundle", "--send-zc"],
                             [(["--port", "x"], "--port"), (["--host", "::1"], "--host"),
                              (["--send-bundle", "--send-zc", "4096"], "--send-bundle")]),
    "ringshard-http": (["--host", "--port", "--shards", "--policy", "--buffers", "--max-body", "--header-timeout",
                        "--registered-wait"],
                       [(["--shards", "x"], "--shards"), (["--max-body", "12Q"], "--max-body"),
                        (["--keepalive-timeout", "-5"], "--keepalive-timeout")]),
    "ringshard-chat": (["--host", "--port", "--shards", "--policy", "--buffers", "--max-output"],
                       [(["--port", "1.5"], "--port"), (["--max-output", "1K"], "--max-output"),
                        (["--stall-timeout", "x"], "--stall-timeout")]),
    "ringshard-kv": (["--host", "--port", "--shards", "--policy", "--buffers", "--max-query", "--metrics-port"],
                     [(["--port", "x"], "--port"), (["--max-pending", "0"], "--max-pending"),
                      (["--sweep-interval", "soon"], "--sweep-interval")]),
    "ringshard-tally": (["--host", "--port", "--shards", "--policy", "--idle-timeout", "--metrics-port"],
                        [(["--idle-timeout", "0"], "--idle-timeout"), (["--port", "x"], "--port")]),
    "ringshard-links": (["--host", "--port", "--shards", "--token", "--response-timeout", "--metrics-port"],
                        [(["--response-timeout", "soon"], "--response-timeout"), (["--shards", "x"], "--shards")]),
    "ringshard-pingpong": (["--shards", "--actors", "--messages", "--busy-poll"],
                           [(["--messages", "x"], "--messages"), (["--actors", "0"], "--actors")]),
    "ringshard-cp": (["--qd", "--bs", "SRC", "DST"],
                     [(["--qd", "x", "a", "b"], "--qd"), (["--bs", "2G", "a", "b"], "--bs")]),
    "ringshard-cat": (["FILE"], [(["--lines", "3", "a"], "--lines")]),
    "ringshard-load": (["--host", "--port", "--shards", "--connections", "--depth"],
                       [(["--port", "1", "--depth", "x"], "--depth")]),
}
# Arguments a program requires, so that the unknown option is what fails.
POSITIONAL = {"ringshard-cp": ["a", "b"], "ringshard-cat": ["a"], "ringshard-load": ["--port", "1"]}


def run(argv):
    return subprocess.run(argv, capture_output=True, timeout=10, stdin=subprocess.DEVNULL)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    bin_dir = sys.argv[1]
    failures = []
    for program, (listed, bad) in CASES.items():
        path = os.path.join(bin_dir, program)
        if not os.path.exists(path):
            failures.append(f"{program}: not built")
            continue
        p = run([path, "--help"])
        out = p.stdout.decode(errors="replace")
        if p.returncode != 0 or f"Usage: {program}" not in out:
            failures.append(f"{program} --help: exit {p.returncode}, output:\n{out}{p.stderr.decode()}")
        missing = [o for o in listed if o not in out]
        if missing:
            failures.append(f"{program} --help does not list {missing}")
        for args, named in bad + [(["--frobnicate", *POSITIONAL.get(program, [])], "--frobnicate")]:
            p = run([path, *args])
            err = p.stderr.decode(errors="replace")
            lines = err.strip().splitlines()
            if p.returncode != 2 or len(lines) != 1 or not lines[0].startswith(program + ": ") or named not in lines[0]:
                failures.append(f"{program} {' '.join(args)}: exit {p.returncode} (want 2), stderr "
                                f"(want one line naming {named}):\n{err}")
        print(f"ok: {program}")
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
