#!/usr/bin/env bash
# Builds each libFuzzer target in tests/fuzz/ with clang (fuzzer + ASan + UBSan) and runs it
# for a bounded time. A target's first line names the sources it links:
#   // FUZZ_SOURCES: preload/hook/config.c preload/core/log.c
set -euo pipefail
secs=${1:-20}
out=build/fuzz
mkdir -p "$out"
status=0
for f in tests/fuzz/fuzz_*.c; do
  [ -e "$f" ] || continue
  name=$(basename "$f" .c)
  srcs=$(sed -n '1s|^// FUZZ_SOURCES:||p' "$f")
  echo "fuzz: building $name" >&2
  clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -Iinclude -Ipreload -o "$out/$name" "$f" $srcs \
    -lcjson -lelf -ldw -lpthread
  corpus="$out/corpus-$name"
  mkdir -p "$corpus"
  [ -d "tests/fuzz/corpus/$name" ] && cp -n tests/fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null || true
  echo "fuzz: running $name for ${secs}s" >&2
  if ! "$out/$name" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 "$corpus" \
      >"$out/$name.log" 2>&1; then
    echo "fuzz: $name FAILED (see $out/$name.log)" >&2
    tail -n 30 "$out/$name.log" >&2
    status=1
  else
    grep -E '^(#[0-9]+|Done)' "$out/$name.log" | tail -n 1 >&2 || true
  fi
done
exit $status
