#!/usr/bin/env bash
# bench-http.sh - delivery figures: actions per second delivered to the local AgentSight
# API emulator (live + spool replay by `agentsight send`) and into the file sink; then the
# hot-path cost of agentsight_track_action() timed inside the agent (tests/bench/
# bench_http.c, ns per call over a bounded loop, start and exit excluded) with the null
# sink, the agentsight sink at a dead port and the agentsight sink to an emulator
# answering in 5 s, with ratios to the null sink, and each run's exit time next to the
# flush bound (AGENTSIGHT_FLUSH_TIMEOUT_MS) it must stay within.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
N=${BENCH_HTTP_N:-25000}         # actions per thread, 4 threads (throughput part)
CALLS=${BENCH_HTTP_CALLS:-200000} # timed calls per hot-path run
FLUSH_MS=${BENCH_HTTP_FLUSH_MS:-2000}
KEY=ags_0123456789abcdef0123456789abcdef_a1b2c3
D=$(mktemp -d)
EMU=
SLOW=
cleanup() {
  # The emulators were started in command substitutions: not children of this shell, so
  # they are only signalled (wait would answer 127); the script keeps its own status.
  local rc=$?
  [ -n "$EMU" ] && kill "$EMU" 2>/dev/null
  [ -n "$SLOW" ] && kill "$SLOW" 2>/dev/null
  rm -rf "$D"
  exit "$rc"
}
trap cleanup EXIT
emulator() { # emulator PORTFILE ARGS... ; prints its pid
  python3 scripts/agentsight_emulator.py --port 0 --key "$KEY" --max-seconds 600 "${@:2}" >"$1" &
  echo $!
}
wait_port() {
  for _ in $(seq 50); do [ -s "$1" ] && break; sleep 0.1; done
  head -1 "$1"
}
EMU=$(emulator "$D/port")
SLOW=$(emulator "$D/slow-port" --fail-mode slow --slow-seconds 5)
PORT=$(wait_port "$D/port")
SLOW_PORT=$(wait_port "$D/slow-port")
now() { date +%s.%N; }
stress() { timeout 300 "$BUILD/agents/api_stress" threads 4 "$N" >/dev/null; }
total=$((4 * N))

${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Iinclude -o "$D/bench_http" \
  tests/bench/bench_http.c -L"$BUILD" -lagentsight -Wl,-rpath,"$(cd "$BUILD" && pwd)"

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

python3 - "$total" "$got" "$t0" "$t1" "$lines" "$t2" "$t3" <<'PY'
import sys
total, got = int(sys.argv[1]), int(sys.argv[2])
t0, t1 = float(sys.argv[3]), float(sys.argv[4])
lines, t2, t3 = int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
print(f"{'what':44} {'actions':>8} {'seconds':>8} {'actions/s':>10}")
print(f"{'agentsight sink -> emulator (incl. replay)':44} {got:8d} {t1-t0:8.2f} {got/(t1-t0):10.0f}")
print(f"{'file sink':44} {lines:8d} {t3-t2:8.2f} {lines/(t3-t2):10.0f}")
if got != total:
    print(f"bench-http: only {got} of {total} actions arrived", file=sys.stderr)
    sys.exit(1)
PY

# Hot path: each configuration runs the same bench program; exit time = when the
# process ended (seen here) - when its main returned (printed by it), same clock. Two
# regimes: paced (bursts of 1000 calls with 5 ms pauses: the queue never fills, so this is
# the cost of the call while the exporter works for that sink: the delivery goal is that
# it equals the null sink's) and saturated (all calls back to back: once the queue is full
# the call waits for the exporter, so this shows how fast the exporter drains per sink).
python3 - "$D" "$CALLS" "$FLUSH_MS" "$PORT" "$SLOW_PORT" <<'PY'
import os, subprocess, sys, time
d, calls, flush_ms, port, slow_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    sys.argv[4], sys.argv[5]
runs = [
    ("null sink", {"AGENTSIGHT_OUTPUT": "null"}),
    ("file sink (reference)", {"AGENTSIGHT_OUTPUT": "file:" + os.path.join(d, "hot.jsonl")}),
    ("agentsight, dead port 127.0.0.1:1",
     {"AGENTSIGHT_OUTPUT": "agentsight", "AGENTSIGHT_API_ENDPOINT": "http://127.0.0.1:1"}),
    ("agentsight, emulator answering in 5 s",
     {"AGENTSIGHT_OUTPUT": "agentsight",
      "AGENTSIGHT_API_ENDPOINT": f"http://127.0.0.1:{slow_port}"}),
]
REPEAT = 3
bad = 0
for regime, extra_args in (("paced", ["5"]), ("saturated", [])):
    rows = {name: ([], [], 0) for name, _ in runs}
    # Rounds over the sinks, so a slow minute of the machine touches every row alike.
    for rep in range(REPEAT):
        for i, (name, extra) in enumerate(runs):
            env = dict(os.environ)
            env.update(extra)
            env["AGENTSIGHT_FLUSH_TIMEOUT_MS"] = str(flush_ms)
            env["AGENTSIGHT_SPOOL_DIR"] = os.path.join(d, f"hot-spool-{regime}-{i}-{rep}")
            p = subprocess.run([os.path.join(d, "bench_http"), str(calls)] + extra_args,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, timeout=120)
            end = time.monotonic_ns()
            vals = dict(line.split() for line in p.stdout.splitlines() if line.strip())
            nss, exits, drops = rows[name]
            nss.append(float(vals["ns_per_call"]))
            exits.append((end - int(vals["main_return_ns"])) / 1e6)
            rows[name] = (nss, exits, drops + int(vals["dropped"]))
    base = sorted(rows["null sink"][0])[REPEAT // 2]
    print()
    what = ("bursts of 1000 with 5 ms pauses (goal: the null sink's cost)" if regime == "paced"
            else "back to back (the call waits when the queue is full)")
    print(f"hot path, {regime}: {calls} agentsight_track_action calls timed inside the agent, "
          f"{what}; median of {REPEAT} runs; exit = worst of {REPEAT}, bound = flush timeout "
          f"{flush_ms} ms + 500 ms")
    print(f"{'sink':40} {'ns/call':>8} {'ratio':>6} {'exit ms':>8} {'bound':>6} {'dropped':>8}")
    for name, _ in runs:
        nss, exits, drops = rows[name]
        ns = sorted(nss)[REPEAT // 2]
        ex = max(exits)
        ok = ex <= flush_ms + 500
        bad += not ok
        print(f"{name:40} {ns:8.1f} {ns / base:6.2f} {ex:8.0f} {'ok' if ok else 'OVER':>6} "
              f"{drops:8d}")
sys.exit(1 if bad else 0)
PY
