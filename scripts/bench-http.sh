#!/usr/bin/env bash
# bench-http.sh - delivery figures: actions per second delivered to the local AgentSight
# API emulator (live + spool replay by `agentsight send`) and into the file sink, and the
# cost per tracked action with a dead server next to the null sink (same run, ratios).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
N=${BENCH_HTTP_N:-25000}   # actions per thread, 4 threads
KEY=ags_0123456789abcdef0123456789abcdef_a1b2c3
D=$(mktemp -d)
python3 scripts/agentsight_emulator.py --port 0 --key "$KEY" --max-seconds 600 >"$D/port" &
EMU=$!
trap 'kill $EMU 2>/dev/null; wait $EMU 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 50); do [ -s "$D/port" ] && break; sleep 0.1; done
PORT=$(head -1 "$D/port")
now() { date +%s.%N; }
stress() { timeout 300 "$BUILD/agents/api_stress" threads 4 "$N" >/dev/null; }
total=$((4 * N))

export AGENTSIGHT_API_KEY=$KEY AGENTSIGHT_API_ENDPOINT=http://127.0.0.1:$PORT \
  AGENTSIGHT_SPOOL_DIR=$D/spool AGENTSIGHT_LOG_LEVEL=error
t0=$(now)
AGENTSIGHT_OUTPUT=agentsight stress
timeout 300 "$BUILD/agentsight" send --timeout 240000 2>/dev/null || true
t1=$(now)
got=$(curl -s "127.0.0.1:$PORT/_stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["unique"])')

t2=$(now)
AGENTSIGHT_OUTPUT=file:$D/out.jsonl stress
t3=$(now)
lines=$(wc -l <"$D/out.jsonl")

t4=$(now)
AGENTSIGHT_OUTPUT=null stress
t5=$(now)
t6=$(now)
AGENTSIGHT_OUTPUT=agentsight AGENTSIGHT_API_ENDPOINT=http://127.0.0.1:9 \
  AGENTSIGHT_SPOOL_DIR=$D/spool-dead stress
t7=$(now)

python3 - "$total" "$got" "$t0" "$t1" "$lines" "$t2" "$t3" "$t4" "$t5" "$t6" "$t7" <<'PY'
import sys
total, got = int(sys.argv[1]), int(sys.argv[2])
t0, t1 = float(sys.argv[3]), float(sys.argv[4])
lines, t2, t3 = int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
t4, t5, t6, t7 = map(float, sys.argv[8:12])
print(f"{'what':44} {'actions':>8} {'seconds':>8} {'actions/s':>10}")
print(f"{'agentsight sink -> emulator (incl. replay)':44} {got:8d} {t1-t0:8.2f} {got/(t1-t0):10.0f}")
print(f"{'file sink':44} {lines:8d} {t3-t2:8.2f} {lines/(t3-t2):10.0f}")
null_ns, dead_ns = (t5 - t4) / total * 1e9, (t7 - t6) / total * 1e9
print(f"process wall time per tracked action: null sink {null_ns:.0f} ns, "
      f"dead server {dead_ns:.0f} ns (ratio {dead_ns/null_ns:.2f}; includes the exit flush)")
if got != total:
    print(f"bench-http: only {got} of {total} actions arrived", file=sys.stderr)
    sys.exit(1)
PY
