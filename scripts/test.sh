#!/usr/bin/env bash
# Builds ringshard and runs its tests, the way CI does:
#   gcc    g++ 12, warnings as errors, -O2 -g1, in build/: build, ctest
#   asan   g++ with AddressSanitizer + UBSan, -O1 -g1, in build-asan/: build, ctest
#   tsan   g++ with ThreadSanitizer, -O1 -g1, in build-tsan/: the framework, actors and net (+ http) suites
#   clang  clang++ 14, warnings as errors, -O0, in build-clang/: build only
#          (skipped with RINGSHARD_SKIP_CLANG=1)
# Compile time is most of CI's time: -g1 (line tables, enough for the
# sanitizers' stack traces) compiles a third faster than -g, the sanitizer
# builds use the -O1 their manuals advise, and the clang build, which exists
# for its warnings, does not optimize.
# Stops at the first failure and prints one summary line per stage.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

summary=()
current_stage=""
stage_started=0
stage_note=""
stage_skipped=""

print_summary() {
  local status=$?
  if [ -n "$current_stage" ]; then
    summary+=("$(printf '%-9s FAIL  %4d s  %s' "$current_stage" $((SECONDS - stage_started)) "$stage_note")")
  fi
  echo
  echo "== test.sh summary ($SECONDS s in all)"
  if [ ${#summary[@]} -gt 0 ]; then printf '%s\n' "${summary[@]}"; fi
  exit "$status"
}
trap print_summary EXIT

# stage NAME FUNCTION: runs one stage, timed. A failing command inside it ends
# the script (set -e) and the EXIT trap reports the stage as failed.
stage() {
  current_stage=$1
  stage_started=$SECONDS
  stage_note=""
  stage_skipped=""
  echo
  echo "== stage $1"
  "$2"
  if [ -n "$stage_skipped" ]; then
    summary+=("$(printf '%-9s SKIP  %4s    %s' "$1" "" "$stage_skipped")")
  else
    summary+=("$(printf '%-9s PASS  %4d s  %s' "$1" $((SECONDS - stage_started)) "$stage_note")")
  fi
  current_stage=""
}

# configure DIR CC CXX OPT [CMAKE_ARGS...]: a Ninja tree with warnings as
# errors, compiled with the flags OPT (plus -DNDEBUG).
configure() {
  local dir=$1 cc cxx opt
  cc=$(command -v "$2")
  cxx=$(command -v "$3")
  opt="$4 -DNDEBUG"
  shift 4
  # CMake cannot switch an existing tree to another compiler or generator:
  # such a tree (left by an earlier, different configuration) starts afresh.
  if [ -f "$dir/CMakeCache.txt" ] &&
     ! { grep -qxF "CMAKE_CXX_COMPILER:FILEPATH=$cxx" "$dir/CMakeCache.txt" &&
         grep -qxF "CMAKE_GENERATOR:INTERNAL=Ninja" "$dir/CMakeCache.txt"; }; then
    echo "$dir was configured with another compiler or generator: reconfiguring from scratch"
    rm -rf "$dir/CMakeCache.txt" "$dir/CMakeFiles"
  fi
  cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGSHARD_WERROR=ON \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="$opt" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$opt" "$@"
}

# How many tests ctest ran, from its "N% tests passed, F tests failed out of T" line.
ctest_counts() { sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2 tests, \1 failed/p' "$1"; }

stage_bootstrap() {
  ./scripts/bootstrap.sh
}

stage_gcc() {
  configure build gcc g++ "-O2 -g1"
  cmake --build build
  ctest --test-dir build --output-on-failure -j2 | tee build/ctest.log
  stage_note="build/: $(ctest_counts build/ctest.log)"
}

# LeakSanitizer stops the world with ptrace; where ptrace is denied (some
# sandboxes, or running under strace/gdb) every instrumented program would fail
# at exit. Ask a tiny instrumented program whether leak checking works here.
leak_checking_works() {
  local probe
  probe=$(mktemp -d "${TMPDIR:-/tmp}/ringshard-lsan-XXXXXX")
  printf 'int main() { return 0; }\n' >"$probe/probe.cpp"
  g++ -fsanitize=address "$probe/probe.cpp" -o "$probe/probe"
  local works=0
  if ! ASAN_OPTIONS=detect_leaks=1 "$probe/probe" 2>"$probe/err" &&
     grep -q "LeakSanitizer has encountered a fatal error" "$probe/err"; then
    works=1
  fi
  rm -rf "$probe"
  return $works
}

stage_asan() {
  configure build-asan gcc g++ "-O1 -g1" -DRINGSHARD_SANITIZE=address,undefined
  # The build runs each doctest binary once to list its cases
  # (doctest_discover_tests). That listing has no leaks to find, and where
  # LeakSanitizer cannot run it would fail the listing and with it the build.
  ASAN_OPTIONS=detect_leaks=0 cmake --build build-asan
  local leaks=1
  if ! leak_checking_works; then
    leaks=0
    echo "LeakSanitizer cannot run here (ptrace denied): testing without leak checks"
  fi
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=$leaks \
    ctest --test-dir build-asan --output-on-failure -j2 | tee build-asan/ctest.log
  stage_note="build-asan/: $(ctest_counts build-asan/ctest.log)"
  [ $leaks = 1 ] || stage_note+=", WITHOUT leak checks (no ptrace)"
}

# ---- ThreadSanitizer: the threaded layers (shards, mailboxes, actors, connections) --
# moodycamel's queue publishes elements through standalone fences, which TSan
# does not model: tests/tsan.supp silences exactly those reports.
stage_tsan() {
  configure build-tsan gcc g++ "-O1 -g1" -DRINGSHARD_SANITIZE=thread -DRINGSHARD_BUILD_PERF=OFF \
    -DRINGSHARD_BUILD_SAMPLES=OFF
  cmake --build build-tsan --target ringshard-test-framework ringshard-test-actors ringshard-test-net
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$root/tests/tsan.supp" \
    ctest --test-dir build-tsan -R '^(framework|actors|net):' --output-on-failure -j2 | tee build-tsan/ctest.log
  stage_note="build-tsan/: $(ctest_counts build-tsan/ctest.log)"
}

stage_clang() {
  if [ "${RINGSHARD_SKIP_CLANG:-0}" = 1 ]; then
    stage_skipped="RINGSHARD_SKIP_CLANG=1"
    return
  fi
  configure build-clang clang clang++ "-O0"
  cmake --build build-clang
  stage_note="build-clang/: $(clang++ --version | sed -n '1s/.*clang version \([0-9.]*\).*/clang++ \1/p'), compiled only"
}

stage bootstrap stage_bootstrap
stage gcc stage_gcc
stage asan stage_asan
stage tsan stage_tsan
stage clang stage_clang
