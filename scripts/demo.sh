#!/usr/bin/env bash
# The ringshard demo (under 2 minutes):
#  1. builds a Release tree in build-release/, starts the sharded HTTP server
#     (one shard per CPU) on a free port, drives GET /plaintext with wrk for a
#     few seconds, prints requests per second in all and per shard (per core,
#     from the server's /stats counters), and stops the server with SIGINT,
#     which must end it with exit status 0;
#  2. runs the short version of the per-core throughput report
#     (perf/report.sh --quick): ringshard's echo, HTTP and Redis-protocol
#     servers side by side with the C baselines, nginx and redis-server,
#     interleaved rounds, printed as a table.
#   RINGSHARD_DEMO_CONNECTIONS (default 64), RINGSHARD_DEMO_DURATION (seconds, default 3),
#   RINGSHARD_DEMO_SHARDS (default: one per CPU), RINGSHARD_DEMO_REPORT=0 skips step 2
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

build_dir=build-release
# The server under demonstration and the load put on it: another server or
# load generator is a change to these lines and the two functions below them.
server=ringshard-http
server_args=(--port 0)
[ -n "${RINGSHARD_DEMO_SHARDS:-}" ] && server_args+=(--shards "$RINGSHARD_DEMO_SHARDS")
connections=${RINGSHARD_DEMO_CONNECTIONS:-64}
duration=${RINGSHARD_DEMO_DURATION:-3}

work=$(mktemp -d "${TMPDIR:-/tmp}/ringshard-demo-XXXXXX")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

build() {
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRINGSHARD_BUILD_TESTS=OFF >/dev/null
  cmake --build "$build_dir" --target ringshard-http ringshard-echo-plain ringshard-echo ringshard-echo-co ringshard-kv ringshard-load \
    ringshard-liburing-echo ringshard-epoll-echo
}

# Starts the server and sets `port` from its first line, "listening on HOST:PORT".
start_server() {
  "$build_dir/bin/$server" "${server_args[@]}" >"$work/server.out" 2>"$work/server.err" &
  server_pid=$!
  local line="" i
  for i in $(seq 100); do  # up to 10 s
    line=$(head -n 1 "$work/server.out")
    [ -n "$line" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.err" >&2; echo "demo: $server exited at start" >&2; exit 1; }
    sleep 0.1
  done
  if [[ ! $line =~ ^listening\ on\ [0-9.]+:([0-9]+)$ ]]; then
    cat "$work/server.err" >&2
    echo "demo: expected 'listening on HOST:PORT' from $server, got '$line'" >&2
    exit 1
  fi
  port=${BASH_REMATCH[1]}
  echo "demo: $server (pid $server_pid) $line"
}

# Runs the load and sets `rate` (requests per second); prints the per-shard rates.
run_load() {
  local url="http://127.0.0.1:$port"
  curl -fsS "$url/stats" >"$work/stats.before"
  wrk -t1 -c"$connections" -d"${duration}s" --latency "$url/plaintext" | tee "$work/load.out"
  curl -fsS "$url/stats" >"$work/stats.after"
  if grep -qE 'Non-2xx|Socket errors' "$work/load.out"; then
    echo "demo: wrk reported errors" >&2
    exit 1
  fi
  rate=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$work/load.out")
  python3 - "$work/stats.before" "$work/stats.after" "$duration" <<'PY'
import json, sys
before = {s["shard"]: s["requests"] for s in json.load(open(sys.argv[1]))["shards"]}
after = {s["shard"]: s["requests"] for s in json.load(open(sys.argv[2]))["shards"]}
seconds = float(sys.argv[3])
print("demo: per-core throughput (requests/s served by each shard, one shard per core):")
for shard in sorted(after):
    print(f"demo:   shard {shard}: {(after[shard] - before.get(shard, 0)) / seconds:12.0f}")
PY
}

# SIGINT must stop the server within 5 s with exit status 0.
stop_server() {
  kill -INT "$server_pid"
  local i
  for i in $(seq 50); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  local status=0
  if kill -0 "$server_pid" 2>/dev/null; then
    echo "demo: $server still running 5 s after SIGINT" >&2
    exit 1
  fi
  wait "$server_pid" || status=$?
  server_pid=""
  cat "$work/server.err" >&2
  if [ "$status" -ne 0 ]; then
    echo "demo: $server exited with status $status after SIGINT" >&2
    exit 1
  fi
  echo "demo: $server stopped by SIGINT, exit status 0"
}

./scripts/bootstrap.sh
build
start_server
run_load
stop_server
echo "demo: $rate requests/s in all ($connections keep-alive connections, GET /plaintext, ${duration} s, $server, wrk -t1 on the same machine)"

if [ "${RINGSHARD_DEMO_REPORT:-1}" != 0 ]; then
  echo
  echo "demo: the per-core throughput report, short version (the full one: ./perf/report.sh)"
  python3 perf/report.py --bin "$build_dir/bin" --quick --out "$work/results"
fi
