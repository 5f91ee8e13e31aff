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
echo "== 3. the first actions recorded ($tmp/actions.jsonl)"
head -n 3 "$tmp/actions.jsonl"

echo
echo "== 4. agentsight report"
timeout 60 "$CLI" report "$tmp/actions.jsonl"
