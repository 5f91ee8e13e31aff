#!/usr/bin/env bash
# bench-api.sh - builds tests/bench/bench_api.c against build/libagentsight.so and runs it
# in a temporary directory: agentsight_track_action() calls/s from 1 and 2 threads into
# the file sink and the null sink (each run ~1 s or 1 M calls, final flush included), then
# tests/bench/bench_ring.c: the producer's cost of reserve + commit.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -f "$BUILD/libagentsight.so" ] || make --no-print-directory "$BUILD/libagentsight.so" >/dev/null
lib=$(cd "$BUILD" && pwd)
tmp=$(mktemp -d /tmp/agentsight-bench-api.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Iinclude -o "$tmp/bench_api" \
  tests/bench/bench_api.c -L"$lib" -lagentsight -Wl,-rpath,"$lib" -lpthread
out=$(cd "$tmp" && env -u AGENTSIGHT_OUTPUT -u LD_PRELOAD timeout 120 ./bench_api)
echo "$out"
echo
printf '%-16s %14s\n' "run" "calls/s"
echo "$out" | awk '/^BENCH/ { printf "%-16s %14s\n", $2, $3 }'

# The producer's cost of one 64-byte message (ring alone, and through the pipeline with
# anonymous and file-backed rings); links the internal library for the inline functions.
[ -f "$BUILD/libagentsight-internal.a" ] || make --no-print-directory "$BUILD/libagentsight-internal.a" >/dev/null
${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -ftls-model=initial-exec -Iinclude \
  -Ipreload -o "$tmp/bench_ring" tests/bench/bench_ring.c "$BUILD/libagentsight-internal.a" \
  -lelf -ldw -lcapstone -lcurl -lcjson -lpthread -ldl -lm
echo
(cd "$tmp" && env -u LD_PRELOAD AGENTSIGHT_SPOOL_DIR="$tmp/spool" timeout 120 ./bench_ring anon)
(cd "$tmp" && env -u LD_PRELOAD AGENTSIGHT_SPOOL_DIR="$tmp/spool" timeout 120 ./bench_ring file)
