#!/usr/bin/env bash
# bench-config.sh - start-up cost of a large config: /bin/true run bare, under the
# interposer with a 1-entry config, and with a config of ENTRIES (default 100,000) names
# that match nothing (the lookup that matters: every symbol of every loaded object against
# every entry). Figures are medians of RUNS runs (wall ms and CPU ms, user + system, of the
# child), and ratios against the 1-entry config measured in the same run. Every run is
# bounded by a 120 s timeout.
#
# Environment: BUILD (default build), ENTRIES (100000), RUNS (5).
set -uo pipefail
cd "$(dirname "$0")/.."
export SCRIPTS=$PWD/scripts
BUILD=${BUILD:-build}
ENTRIES=${ENTRIES:-100000}
RUNS=${RUNS:-5}
PRELOAD=$(realpath "$BUILD/libagentsight-preload.so")
OUT=$BUILD/bench
mkdir -p "$OUT"
printf '[actions]\nlabs\n' >"$OUT/one.conf"
python3 -c "import sys
n = int(sys.argv[1])
print('[actions]')
for i in range(n): print('bench_nothing_%d' % i)" "$ENTRIES" >"$OUT/big.conf"

# Prints "wall_ms cpu_ms" medians of RUNS runs of /bin/true with the given config ("" bare).
measure() {
  python3 - "$1" "$PRELOAD" "$RUNS" <<'PY'
import os, statistics, sys
sys.path.insert(0, os.environ["SCRIPTS"])
from benchproc import run_timed
conf, preload, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSIGHT_")}
env["AGENTSIGHT_OUTPUT"] = "null"
if conf:
    env.update(LD_PRELOAD=preload, AGENTSIGHT_CONFIG=conf)
walls, cpus = [], []
for _ in range(runs):
    w, c, _, _ = run_timed(["/bin/true"], env, timeout=120)
    walls.append(w * 1000)
    cpus.append(c * 1000)
print("%.1f %.1f" % (statistics.median(walls), statistics.median(cpus)))
PY
}

read -r bw bc < <(measure "")
read -r ow oc < <(measure "$OUT/one.conf")
read -r gw gc < <(measure "$OUT/big.conf")
ratio() { python3 -c "import sys; a, b = map(float, sys.argv[1:]); print('%.1fx' % (a / b) if b > 0 else '-')" "$1" "$2"; }
printf '%-34s %10s %10s %12s\n' "start-up of /bin/true" "wall ms" "cpu ms" "cpu vs 1-entry"
printf '%-34s %10s %10s %12s\n' "bare" "$bw" "$bc" "-"
printf '%-34s %10s %10s %12s\n' "1-entry config" "$ow" "$oc" "1.0x"
printf '%-34s %10s %10s %12s\n' "$ENTRIES-entry config" "$gw" "$gc" "$(ratio "$gc" "$oc")"
