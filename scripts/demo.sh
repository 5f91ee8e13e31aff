#!/usr/bin/env bash
# demo.sh - shows the interposer on the demo agent: the agent bare, the same agent under
# `agentsight run` with config/example.conf, the first actions recorded, and the report.
# Builds nothing itself: `make demo` builds first, then runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
AGENT=$BUILD/agents/example_agent
CLI=$BUILD/agentsight
for f in "$AGENT" "$CLI" "$BUILD/libagentsight-preload.so"; do
  [ -e "$f" ] || { echo "demo: $f is missing: run 'make demo'" >&2; exit 1; }
done
tmp=$(mktemp -d /tmp/agentsight-demo.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

echo "== 1. the agent on its own"
timeout 60 "$AGENT"

echo
echo "== 2. the same agent under agentsight run -c config/example.conf"
timeout 60 "$CLI" run -c config/example.conf -o "file:$tmp/actions.jsonl" -- "$AGENT"

echo
echo "== 3. the actions recorded ($tmp/actions.jsonl, one JSON object per line)"
echo "-- one line as written:"
grep -m1 '"weather_lookup"' "$tmp/actions.jsonl"
echo "-- every action, in short:"
python3 - "$tmp/actions.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    a = json.loads(line)
    params = (a.get("tools_used") or {}).get("parameters", {})
    args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in params.items())
    err = f"  error: {a['error_msg']}" if a.get("error_msg") else ""
    ns = a["metadata"]["duration_ns"]
    took = f"{ns / 1e6:.3f} ms" if ns >= 100000 else f"{ns} ns"
    print(f"  {a['action_name']}({args}) -> {json.dumps(a['response'], ensure_ascii=False)}"
          f"  [{took}]{err}")
PY

echo
echo "== 4. agentsight report"
timeout 60 "$CLI" report "$tmp/actions.jsonl"
