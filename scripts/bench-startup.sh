#!/usr/bin/env bash
# bench-startup.sh - what the interposer adds to starting a process (issue: start-up costs
# nothing a user notices): a shell script starting N (default 50) `/bin/true`, run bare,
# under `agentsight run` with AGENTSIGHT_DISABLE=1 (the preload object loaded, nothing
# done), and under `agentsight run` with a config naming a function the processes lack and
# a file sink (what every process of an agent's tree pays when it calls nothing tracked).
# Rows are medians of REPEAT (default 11) runs taken in turn; reported as ms per process
# over bare and as ratios to bare, measured in the same run. Goal: at most 1 ms per
# process over bare.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
N=${N:-50}
REPEAT=${REPEAT:-11}
CLI=$BUILD/agentsight
TMP=$(mktemp -d /tmp/agentsight-bench-startup.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

cat >"$TMP/script.sh" <<SH
i=0
while [ \$i -lt $N ]; do /bin/true; i=\$((i+1)); done
SH
cat >"$TMP/agent.conf" <<CONF
[output]
sink = file:$TMP/actions.jsonl
[actions]
agentsight_bench_function_nobody_has
CONF
export AGENTSIGHT_SPOOL_DIR=$TMP/spool

# One timed run of the script; prints seconds (wall clock, from bash's own clock).
run_once() {
    local t0 t1
    t0=$EPOCHREALTIME
    "$@" >/dev/null 2>&1
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.6f\n", b-a}'
}

rows=(bare disabled agentsight)
declare -A times
for ((r = 0; r < REPEAT; r++)); do
    times[bare]+="$(run_once sh "$TMP/script.sh") "
    times[disabled]+="$(AGENTSIGHT_DISABLE=1 run_once "$CLI" run -q -c "$TMP/agent.conf" -- sh "$TMP/script.sh") "
    times[agentsight]+="$(run_once "$CLI" run -q -c "$TMP/agent.conf" -- sh "$TMP/script.sh") "
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
bare=$(median <<<"${times[bare]}")
printf '%-12s %10s %14s %10s\n' what ms/process "ms/proc over" "x bare"
for row in "${rows[@]}"; do
    m=$(median <<<"${times[$row]}")
    awk -v m="$m" -v b="$bare" -v n="$N" -v row="$row" \
        'BEGIN{printf "%-12s %10.3f %14.3f %10.2f\n", row, m*1000/(n+1), (m-b)*1000/(n+1), m/b}'
done
m=$(median <<<"${times[agentsight]}")
awk -v m="$m" -v b="$bare" -v n="$N" \
    'BEGIN{o=(m-b)*1000/(n+1); printf "agentsight adds %.3f ms per process (goal: <= 1 ms: %s)\n", o, (o<=1?"met":"NOT met")}'
if [ -e "$TMP/actions.jsonl" ]; then echo "bench-startup: a process that called nothing created the output file" >&2; exit 1; fi
