#!/usr/bin/env bash
# Exporter throughput: one ~350-byte action line formatted by our JSON writer versus a
# cJSON tree printed, in the same run (DESIGN.md, the throughput budget).
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory -s build/bench/bench_format >/dev/null
out=$(build/bench/bench_format 2>/dev/null)
echo "$out"
w=$(awk '$2=="format_jsonw"{print $3}' <<<"$out")
c=$(awk '$2=="format_cjson"{print $3}' <<<"$out")
awk -v w="$w" -v c="$c" 'BEGIN{printf "jsonw is %.1fx faster than cJSON (goal: >= 1 M lines/s: %s)\n", w/c, (w>=1000000?"met":"NOT met")}'
