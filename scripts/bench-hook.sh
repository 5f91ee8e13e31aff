#!/usr/bin/env bash
# bench-hook.sh - cost of one wrapped call of int f(int,int) (tests/bench/libbenchf.so,
# plus typed rows: int fs(const char *s) with a 64-byte string the interposer copies,
# called through the PLT by tests/bench/bench_hook.c), against a hand-written LD_PRELOAD
# wrapper (tests/bench/floor_wrap.c: dlsym(RTLD_NEXT), 2x rdtsc, one 64-byte ring write),
# this interposer, ltrace and uftrace. The thunk_direct_* rows call through the stubs
# without the installer (the internal library linked in): the lean stubs of GOT slots,
# and (thunk_direct_full_*) the full-preservation stubs of entry patches. Builds its
# programs into $BUILD/bench with cc.
# Every run is bounded by `timeout`; figures are medians of batches (bench_hook.c) and
# are compared as ratios to the floor measured in the same run.
#
# Every timed batch fits in the ring: batches of CALLS calls (default 10000: the exporter
# decodes ~1.5 M records/s while the loop makes ~14 M calls/s, so a batch of a million
# would mostly measure the drop path), each followed by an untimed pause of PAUSE_MS (20)
# in which the exporter drains; every row runs the same way, the floor included. The
# dropped count of each interposer row is printed beside it (it should read 0).
#
# The typed rows must be what they claim: the stats line of each interposer row (actions,
# dropped, hooked) is printed, and a typed row whose string went through the system call
# instead of the direct copy says so (bench_hook prints slow_reads for the direct rows).
#
# The interposer rows on f: agentsight_null_typed (a bare `f` in the config: the installer
# attaches the prototype DWARF gives, so a and b are captured), agentsight_null_untyped
# (`f capture=none`: name, timings and return only), agentsight_file (typed, file sink);
# on fs: agentsight_null_str64 (the string captured) and agentsight_null_str64_untyped
# (`fs capture=none`), whose difference is the cost of the string capture.
#
# The full-ring rows (agentsight_ringfull_typed, agentsight_ringfull_untyped, beside
# floor_2m): one back-to-back loop of 2 M calls per batch, no pause, a 64 KiB ring the
# exporter does not drain (AGENTSIGHT_TEST_POLL_MS): after the first ~900 records every
# call finds its ring full and is counted into its function's summary (queue = drop). The
# goal: no dearer than a call that records (agentsight_null_typed / _untyped).
# agentsight_ringfull_errif: the same untyped calls with an error rule (`f capture=none
# error_if=negative`), judged by the full-ring exit too.
#
# Environment: BUILD (default build), CALLS (per batch, default 10000), BATCHES (101),
# REPEAT (rounds: processes per row, default 5; the median is kept),
# PAUSE_MS (20), QUEUE_BYTES (per-thread ring of the interposer rows, default 4 MiB),
# ONLY (an extended regex: run only the rows whose label matches, e.g.
# ONLY='^(floor|agentsight_null_.*)$' to repeat the interposer rows quickly).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CALLS=${CALLS:-10000}
BATCHES=${BATCHES:-101}
REPEAT=${REPEAT:-5}
export BENCH_PAUSE_MS=${PAUSE_MS:-20}
OUT=$BUILD/bench
CC=${CC:-cc}
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/agentsight-bench-hook.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

CF="-O2 -g -Wall -Wextra"
$CC $CF -fPIC -shared -o "$OUT/libbenchf.so" tests/bench/libbenchf.c || exit 1
$CC $CF -fPIC -shared -o "$OUT/floor_wrap.so" tests/bench/floor_wrap.c -ldl || exit 1
$CC $CF -o "$OUT/bench_hook" tests/bench/bench_hook.c -L"$OUT" -lbenchf \
    -Wl,-rpath,"$(cd "$OUT" && pwd)" || exit 1
# The thunk without the installer (needs the internal library of the main build; an
# older one is used when the tree does not build right now).
make --no-print-directory -s "$BUILD/libagentsight-internal.a" BUILD="$BUILD" >/dev/null 2>&1
if [ -f "$BUILD/libagentsight-internal.a" ]; then
    $CC $CF -std=c11 -D_GNU_SOURCE -DAS_DIRECT -Iinclude -Ipreload \
        -o "$OUT/bench_hook_direct" tests/bench/bench_hook.c "$BUILD/libagentsight-internal.a" \
        -L"$OUT" -lbenchf -Wl,-rpath,"$(cd "$OUT" && pwd)" \
        -lelf -ldw -lcapstone -lcurl -lcjson -lpthread -ldl -lm || rm -f "$OUT/bench_hook_direct"
