#!/usr/bin/env bash
# bench-entry.sh - cost of one call of an entry-patched function (a static int g(int,int)
# of the program, issue 6) next to the GOT path (int f(int,int) of tests/bench/libbenchf.c
# through the PLT) and the floor (the same calls without the interposer). Builds its
# program into $BUILD/bench; every run is bounded by `timeout`; figures are medians of
# batches, in ns per call.
#
# The entry-patched call goes through the full-preservation thunk (every register a
# direct caller may rely on kept: xmm0-15 always, the wider vector state only when the
# call may reach library code, see preload/hook/capture.c), the GOT call through the lean
# one. g and f have DWARF prototypes (the program is built with -g), so both capture their
# two int arguments; the "capture off" rows ([output] capture = off) show the untyped
# cost. Each timed
# batch fits in the ring (CALLS per batch, an untimed pause of PAUSE_MS after each so the
# exporter drains); the dropped count of each run is printed (it should read 0).
#
# Environment: BUILD (default build), CALLS (per batch, default 10000), BATCHES (101),
# PAUSE_MS (20), QUEUE_BYTES (per-thread ring, default 4 MiB).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CALLS=${CALLS:-10000}
BATCHES=${BATCHES:-101}
PAUSE_MS=${PAUSE_MS:-20}
# A batch of typed records (64 + 8 + two 16-byte items) fits in the ring, as in
# bench-hook.sh.
QUEUE=${QUEUE_BYTES:-4194304}
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
printf '[actions]\ng\nf\n[output]\ncapture = off\n' >"$TMP/bench_off.conf"

# ns MODE [CONF]: prints the median ns/call, or "skipped"; with CONF (a config file name
# in $TMP) the run is preloaded, its stats line going to $TMP/stats.MODE.CONF (timeout
# comes first: only the benchmark is preloaded, not timeout itself).
ns() {
    local env=()
    if [ -n "${2:-}" ]; then
        [ -f "$PRELOAD" ] || { echo skipped; return; }
        env=(LD_PRELOAD="$PRELOAD" AGENTSIGHT_CONFIG="$TMP/$2" AGENTSIGHT_OUTPUT=null
            AGENTSIGHT_QUEUE_BYTES="$QUEUE" AGENTSIGHT_STATS_FILE="$TMP/stats.$1.$2")
    fi
    local v
    v=$(timeout 300 env "${env[@]}" "$OUT/bench_entry" "$1" "$CALLS" "$BATCHES" "$PAUSE_MS" \
        2>/dev/null)
    echo "${v:-skipped}"
}

FLOOR_G=$(ns entry)
FLOOR_F=$(ns got)
ENTRY=$(ns entry bench.conf)
GOT=$(ns got bench.conf)
ENTRY_OFF=$(ns entry bench_off.conf)
GOT_OFF=$(ns got bench_off.conf)
# ratio A B: A / B with two decimals, or - when either is not a number.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN{ if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else printf "-" }'
}
printf '%-46s %10s %12s\n' "call of int (int,int), $CALLS calls x $BATCHES" "ns/call" "x GOT path"
printf '%-46s %10s\n' "static function, bare (floor)" "$FLOOR_G"
printf '%-46s %10s %12s\n' "static function, entry-patched" "$ENTRY" "$(ratio "$ENTRY" "$GOT")"
printf '%-46s %10s %12s\n' "static function, entry-patched, capture off" "$ENTRY_OFF" \
    "$(ratio "$ENTRY_OFF" "$GOT_OFF")"
printf '%-46s %10s\n' "library function via PLT, bare (floor)" "$FLOOR_F"
printf '%-46s %10s %12s\n' "library function via PLT, GOT path" "$GOT" "1.00"
printf '%-46s %10s %12s\n' "library function via PLT, GOT path, capture off" "$GOT_OFF" "1.00"
dropped() {
    [ -s "$TMP/stats.$1" ] || { echo -; return; }
    tail -n 1 "$TMP/stats.$1" | grep -o '"dropped":[0-9]*' | cut -d: -f2
}
echo "dropped: entry $(dropped entry.bench.conf), got $(dropped got.bench.conf)," \
    "entry/off $(dropped entry.bench_off.conf), got/off $(dropped got.bench_off.conf)"
echo "BENCH entry floor=$FLOOR_G entry=$ENTRY got_floor=$FLOOR_F got=$GOT" \
    "entry_off=$ENTRY_OFF got_off=$GOT_OFF"
