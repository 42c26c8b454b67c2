#!/usr/bin/env bash
# Installs the Debian (bookworm) packages ringshard needs to build, test,
# benchmark and run its demo. Installs only what is missing, and does nothing
# when everything is there. Needs root to install; without root it prints the
# command to run and fails.
set -euo pipefail

packages=(
  # toolchain: g++ 12 and clang++ 14, CMake, Ninja
  build-essential g++ clang cmake ninja-build pkg-config
  python3                 # test drivers and the load client
  # libraries
  liburing-dev            # baselines and differential tests only, never the library
  doctest-dev             # tests
  libspdlog-dev libfmt-dev  # logging
  libconcurrentqueue-dev  # cross-shard queues (moodycamel)
  libbenchmark-dev        # micro-benchmarks (Google Benchmark)
  node-llhttp             # HTTP/1.1 parser sources (/usr/share/llhttp)
  libcli11-dev            # the samples' command lines (CLI11, header-only)
  nlohmann-json3-dev      # JSON for HTTP handlers (http/json.hpp, optional; tests and samples)
  # load generators and comparison servers
  curl wrk apache2-utils nghttp2-client nginx-light
  redis-server redis-tools  # ringshard-kv: compared with redis-server, driven by redis-cli/redis-benchmark
  python3-redis           # ringshard-kv tests: the Python Redis client
  python3-prometheus-client  # metrics tests: parses the /metrics exposition
  haproxy                 # the scale-out recipe: a load balancer in front of two servers
  gnuplot-nox             # performance charts
  iproute2 procps file    # ss, ps/pgrep, file: used by scripts and tests
)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "bootstrap: all ${#packages[@]} packages are installed"
  exit 0
fi

install=(apt-get install -y --no-install-recommends "${missing[@]}")
if [ "$(id -u)" -ne 0 ]; then
  echo "bootstrap: missing Debian packages: ${missing[*]}" >&2
  echo "bootstrap: run as root:" >&2
  echo "  apt-get update && DEBIAN_FRONTEND=noninteractive ${install[*]}" >&2
  exit 1
fi

echo "bootstrap: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
"${install[@]}"