fi
printf '[actions]\nf\n' >"$TMP/bench.conf"
printf '[actions]\nf capture=none\n' >"$TMP/bench_untyped.conf"
printf '[actions]\nint fs(const char *s)\n' >"$TMP/bench_str.conf"
printf '[actions]\nfs capture=none\n' >"$TMP/bench_str_untyped.conf"
printf '[actions]\nf capture=none error_if=negative\n' >"$TMP/bench_errif.conf"

declare -A NS
declare -A VALS
declare -A DROP
declare -a ROWS
NOTE=""

# run LABEL CALLS BATCHES TIMEOUT MODE CMD... : records the ns/call bench_hook printed.
# MODE is "int" (f(i, b)), "str" (fs(s64)), or "full"/"fullstr" (the same through the
# full-preservation stubs, direct build only); CMD is the prefix that sets the environment:
# it comes after `timeout`, so only the benchmark itself is preloaded (a preloaded
# `timeout` would append its own stats line, with no actions, after the benchmark's).
# BIN (default bench_hook) selects the program.
run() {
    local label=$1 calls=$2 batches=$3 limit=$4 mode=$5
    shift 5
    local line
    if [ -n "${ONLY:-}" ] && ! [[ $label =~ $ONLY ]]; then
        return
    fi
    line=$(timeout "$limit" "$@" "$OUT/${BIN:-bench_hook}" "$label" "$calls" "$batches" "$mode" \
        2>"$TMP/err" | grep '^BENCH ')
    if [ -z "$line" ]; then
        echo "BENCH $label skipped ($(head -c 200 "$TMP/err" | tr '\n' ' '))"
        return
    fi
    echo "$line"
    [ -n "${VALS[$label]:-}" ] || ROWS+=("$label")
    VALS[$label]+="$(echo "$line" | awk '{print $3}') "
    local slow
    slow=$(echo "$line" | grep -o 'slow_reads=[0-9]*' | cut -d= -f2)
    if [ -n "$slow" ] && [ "$slow" != 0 ]; then
        NOTE+="  $label: $slow string reads took the system call, not the direct copy"$'\n'
    fi
}

# stats_note LABEL : actions/dropped from AGENTSIGHT_STATS_FILE of the last run.
stats_note() {
    [ -s "$TMP/stats" ] || return
    if [ "${round:-0}" -ne $((REPEAT - 1)) ]; then # the last round's counters are shown
        rm -f "$TMP/stats"
        return
    fi
    NOTE+="  $1: $(tail -n 1 "$TMP/stats")"$'\n'
    DROP[$1]=$(tail -n 1 "$TMP/stats" | grep -o '"dropped":[0-9]*' | cut -d: -f2)
    rm -f "$TMP/stats"
}

# irow LABEL MODE CONFIG [BATCHES [SINK]] : one interposer row (the preload library on
# bench_hook, CONFIG in $TMP, the null sink unless SINK), then its counters.
irow() {
    run "$1" "$CALLS" "${4:-$BATCHES}" 120 "$2" env LD_PRELOAD="$PRE" \
        AGENTSIGHT_CONFIG="$TMP/$3" AGENTSIGHT_OUTPUT="${5:-null}" \
        AGENTSIGHT_QUEUE_BYTES="$QUEUE" AGENTSIGHT_STATS_FILE="$TMP/stats"
    stats_note "$1"
}

# Every interposer row gets a 4 MiB queue: a batch of CALLS typed records (64 + 8 bytes of
# record and header, 72 of string item) then fits in the ring, as an untyped batch does in
# the default 1 MiB.
QUEUE=${QUEUE_BYTES:-4194304}

