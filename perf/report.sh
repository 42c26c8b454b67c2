#!/usr/bin/env bash
# The per-core throughput report: builds Release in build-release/, then runs
# perf/report.py, which starts every server under test (the ringshard samples,
# the C baselines, nginx, redis-server), drives it (ringshard-load for echo,
# wrk and h2load --h1 for HTTP, redis-benchmark for the Redis protocol),
# measures memory per idle connection and per key, and writes a markdown
# table, raw JSON and charts (SVG, PNG) to a new directory under perf/results/.
#   ./perf/report.sh            the full grid (about 45 minutes)
#   ./perf/report.sh --quick    the short version scripts/demo.sh runs
# Every other option goes to perf/report.py (--help lists them: rounds,
# duration, grids, parts).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build_dir=${RINGSHARD_BUILD_DIR:-build-release}

./scripts/bootstrap.sh
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRINGSHARD_BUILD_TESTS=OFF >/dev/null
cmake --build "$build_dir" --target ringshard-echo-plain ringshard-echo ringshard-echo-co ringshard-http ringshard-kv ringshard-load \
  ringshard-liburing-echo ringshard-epoll-echo
exec python3 perf/report.py --bin "$build_dir/bin" "$@"
