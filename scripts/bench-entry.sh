#!/usr/bin/env bash
# bench-entry.sh - cost of one call of an entry-patched function (a static int g(int,int)
# of the program, issue 6) next to the GOT path (int f(int,int) of tests/bench/libbenchf.c
# through the PLT) and the floor (the same calls without the interposer). Builds its
# program into $BUILD/bench; every run is bounded by `timeout`; figures are medians of
# batches, in ns per call.
#
# The entry-patched call goes through the full-preservation thunk (every register kept,
# vector state as wide as the CPU has), the GOT call through the lean one. Each timed
# batch fits in the ring (CALLS per batch, an untimed pause of PAUSE_MS after each so the
# exporter drains); the dropped count of each run is printed (it should read 0).
#
# Environment: BUILD (default build), CALLS (per batch, default 10000), BATCHES (101),
# PAUSE_MS (20).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CALLS=${CALLS:-10000}
BATCHES=${BATCHES:-101}
PAUSE_MS=${PAUSE_MS:-20}
OUT=$BUILD/bench
CC=${CC:-cc}
case $BUILD in /*) PRELOAD=$BUILD/libagentsight-preload.so ;;
*) PRELOAD=$(pwd)/$BUILD/libagentsight-preload.so ;; esac
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/agentsight-bench-entry.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

cat >"$TMP/bench_entry.c" <<'EOF'
/* bench_entry.c - median ns per call of a static function (g) or of a library function
 * called through the PLT (f), both int (int, int), called through volatile pointers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
int f(int a, int b);
static __attribute__((noipa)) int g(int a, int b) { return a * 3 + b - (a >> 2); }
static int (*volatile gp)(int, int) = g;
/* Through the PLT: a static pointer to f would be a data relocation, not a GOT slot. */
static __attribute__((noipa)) int via_plt(int a, int b) { return f(a, b); }
static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    int (*fn)(int, int) = strcmp(argv[1], "entry") == 0 ? gp : via_plt;
    long calls = atol(argv[2]);
    int batches = atoi(argv[3]);
    double ns[101];
    if (batches < 1 || batches > 101) return 2;
    volatile int sink = 0;
    long pause_ms = argc > 4 ? atol(argv[4]) : 0;
    for (int b = 0; b < batches; b++) {
        if (pause_ms > 0 && pause_ms < 10000) usleep((useconds_t)pause_ms * 1000);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (long i = 0; i < calls; i++) sink += fn((int)i, 2);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ns[b] = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / (double)calls;
    }
    qsort(ns, (size_t)batches, sizeof ns[0], cmp);
    printf("%.1f\n", ns[batches / 2]);
    return 0;
}
EOF
CF="-O2 -g -Wall -Wextra"
$CC $CF -fPIC -shared -o "$OUT/libbenchf.so" tests/bench/libbenchf.c || exit 1
$CC $CF -o "$OUT/bench_entry" "$TMP/bench_entry.c" -L"$OUT" -lbenchf \
    -Wl,-rpath,"$(cd "$OUT" && pwd)" || exit 1
printf '[actions]\ng\nf\n' >"$TMP/bench.conf"

# ns MODE [preload]: prints the median ns/call, or "skipped".
ns() {
    local env=()
    if [ "${2:-}" = preload ]; then
        [ -f "$PRELOAD" ] || { echo skipped; return; }
        env=(LD_PRELOAD="$PRELOAD" AGENTSIGHT_CONFIG="$TMP/bench.conf"
            AGENTSIGHT_OUTPUT=null AGENTSIGHT_STATS_FILE="$TMP/stats.$1")
    fi
    local v
    v=$(env "${env[@]}" timeout 300 "$OUT/bench_entry" "$1" "$CALLS" "$BATCHES" "$PAUSE_MS" \
        2>/dev/null)
    echo "${v:-skipped}"
}

FLOOR_G=$(ns entry)
FLOOR_F=$(ns got)
ENTRY=$(ns entry preload)
GOT=$(ns got preload)
printf '%-44s %10s\n' "call of int (int,int), $CALLS calls x $BATCHES" "ns/call"
printf '%-44s %10s\n' "static function, bare (floor)" "$FLOOR_G"
printf '%-44s %10s\n' "static function, entry-patched" "$ENTRY"
printf '%-44s %10s\n' "library function via PLT, bare (floor)" "$FLOOR_F"
printf '%-44s %10s\n' "library function via PLT, GOT path" "$GOT"
dropped() {
    [ -s "$TMP/stats.$1" ] || { echo -; return; }
    tail -n 1 "$TMP/stats.$1" | grep -o '"dropped":[0-9]*' | cut -d: -f2
}
echo "dropped: entry $(dropped entry), got $(dropped got)"
echo "BENCH entry floor=$FLOOR_G entry=$ENTRY got_floor=$FLOOR_F got=$GOT"
