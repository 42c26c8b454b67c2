#!/usr/bin/env bash
# Installs a build tree into a temporary prefix, then configures, builds and
# runs tests/install_consumer against that prefix only.
#   install_test.sh BUILD_DIR CONSUMER_SOURCE_DIR CXX_COMPILER [SANITIZE]
# SANITIZE is the build's RINGSHARD_SANITIZE value: an instrumented library
# needs the consumer compiled and linked with the same -fsanitize flags.
set -euo pipefail

build_dir=$1
consumer_dir=$2
cxx=$3
sanitize=${4:-}

work=$(mktemp -d "${TMPDIR:-/tmp}/ringshard-install-XXXXXX")
trap 'rm -rf "$work"' EXIT

cmake --install "$build_dir" --prefix "$work/prefix" >"$work/install.log" \
  || { cat "$work/install.log" >&2; echo "FAIL: cmake --install" >&2; exit 1; }
for h in ringshard/framework/uring.hpp ringshard/framework/shard.hpp ringshard/actors/actor.hpp; do
  [ -f "$work/prefix/include/$h" ] || { echo "FAIL: $h not installed" >&2; exit 1; }
done

flags=()
if [ -n "$sanitize" ]; then
  flags+=("-DCMAKE_CXX_FLAGS=-fsanitize=$sanitize -fno-omit-frame-pointer"
          "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=$sanitize")
fi
# CMAKE_PREFIX_PATH is the only way the consumer can find ringshard.
cmake -S "$consumer_dir" -B "$work/build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF "${flags[@]}" >"$work/configure.log" \
  || { cat "$work/configure.log" >&2; echo "FAIL: configuring the consumer" >&2; exit 1; }
cmake --build "$work/build" >"$work/build.log" \
  || { cat "$work/build.log" >&2; echo "FAIL: building the consumer" >&2; exit 1; }
"$work/build/consumer"
