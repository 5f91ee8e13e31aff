"""Event ids (issue 12): every action line a sink writes carries an event id from the moment
the call was recorded, and no two lines share one, so receivers can deduplicate. Real
python3 processes run under `agentsight run` with private spools and small queues, so that
the per-thread summaries of calls that found a full ring (queue = drop) are taken at every
place they can be: from a dead process's ring header (SIGKILL in a hot loop), at thread
exit and at the final drain (threads ending), and from the rings of multiprocessing Pool
workers ended with SIGTERM. A recovered ring of a pool that ended normally reports no
undecodable record."""
import json
import os
import re
import shutil
import sys

from common import CLI, run, tmpdir, write

# Each program is bounded: a fixed number of calls, and every run has a timeout.
KILL_LOOP = r"""
import os, json, signal
n = 0
while True:
    json.dumps({"a%d" % n: "x"}); n += 1
    if n == 30000:
        os.kill(os.getpid(), signal.SIGKILL)
"""

THREADS = r"""
import json, threading
def work(k):
    for n in range(20000):
        json.dumps({"t%d_%d" % (k, n): "x"})
ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
for t in ts: t.start()
for t in ts: t.join()
"""

POOL = r"""
import json, multiprocessing as mp
def f(x):
    return len(json.dumps({"k%d" % x: str(x)}))
if __name__ == "__main__":
    with mp.Pool(4) as p:
        print(sum(p.map(f, range(3000))))
"""


def event_ids(path):
    """Checks that every action line of the JSONL file path has an event id (32 lowercase
    hex digits) and that no two lines share one. Returns (lines, summary lines). A failure
    names the offending lines."""
    missing, seen, dups, summaries = [], {}, [], 0
    lines, torn = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                lines.append(json.loads(line))
            except ValueError:
                torn.append(line[:200])
    # A writer killed inside its write leaves a partial line; the next writer cuts it off
    # (its action comes again whole from the dead writer's ring), so none stays.
    assert not torn, f"{len(torn)} lines are no JSON, e.g. {torn[0]!r}"
    for k, a in enumerate(lines):
        md = a.get("metadata") or {}
        summaries += 1 if isinstance(md, dict) and md.get("summary") else 0
        eid = a.get("event_id") or (md.get("agentsight_event_id") if isinstance(md, dict) else None)
        if not (isinstance(eid, str) and len(eid) == 32 and
                all(c in "0123456789abcdef" for c in eid)):
            missing.append(k)
            continue
        if eid in seen:
            dups.append((eid, seen[eid], k))
        else:
            seen[eid] = k
    assert not missing, f"{len(missing)} of {len(lines)} lines without an event id, e.g. " \
        f"{lines[missing[0]]}"
    assert not dups, f"{len(dups)} duplicate event ids, e.g. {dups[0][0]}: " \
        f"{lines[dups[0][1]]} / {lines[dups[0][2]]}"
    return len(lines), summaries


def _run(prog, glob, queue=None, runs=1, timeout=90):
    """Runs python3 -c prog under `agentsight run` (actions `glob`, file sink, a private
    spool) runs times, each into a fresh directory. Returns [(out path, stderr)]."""
    res = []
    for _ in range(runs):
        d = tmpdir()
        out = os.path.join(d, "out.jsonl")
        conf = write(os.path.join(d, "ids.conf"),
                     f"[output]\nsink = file:{out}\n[actions]\n{glob}\n")
        env = {"AGENTSIGHT_SPOOL_DIR": os.path.join(d, "spool")}
        if queue:
            env["AGENTSIGHT_QUEUE_BYTES"] = str(queue)
        r = run([CLI, "run", "-q", "-c", conf, "--", sys.executable, "-c", prog], env=env,
                timeout=timeout)
        assert os.path.exists(out), r.stderr
        res.append((out, r.stderr))
    return res


def test_ids_unique_after_kill9_in_hot_loop():
    """A process killed by SIGKILL in a hot loop with a small queue leaves summaries in its
    ring header; recovered, each gets an id of its own (not the id of the last record
    read), so no id appears twice and none is missing."""
    total = sums = 0
    for out, _ in _run(KILL_LOOP, "str*", queue=65536, runs=5):
        n, s = event_ids(out)
        total += n
        sums += s
    assert total > 0 and sums > 0, (total, sums)


