#!/usr/bin/env bash
# Drives ringshard-cat and ringshard-cp on real files and compares the results
# byte for byte.
#   cat_cp_test.sh MODE CAT_BINARY CP_BINARY
# MODE: cp | cp-options | cp-errors | cat | cat-missing
set -u

mode=$1
cat_bin=$2
cp_bin=$3

work=$(mktemp -d "${TMPDIR:-/tmp}/ringshard-samples-XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# 5 MiB + 123 bytes: many blocks for both programs, and a partial last one.
head -c $((5 * 1024 * 1024 + 123)) /dev/urandom > src || fail "cannot make the source file"
[ "$(stat -c %s src)" -eq $((5 * 1024 * 1024 + 123)) ] || fail "source file has the wrong size"

case $mode in
  cp)
    "$cp_bin" src dst || fail "ringshard-cp exited with $?"
    cmp src dst || fail "ringshard-cp output differs from its input"
    ;;
  cp-options)
    # Odd block sizes and depths: a block smaller than a page, one deeper than the file.
    for args in "--qd 1 --bs 4096" "--qd 3 --bs 4097" "--qd 64 --bs 1M" "--bs 8M" "--qd 7 --bs 1"; do
      if [ "$args" = "--qd 7 --bs 1" ]; then
        head -c 3001 src > small || fail "cannot make the small file"
        in=small
      else
        in=src
      fi
      # shellcheck disable=SC2086
      "$cp_bin" $args "$in" out || fail "ringshard-cp $args exited with $?"
      cmp "$in" out || fail "ringshard-cp $args output differs from its input"
      rm -f out
    done
    : > empty
    "$cp_bin" empty empty.copy || fail "ringshard-cp of an empty file exited with $?"
    [ -f empty.copy ] && [ ! -s empty.copy ] || fail "copy of an empty file is not an empty file"
    # An existing destination is truncated first.
    head -c 10000000 /dev/zero > longer
    "$cp_bin" src longer || fail "ringshard-cp over a longer file exited with $?"
    cmp src longer || fail "ringshard-cp over a longer file left stale bytes"
    ;;
  cp-errors)
    if "$cp_bin" missing dst 2> err; then fail "ringshard-cp of a missing file succeeded"; fi
    grep -q "missing" err || fail "ringshard-cp did not name the missing file: $(cat err)"
    if "$cp_bin" src 2> err; then fail "ringshard-cp with one argument succeeded"; fi
    if "$cp_bin" --qd 0 src dst 2> err; then fail "ringshard-cp --qd 0 succeeded"; fi
    if "$cp_bin" src src 2> err; then fail "ringshard-cp onto itself succeeded"; fi
    cmp src <(head -c $((5 * 1024 * 1024 + 123)) src) || fail "copying a file onto itself damaged it"
    if "$cp_bin" src no/such/dir/dst 2> err; then fail "ringshard-cp into a missing directory succeeded"; fi
    ;;
  cat)
    "$cat_bin" src > out || fail "ringshard-cat exited with $?"
    cmp src out || fail "ringshard-cat output differs from its input"
    # Through a pipe (writes to a pipe can be short), and several files in order.
    printf 'tail\n' > small
    "$cat_bin" src small src | cat > joined
    status=${PIPESTATUS[0]}
    [ "$status" -eq 0 ] || fail "ringshard-cat of three files exited with $status"
    cat src small src > expected
    cmp expected joined || fail "ringshard-cat of three files differs from cat"
    # A non-regular input is streamed.
    printf 'from a pipe' | "$cat_bin" /dev/stdin > piped || fail "ringshard-cat /dev/stdin exited with $?"
    [ "$(cat piped)" = "from a pipe" ] || fail "ringshard-cat /dev/stdin printed '$(cat piped)'"
    ;;
  cat-missing)
    if "$cat_bin" missing > out 2> err; then fail "ringshard-cat of a missing file exited with 0"; fi
    grep -q "missing" err || fail "ringshard-cat did not name the missing file: $(cat err)"
    [ ! -s out ] || fail "ringshard-cat of a missing file printed something"
    # The files that exist are still printed, and the status still says failure.
    printf 'present\n' > present
    if "$cat_bin" present missing present > out 2> err; then fail "ringshard-cat with a missing file exited with 0"; fi
    [ "$(cat out)" = "$(printf 'present\npresent')" ] || fail "ringshard-cat printed '$(cat out)'"
    ;;
  *)
    fail "unknown mode $mode"
    ;;
esac
echo "ok: $mode"
