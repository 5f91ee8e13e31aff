#!/usr/bin/env bash
# Runs each cmocka unit-test binary given as an argument and prints one closing summary.
# The output of a failing binary is printed again at the end, so the last lines of a long
# log (all a CI page may keep) show what failed. Each binary gets at most UNIT_TIMEOUT
# seconds (default 600; the slowest takes seconds): a deadlock fails it instead of hanging.
# Each binary gets a state and a cache directory of its own (XDG_STATE_HOME, XDG_CACHE_HOME):
# the default spool then holds only what that binary left, never the leftovers of earlier
# runs, which the exporter would recover and ship among the test's own actions.
set -u
limit=${UNIT_TIMEOUT:-600}
pass=0; fail=0; failed=()
logdir=$(mktemp -d)
trap 'rm -rf "$logdir"' EXIT
for t in "$@"; do
  log="$logdir/$(basename "$t").log"
  home="$logdir/$(basename "$t").home"
  mkdir -p "$home/state" "$home/cache"
  if XDG_STATE_HOME="$home/state" XDG_CACHE_HOME="$home/cache" timeout -k 10 "$limit" "$t" 2>&1 \
      | tee "$log"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1)); failed+=("$t")
  fi
done
for t in "${failed[@]+"${failed[@]}"}"; do
  echo "---- $t (failed): its last 40 lines ----"
  tail -n 40 "$logdir/$(basename "$t").log"
done
echo "unit test binaries: $pass passed, $fail failed"
[ "$fail" -eq 0 ] || { echo "failed: ${failed[*]}" >&2; exit 1; }
