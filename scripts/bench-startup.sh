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
export AGENTSIGHT_SPOOL_DIR=$TMP/spool

# The rows run in turn, REPEAT rounds; each run of the script is timed by a small python3
# driver: wall clock, and CPU time (user + system of the whole process tree, from
# getrusage), which a busy machine disturbs less than the wall clock. The page faults of the
# tree (getrusage's minor faults) are the third column: a busy machine does not change
# them, and each one costs tens of microseconds in a virtual machine, so they show where
# the start-up time goes.
export CLI N
python3 - "$TMP" "$REPEAT" <<'PY'
import os, resource, statistics, subprocess, sys, time
tmp, repeat = sys.argv[1], int(sys.argv[2])
n, cli = int(os.environ["N"]), os.environ["CLI"]
script = [ "sh", tmp + "/script.sh" ]
run = [cli, "run", "-q", "-c", tmp + "/agent.conf", "--"] + script
exported = [cli, "run", "-q", "-c", tmp + "/exported.conf", "--"] + script
rows = [("bare", script, {}), ("disabled", run, {"AGENTSIGHT_DISABLE": "1"}),
        ("exported", exported, {}), ("agentsight", run, {})]
wall = {r[0]: [] for r in rows}
cpu = {r[0]: [] for r in rows}
flt = {r[0]: [] for r in rows}
for _ in range(repeat):
    for name, argv, extra in rows:
        env = dict(os.environ, **extra)
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=600, check=True)
        t1 = time.perf_counter()
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall[name].append(t1 - t0)
        cpu[name].append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
        flt[name].append(r1.ru_minflt + r1.ru_majflt - r0.ru_minflt - r0.ru_majflt)
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
for name in ("exported", "agentsight"):
    w, c = statistics.median(wall[name]), statistics.median(cpu[name])
    ow, oc = (w - bw) * 1e3 / procs, (c - bc) * 1e3 / procs
    print("%s adds %.3f ms per process wall, %.3f ms CPU (goal: <= 1 ms: %s)" % (
        name, ow, oc, "met" if ow <= 1 else "NOT met"))
PY
if [ -e "$TMP/actions.jsonl" ]; then echo "bench-startup: a process that called nothing created the output file" >&2; exit 1; fi
