#!/usr/bin/env bash
# make bench: runs every benchmark script (scripts/bench-*.sh) in turn. Each prints its own
# table; figures are ratios against a baseline measured in the same run, because absolute
# times drift on a shared machine.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
for b in scripts/bench-hook.sh scripts/bench-entry.sh scripts/bench-api.sh scripts/bench-format.sh scripts/bench-http.sh scripts/bench-startup.sh scripts/bench-config.sh scripts/bench-llm.sh scripts/bench-llm-sock.sh; do
  [ -f "$b" ] || continue
  echo "== $(basename "$b" .sh)"
  bash "$b" || { echo "bench: $b failed" >&2; status=1; }
  echo
done
exit $status
