#!/usr/bin/env bash
# Builds the libFuzzer targets in tests/fuzz/ with clang (fuzzer + ASan + UBSan) and runs
# each for a bounded time, one after the other.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (make fuzz FUZZ_SECONDS=600 FUZZ_TARGETS=fuzz_llm)
#
# SECONDS per target (default 20); TARGETs are names like fuzz_llm or llm (default: every
# tests/fuzz/fuzz_*.c). The library sources are compiled once with the same
# instrumentation into build/fuzz/obj (through the Makefile, so only what changed is
# rebuilt) and archived; each target is its one .c file linked against that archive, so
# it pulls only the objects it uses. The corpus grows in build/fuzz/corpus-NAME, seeded
# from tests/fuzz/corpus/NAME/; a crash leaves its input in build/fuzz/ (crash-*) and
# fails the run. Each target prints one progress line when it starts and one with its
# figures (executions, coverage) when it ends.
set -euo pipefail
secs=${1:-20}
shift || true
case $secs in
  '' | *[!0-9]* | 0) echo "fuzz: seconds must be a whole number above 0 (libFuzzer reads 0 as no limit)" >&2; exit 2 ;;
esac
out=build/fuzz
mkdir -p "$out"

targets=()
if [ $# -gt 0 ]; then
  for t in "$@"; do
    t=${t#fuzz_}
    [ -e "tests/fuzz/fuzz_$t.c" ] || { echo "fuzz: no target tests/fuzz/fuzz_$t.c" >&2; exit 2; }
    targets+=("fuzz_$t")
  done
else
  for f in tests/fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi

# The instrumented library: the C objects of core, hook and CLI (not the hook's assembly,
# nor the interposer's constructor and exported wrappers, nor the CLI's main).
srcs=$(ls preload/core/*.c preload/hook/*.c preload/cli/*.c |
  grep -vE '^preload/(cli/main|hook/preload_main|hook/dlwrap)\.c$')
objs=$(echo "$srcs" | sed 's|^\(.*\)\.c$|'"$out"'/obj/obj/\1.o|')
echo "fuzz: building the instrumented library" >&2
make --no-print-directory -s -j2 BUILD="$out/obj" SAN=address,undefined CC=clang \
  CFLAGS=-fsanitize=fuzzer-no-link $objs >&2
rm -f "$out/libfuzzcore.a"
ar rcs "$out/libfuzzcore.a" $objs

status=0
i=0
for name in "${targets[@]}"; do
  i=$((i + 1))
  echo "fuzz: [$i/${#targets[@]}] building $name" >&2
  clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -Iinclude -Ipreload -Itests/fuzz -o "$out/$name" \
    "tests/fuzz/$name.c" "$out/libfuzzcore.a" \
    -lcjson -lz -lbrotlidec -lbrotlienc -lelf -ldw -lpthread -ldl -lm
  corpus="$out/corpus-$name"
  mkdir -p "$corpus"
  [ -d "tests/fuzz/corpus/$name" ] && cp -n tests/fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null || true
  echo "fuzz: [$i/${#targets[@]}] running $name for ${secs}s" >&2
  if ! "$out/$name" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 \
      -artifact_prefix="$out/$name-" -print_final_stats=1 "$corpus" >"$out/$name.log" 2>&1; then
    echo "fuzz: [$i/${#targets[@]}] $name FAILED (see $out/$name.log)" >&2
    tail -n 30 "$out/$name.log" >&2
    status=1
  else
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$name.log")
    last=$(grep -E '^#[0-9]+' "$out/$name.log" | tail -n 1 || true)
    cov=$(echo "$last" | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' || true)
    echo "fuzz: [$i/${#targets[@]}] $name ok: ${runs:-?} runs in ${secs}s, ${cov:-no coverage line}" >&2
  fi
done
exit $status