# REPEAT rounds over all the rows, each row one process per round: where a process's
# stack and mappings fall, and how busy the machine is at that minute, change a figure by
# up to 1.7x here; interleaving the rows spreads that over all of them, and the median of
# each row's processes is kept.
for ((round = 0; round < REPEAT; round++)); do
    run bare "$CALLS" "$BATCHES" 120 int env
    run floor "$CALLS" "$BATCHES" 120 int env LD_PRELOAD="$OUT/floor_wrap.so"
    # The floor of the full-ring rows: the same back-to-back loop of 2 M calls.
    run floor_2m 2000000 9 120 int env LD_PRELOAD="$OUT/floor_wrap.so" BENCH_PAUSE_MS=0

    if [ -x "$OUT/bench_hook_direct" ]; then
        # full_*: the same calls through the full-preservation stubs of entry patches.
        for m in null:int str64_untyped:stru str64:str full_null:full \
            full_str64_untyped:fullstru full_str64:fullstr; do
            BIN=bench_hook_direct run "thunk_direct_${m%%:*}" "$CALLS" "$BATCHES" 120 "${m##*:}" \
                env AGENTSIGHT_OUTPUT=null AGENTSIGHT_QUEUE_BYTES="$QUEUE" \
                AGENTSIGHT_STATS_FILE="$TMP/stats"
            stats_note "thunk_direct_${m%%:*}"
        done
    fi

    if [ -f "$BUILD/libagentsight-preload.so" ]; then
        PRE=$(cd "$BUILD" && pwd)/libagentsight-preload.so
        # f's prototype from DWARF (libbenchf.so is built with -g): a and b are captured.
        irow agentsight_null_typed int bench.conf
        # capture=none: the name, timings and return value only.
        irow agentsight_null_untyped int bench_untyped.conf
        # The same calls of fs untyped: the baseline of the string capture cost.
        irow agentsight_null_str64_untyped stru bench_str_untyped.conf
        # The prototype in the config makes the interposer copy the string argument.
        irow agentsight_null_str64 str bench_str.conf
        # The file sink writes every action: fewer calls keep the file small.
        irow agentsight_file int bench.conf 51 "file:$TMP/actions.jsonl"
        rm -f "$TMP/actions.jsonl"
        # A ring that stays full: every timed call takes the summary path.
        for m in typed:bench.conf untyped:bench_untyped.conf errif:bench_errif.conf; do
            run "agentsight_ringfull_${m%%:*}" 2000000 9 120 int env LD_PRELOAD="$PRE" \
                AGENTSIGHT_CONFIG="$TMP/${m##*:}" AGENTSIGHT_OUTPUT=null BENCH_PAUSE_MS=0 \
                AGENTSIGHT_QUEUE_BYTES=65536 AGENTSIGHT_TEST_POLL_MS=600000 \
                AGENTSIGHT_STATS_FILE="$TMP/stats"
            stats_note "agentsight_ringfull_${m%%:*}"
        done
    else
        echo "BENCH agentsight skipped ($BUILD/libagentsight-preload.so not built)"
    fi
done

# ltrace stops the process twice per call (ptrace breakpoints): 2000 calls.
if command -v ltrace >/dev/null; then
    BENCH_PAUSE_MS=0 run ltrace 2000 3 120 int ltrace -o /dev/null -e f
fi
# uftrace with library-call tracing of the plain binary (PLT hooks of its own; --force
# because bench_hook has no mcount instrumentation).
if command -v uftrace >/dev/null; then
    BENCH_PAUSE_MS=0 run uftrace 100000 5 120 int uftrace record --force -d "$TMP/uftrace.data"
fi

for r in "${ROWS[@]}"; do
    NS[$r]=$(echo "${VALS[$r]}" | tr ' ' '\n' | grep . | sort -g |
        awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')
done
floor=${NS[floor]:-}
echo
printf '%-24s %12s %10s %10s\n' label ns/call x_floor dropped
for r in "${ROWS[@]}"; do
    if [ -n "$floor" ]; then
        ratio=$(awk -v a="${NS[$r]}" -v b="$floor" 'BEGIN{printf "%.2f", a / b}')
    else
        ratio=-
    fi
    printf '%-24s %12s %10s %10s\n' "$r" "${NS[$r]}" "$ratio" "${DROP[$r]:--}"
done
[ -n "$NOTE" ] && printf 'pipeline counters:\n%s' "$NOTE"
# The typed-capture goals: two int arguments cost a few ns more than untyped, a 64-byte
# string argument < 20 ns more than the same call of fs untyped.
if [ -n "${NS[agentsight_null_untyped]:-}" ] && [ -n "${NS[agentsight_null_typed]:-}" ]; then
    awk -v a="${NS[agentsight_null_untyped]}" -v b="${NS[agentsight_null_typed]}" \
        'BEGIN{printf "typed int capture (agentsight_null_typed): +%.2f ns/call\n", b - a}'
fi
for pair in "agentsight_null_str64_untyped agentsight_null_str64" \
    "thunk_direct_str64_untyped thunk_direct_str64" \
    "thunk_direct_full_str64_untyped thunk_direct_full_str64"; do
    set -- $pair
    if [ -n "${NS[$1]:-}" ] && [ -n "${NS[$2]:-}" ]; then
        awk -v a="${NS[$1]}" -v b="${NS[$2]}" -v l="$2" \
            'BEGIN{printf "typed string capture (%s): +%.2f ns/call (goal < 20)\n", l, b - a}'
    fi
done
best=${NS[agentsight_null_untyped]:-${NS[thunk_direct_null]:-}}
if [ -n "$best" ] && [ -n "${NS[uftrace]:-}" ]; then
    awk -v a="$best" -v u="${NS[uftrace]}" 'BEGIN{printf "uftrace / agentsight: %.1fx\n", u / a}'
fi
exit 0
