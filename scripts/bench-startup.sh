#!/usr/bin/env bash
# bench-startup.sh - what the interposer adds to starting a process (issue: start-up costs
# nothing a user notices): a shell script starting N (default 50) `/bin/true`, run bare,
# under `agentsight run` with AGENTSIGHT_DISABLE=1 (the preload object loaded, nothing
# done), and under `agentsight run` with a file sink and a config naming
#  - agentsight: a function the processes lack (hook=auto: each process also looks for it
#    among the local symbols of its objects, reading their .symtab or build-id debug
#    files: libc's when libc6-dbg is installed),
#  - exported: an exported libc function they never call, with its prototype written
#    (found in memory, nothing read from disk),
#  - dwarf: the same function as a bare name, its prototype from libc's DWARF (when the
#    debug package is installed) as the first process ever left it in the prototype cache
#    (AGENTSIGHT_CACHE_DIR; warmed by one run before the rounds),
# which is what every process of an agent's tree pays when it calls nothing tracked.
# Rows are medians of REPEAT (default 11) runs taken in turn; reported as ms per process
# (the shell and its N children) over bare and as ratios to bare, measured in the same
# run. Goal: at most 1 ms per process over bare.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
N=${N:-50}
REPEAT=${REPEAT:-11}
CLI=$BUILD/agentsight
TMP=$(mktemp -d /tmp/agentsight-bench-startup.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

cat >"$TMP/script.sh" <<SH
i=0
while [ \$i -lt $N ]; do /bin/true; i=\$((i+1)); done
SH
cat >"$TMP/agent.conf" <<CONF
[output]
sink = file:$TMP/actions.jsonl
[actions]
agentsight_bench_function_nobody_has
CONF
cat >"$TMP/exported.conf" <<CONF
[output]
sink = file:$TMP/actions.jsonl
[actions]
int mkfifo(const char *path, int mode)
CONF
cat >"$TMP/dwarf.conf" <<CONF
[output]
sink = file:$TMP/actions.jsonl
[actions]
mkfifo
CONF
export AGENTSIGHT_SPOOL_DIR=$TMP/spool AGENTSIGHT_CACHE_DIR=$TMP/cache

# The rows run in turn, REPEAT rounds; each run of the script is timed by a small python3
# driver (scripts/benchproc.py: it blocks in wait4, so the wall clock is not rounded up to a
# poller's wake-up): wall clock, and CPU time (user + system of the whole process tree, from
# wait4's rusage), which a busy machine disturbs less than the wall clock. The page faults of the
# tree (its minor faults) are the third column: a busy machine does not change
# them, and each one costs tens of microseconds in a virtual machine, so they show where
# the start-up time goes.
export CLI N SCRIPTS=$PWD/scripts
python3 - "$TMP" "$REPEAT" <<'PY'
import os, statistics, sys
sys.path.insert(0, os.environ["SCRIPTS"])
from benchproc import run_timed
tmp, repeat = sys.argv[1], int(sys.argv[2])
n, cli = int(os.environ["N"]), os.environ["CLI"]
script = [ "sh", tmp + "/script.sh" ]
run = [cli, "run", "-q", "-c", tmp + "/agent.conf", "--"] + script
exported = [cli, "run", "-q", "-c", tmp + "/exported.conf", "--"] + script
dwarf = [cli, "run", "-q", "-c", tmp + "/dwarf.conf", "--"] + script
rows = [("bare", script, {}), ("disabled", run, {"AGENTSIGHT_DISABLE": "1"}),
        ("exported", exported, {}), ("agentsight", run, {}), ("dwarf", dwarf, {})]
# The first process ever to need mkfifo's DWARF prototype reads libc's debug information
# (when its debug package is installed) and caches it: done once before the rounds.
run_timed(dwarf, dict(os.environ))
wall = {r[0]: [] for r in rows}
cpu = {r[0]: [] for r in rows}
flt = {r[0]: [] for r in rows}
for _ in range(repeat):
    for name, argv, extra in rows:
        w, c, f, status = run_timed(argv, dict(os.environ, **extra))
        if status != 0:
            sys.exit("bench-startup: %s exited with %d" % (name, status))
        wall[name].append(w)
        cpu[name].append(c)
        flt[name].append(f)
procs = n + 1  # the shell and its n children
bw, bc = statistics.median(wall["bare"]), statistics.median(cpu["bare"])
bf = statistics.median(flt["bare"])
print("%-11s %11s %12s %8s %11s %12s %8s %12s %10s" % (
    "what", "wall ms/proc", "over bare", "x bare", "cpu ms/proc", "over bare", "x bare",
    "faults/proc", "over bare"))
for name, _, _ in rows:
    w, c = statistics.median(wall[name]), statistics.median(cpu[name])
    f = statistics.median(flt[name])
    print("%-11s %11.3f %12.3f %8.2f %11.3f %12.3f %8.2f %12.1f %10.1f" % (
        name, w * 1e3 / procs, (w - bw) * 1e3 / procs, w / bw,
        c * 1e3 / procs, (c - bc) * 1e3 / procs, c / bc, f / procs, (f - bf) / procs))
for name in ("exported", "agentsight", "dwarf"):
    w, c = statistics.median(wall[name]), statistics.median(cpu[name])
    ow, oc = (w - bw) * 1e3 / procs, (c - bc) * 1e3 / procs
    print("%s adds %.3f ms per process wall, %.3f ms CPU (goal: <= 1 ms: %s)" % (
        name, ow, oc, "met" if ow <= 1 else "NOT met"))
PY
if [ -e "$TMP/actions.jsonl" ]; then echo "bench-startup: a process that called nothing created the output file" >&2; exit 1; fi
