#!/usr/bin/env bash
# startup-order.sh - writes preload/hook/startup-functions: the interposer's functions that
# a process runs from its load to its exit when it calls nothing tracked (the rows of
# bench-startup.sh: AGENTSIGHT_DISABLE=1, no config, a config naming an exported function,
# one naming a function nobody has). The link of libagentsight-preload.so places them
# together at the start of the text (Makefile: "Start-up order"), so that start-up touches
# two or three 64 KB fault-around windows of the object instead of five or six, each one a
# page fault. They are found by running /bin/true under valgrind's callgrind. Rerun after
# changes to the start-up path: a missing name costs a page fault, never a wrong result.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SO=$PWD/$BUILD/libagentsight-preload.so
OUT=preload/hook/startup-functions
command -v valgrind >/dev/null || { echo "startup-order: valgrind is needed" >&2; exit 1; }
[ -e "$SO" ] || { echo "startup-order: build $SO first (make all)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/agentsight-startup-order.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
printf '[output]\nsink = file:%s/a.jsonl\n[actions]\nagentsight_bench_function_nobody_has\n' \
    "$TMP" >"$TMP/a.conf"
printf '[output]\nsink = file:%s/a.jsonl\n[actions]\nint mkfifo(const char *path, int mode)\n' \
    "$TMP" >"$TMP/e.conf"
: >"$TMP/symcache"
export AGENTSIGHT_STATS_FILE=$TMP/stats AGENTSIGHT_DIAG_FILE=$TMP/diag AGENTSIGHT_RUN_ID=1-1 \
    AGENTSIGHT_SYMCACHE=$TMP/symcache
unset AGENTSIGHT_SPOOL_DIR # its default is computed at start: that code is on the path too
n=0
# agentsight twice: the first process reads the symbols and fills the run's cache, the
# second (every later process of a run) reads the cache.
for mode in disabled none exported agentsight agentsight; do
    n=$((n + 1))
    case $mode in
    disabled) env=(AGENTSIGHT_DISABLE=1) ;;
    none) env=() ;;
    exported) env=(AGENTSIGHT_CONFIG=$TMP/e.conf) ;;
    agentsight) env=(AGENTSIGHT_CONFIG=$TMP/a.conf) ;;
    esac
    env "${env[@]}" LD_PRELOAD="$SO" valgrind -q --tool=callgrind \
        --callgrind-out-file="$TMP/cg.$n" /bin/true 2>/dev/null
done
python3 - "$TMP" "$OUT" "$SO" <<'PY'
import glob, re, subprocess, sys
tmp, out, so = sys.argv[1], sys.argv[2], sys.argv[3]
# The object's own functions (valgrind may not name the file or object of a function
# built with -ffunction-sections, but it names the function).
ours = set()
for line in subprocess.run(["nm", so], capture_output=True, text=True, check=True).stdout.splitlines():
    f = line.split()
    if len(f) == 3 and f[1] in "tT":
        ours.add(f[2])
names = set()
for f in glob.glob(tmp + "/cg.*"):
    text = subprocess.run(["callgrind_annotate", "--threshold=100", f],
                          capture_output=True, text=True, check=True).stdout
    for line in text.splitlines():
        m = re.search(r"%\)\s+\S*:([A-Za-z_][\w.]*) \[", line)
        if m and m.group(1) in ours:
            names.add(m.group(1))
if len(names) < 20:
    sys.exit("startup-order: only %d functions found: is the build's debug information there?"
             % len(names))
with open(out, "w") as o:
    o.write("\n".join(sorted(names)) + "\n")
print("%s: %d functions" % (out, len(names)))
PY
