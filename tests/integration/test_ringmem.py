"""Ring memory grows with use, not with the number of threads: 64 live threads that each
made 2,000 tracked calls add at most 16 MB of resident memory (over one thread, beyond
what they add bare), and 1,000 live threads that each made a few calls keep at most 64 MB of ring files
allocated on disk (du counts allocated blocks), while every call is still accounted for:
its own action, or a summary action's count."""
import json
import os
import subprocess
import time

from common import PRELOAD, agent, read_jsonl, tmpdir, write

MB = 1 << 20


def _env(extra):
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("AGENTSIGHT_") and k != "LD_PRELOAD"}
    e.update(extra)
    return e


def _rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _du(path):
    """Allocated bytes under path (du: blocks, so holes of sparse files count nothing)."""
    out = subprocess.run(["du", "-s", "--block-size=1", path], stdout=subprocess.PIPE,
                         text=True, check=True, timeout=60).stdout
    return int(out.split()[0])


def _accounted(path):
    """Calls the complete lines of path account for: one each, or a summary's count (the
    file is being written: a last line without its newline is not read)."""
    if not os.path.exists(path):
        return 0
    n = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            if b'"summary":true' in line:
                n += json.loads(line)["metadata"]["calls"]
            else:
                n += 1
    return n


def _measure(threads, calls, preloaded):
    """Runs ringmem_agent; once its threads made their calls (and, preloaded, once all of
    them are in the output file) reads its RSS and the allocated bytes of its ring files
    while the threads wait. Returns (rss, ring bytes, actions, stdout)."""
    d = tmpdir()
    out = os.path.join(d, "actions.jsonl")
    spool = os.path.join(d, "spool")
    extra = {}
    if preloaded:
        extra = {"LD_PRELOAD": PRELOAD,
                 "AGENTSIGHT_CONFIG": write(os.path.join(d, "labs.conf"), "[actions]\nlabs\n"),
                 "AGENTSIGHT_OUTPUT": "file:" + out, "AGENTSIGHT_SPOOL_DIR": spool}
    p = subprocess.Popen([agent("ringmem_agent"), str(threads), str(calls)], env=_env(extra),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "ready\n"
        if preloaded:
            # Bounded: up to about 60 s for the exporter, or 2 s without progress (calls
            # summarized while the threads wait reach the file at their exit).
            last, still = -1, 0
            for _ in range(600):
                now = _accounted(out)
                if now >= threads * calls or still >= 20:
                    break
                still = still + 1 if now == last else 0
                last = now
                time.sleep(0.1)
            time.sleep(0.5)  # the exporter's pass after its last write releases the ring
        rss = _rss(p.pid)
        rings = os.path.join(spool, "rings")
        ring_bytes = _du(rings) if os.path.isdir(rings) else 0
        text, _ = p.communicate("\n", timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0
    actions = [a for a in read_jsonl(out)] if preloaded else []
    return rss, ring_bytes, actions, text


def _check_delivered(actions, threads, calls):
    """Every call is accounted for: as its own action (each argument once, none that was
    not made), or counted in a summary action of its thread's ring when a burst filled it
    (queue = drop; the later threads' rings are small)."""
    labs = [a for a in actions if a.get("tools_used", {}).get("function") == "labs"]
    summ = [a for a in labs if (a.get("metadata") or {}).get("summary")]
    args = sorted(int(a["response"]) for a in labs if a not in summ)
    want = set(i * 1000000 + k for i in range(threads) for k in range(calls))
    assert len(set(args)) == len(args) and set(args) <= want, (len(args), len(want))
    summarized = sum(a["metadata"]["calls"] for a in summ)
    assert len(args) + summarized == len(want), (len(args), summarized, len(want))


def test_64_threads_rss_bounded():
    """What 63 more threads add over bare (RSS of 64 threads minus RSS of 1 thread, each
    run preloaded and bare): the interposer's fixed start-up memory is not per thread."""
    bare1, _, _, _ = _measure(1, 2000, False)
    pre1, _, actions1, _ = _measure(1, 2000, True)
    bare, _, _, bare_out = _measure(64, 2000, False)
    rss, rings, actions, out = _measure(64, 2000, True)
    added = (rss - pre1) - (bare - bare1)
    print(f"    64 threads x 2000 calls: RSS bare {bare / MB:.1f} MB, preloaded "
          f"{rss / MB:.1f} MB; 1 thread: bare {bare1 / MB:.1f} MB, preloaded {pre1 / MB:.1f} MB; "
          f"the threads add {added / MB:.1f} MB; ring files {rings / MB:.1f} MB")
    assert out == bare_out
    _check_delivered(actions1, 1, 2000)
    _check_delivered(actions, 64, 2000)
    assert added <= 16 * MB


def test_1000_threads_ring_files_bounded():
    bare, _, _, bare_out = _measure(1000, 5, False)
    rss, rings, actions, out = _measure(1000, 5, True)
    print(f"    1000 threads x 5 calls: ring files {rings / MB:.1f} MB allocated, RSS bare "
          f"{bare / MB:.1f} MB, preloaded {rss / MB:.1f} MB")
    assert out == bare_out
    _check_delivered(actions, 1000, 5)
    assert rings <= 64 * MB