def test_ids_present_for_thread_exit_and_final_drain():
    """Summaries taken when threads end and at the final drain carry ids, unique among
    every line of the output."""
    sums = 0
    for out, _ in _run(THREADS, "str*", queue=65536, runs=2):
        sums += event_ids(out)[1]
    assert sums > 0, "no summary was made: the test proves nothing"


def test_ids_unique_for_pool_with_wide_glob():
    """multiprocessing Pool workers (ended with SIGTERM at pool shutdown) under a wide glob
    and a small queue: every line of the output has an id, no id twice."""
    for out, _ in _run(POOL, "str*\nmem*\nPyUnicode_*", queue=65536, runs=2, timeout=120):
        event_ids(out)


def test_pool_recovery_has_no_undecodable_record():
    """The rings of Pool workers ended with SIGTERM (a record may be in flight when the
    signal comes) are recovered without a record reported as undecodable or damaged: a
    record is either committed whole or not visible."""
    for out, err in _run(POOL, "str*\nmem*\nPyUnicode_*", runs=4, timeout=120):
        bad = [m for m in re.findall(r"(\d+) (?:damaged records|undecodable)", err) if m != "0"]
        assert not bad, err[-2000:]
        event_ids(out)


def test_summary_ids_stable_across_recoveries():
    """The summaries a process killed with SIGKILL left in its ring header get the same
    ids from every recovery: the spool is copied, `agentsight send` recovers the original
    and then the copy into the same file sink, and the second pass repeats exactly the
    ids of the first (what a receiver deduplicates), none of them a record's id."""
    d = tmpdir()
    out = os.path.join(d, "out.jsonl")
    spool = os.path.join(d, "spool")
    conf = write(os.path.join(d, "ids.conf"), f"[output]\nsink = file:{out}\n[actions]\nstr*\n")
    env = {"AGENTSIGHT_SPOOL_DIR": spool, "AGENTSIGHT_QUEUE_BYTES": "65536",
           "AGENTSIGHT_CONFIG": conf, "LD_PRELOAD": os.path.join(os.path.dirname(CLI),
                                                                  "libagentsight-preload.so"),
           "AGENTSIGHT_TEST_POLL_MS": "600000"}
    r = run([sys.executable, "-c", KILL_LOOP], env=env, timeout=90)
    assert r.returncode == -9, r.stderr
    copy = os.path.join(d, "copy")
    shutil.copytree(spool, copy)
    passes = []
    for sp in (spool, copy):
        had = sum(1 for _ in open(out)) if os.path.exists(out) else 0
        r = run([CLI, "send", "--spool", sp, "--timeout", "20000"], timeout=90)
        assert r.returncode == 0, r.stderr
        with open(out, encoding="utf-8") as f:
            got = [json.loads(line) for line in f][had:]
        passes.append(got)
    first, second = ({a["event_id"] for a in p if a["metadata"].get("summary")} for p in passes)
    assert first, "no summary in the dead ring: the test proves nothing"
    assert first == second, (len(first), len(second), first ^ second)
    for p in passes:  # within one pass every line is unique
        ids = [a["event_id"] for a in p]
        assert len(ids) == len(set(ids)), "a duplicate id within one recovery"
    records = {a["event_id"] for a in passes[0] if not a["metadata"].get("summary")}
    assert not first & records


def test_file_sink_cuts_a_short_torn_beginning():
    """A writer killed a few bytes into its line leaves less than the start of an action
    line (here '{"a'); the next writer cuts it off as its own partial line instead of
    ending it with a newline, so every line of the file is a whole action with an id."""
    d = tmpdir()
    out = os.path.join(d, "out.jsonl")
    for frag in ('{"a', '{', '{"action_na'):
        with open(out, "w") as f:
            f.write(frag)
        conf = write(os.path.join(d, "ids.conf"), f"[output]\nsink = file:{out}\n[actions]\nstrchr\n")
        r = run([CLI, "run", "-q", "-c", conf, "--", sys.executable, "-c",
                 "import json\nfor n in range(50): json.dumps({'a%d' % n: 'x'})"],
                env={"AGENTSIGHT_SPOOL_DIR": os.path.join(d, "spool")}, timeout=60)
        assert r.returncode == 0, r.stderr
        with open(out, encoding="utf-8") as f:
            text = f.read()
        assert not text.startswith(frag + "\n"), (frag, text[:80])
        n, _ = event_ids(out)
        assert n > 0, r.stderr
