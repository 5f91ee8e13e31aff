"""Regression tests of the core review's pipeline and API findings: each runs the
reproducer program tests/agents/core_fixes.c (linked with libagentsight.so) or the
crash agent, and reads the JSONL it wrote with the json module."""
import json
import os
import subprocess
import threading
import time

from common import agent, read_jsonl, run, run_preloaded, tmpdir, write

A = "core_fixes"


def kv(text):
    """key=value lines of an agent's stdout -> dict."""
    out = {}
    for line in text.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


def run_core(args, env, d=None, timeout=60):
    d = d or tmpdir()
    e = {"AGENTSIGHT_SPOOL_DIR": os.path.join(d, "spool")}
    e.update(env)
    return run([agent(A)] + [str(a) for a in args], env=e, cwd=d, timeout=timeout), d


def test_restart_while_abandoned_exporter_runs():
    """Proves (item 1) that when shutdown abandons an exporter stuck on a blocked sink
    (stderr into a FIFO nobody reads for 5 s) the next calls never start a second
    exporter sharing its state: the program ends normally (it crashed with SIGSEGV)."""
    d = tmpdir()
    fifo = os.path.join(d, "fifo")
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    drained = []

    def reader():
        time.sleep(5)
        os.set_blocking(rfd, True)
        n = 0
        for _ in range(1000000):  # bounded; ends at EOF when the program exits
            b = os.read(rfd, 65536)
            if not b:
                break
            n += len(b)
        drained.append(n)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    wfd = os.open(fifo, os.O_WRONLY)
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("AGENTSIGHT_"):
            del env[k]
    env.update({"AGENTSIGHT_FLUSH_TIMEOUT_MS": "500", "AGENTSIGHT_SPOOL_DIR":
                os.path.join(d, "spool"), "AGENTSIGHT_OUTPUT": "stderr,file:g.jsonl"})
    try:
        p = subprocess.run([agent(A), "rounds", "3000"], env=env, cwd=d, stderr=wfd,
                           stdout=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(wfd)
    t.join(30)
    os.close(rfd)
    assert p.returncode == 0, p.returncode
    assert "round=2" in p.stdout
    with open(os.path.join(d, "g.jsonl")) as f:
        text = f.read()
    # The program may exit while the abandoned exporter writes: a last line without its
    # newline is torn, and the file sink cuts it off before its next write (documented).
    lines = text.split("\n")
    for line in lines[:-1]:
        if line.strip():
            assert json.loads(line)["action_name"] == "x", line


def test_ring_dir_of_someone_else_is_refused():
    """Proves (item 2, pipeline side) that a rings directory writable by others is not
    used: one warning, nothing written there, and the actions still delivered from
    memory. (A ring file of another user: test_security.test_foreign_ring_file_is_never_shipped.)"""
    d = tmpdir()
    conf = write(os.path.join(d, "crash.conf"), "[actions]\nlabs\n")
    spool = os.path.join(d, "spool")
    os.makedirs(os.path.join(spool, "rings"))
    os.chmod(os.path.join(spool, "rings"), 0o777)
    out = os.path.join(d, "o.jsonl")
    r = run_preloaded([agent("crash_agent"), "clean", "5"], config=conf, out=out,
                      env={"AGENTSIGHT_SPOOL_DIR": spool})
    assert r.returncode == 0, r.stderr
    assert "cannot use the ring directory" in r.stderr, r.stderr
    assert os.listdir(os.path.join(spool, "rings")) == []  # nothing written there
    got = [a for a in read_jsonl(out) if a["action_name"] == "labs"]
    assert len(got) == 5, got


def test_signal_handler_calls_never_lose_a_tracked_action():
    """Proves (item 3) that track_action called from a signal handler that interrupted
    another call is refused and counted, never corrupting the ring: every call that
    returned 0 is in the file exactly once (about 20k of 300k were lost)."""
    r, d = run_core(["signal", "100000"], {"AGENTSIGHT_OUTPUT": "file:s.jsonl"})
    assert r.returncode == 0, r.stderr
    k = kv(r.stdout)
    lines = read_jsonl(os.path.join(d, "s.jsonl"))
    main = [x for x in lines if x["action_name"] == "main"]
    handler = [x for x in lines if x["action_name"] == "from_handler"]
    assert int(k["flush"]) == 0
    assert len(main) == int(k["main_ok"]) == 100000
    assert sorted(x["tools_used"]["i"] for x in main) == list(range(100000))
    assert len(handler) == int(k["handler_ok"])
    assert int(k["dropped"]) == int(k["handler_err"])


def test_action_larger_than_half_the_queue_is_refused_in_validation():
    """Proves (item 6) that an action that can never fit in a ring is refused with a
    message naming the limit, is not counted as a drop, and later actions still go."""
    r, d = run_core(["big", "600000"], {"AGENTSIGHT_OUTPUT": "file:b.jsonl"})
    assert r.returncode == 0, r.stderr
    k = kv(r.stdout)
    assert k["rc"] == "-1"
    assert k["message"] == ("action: larger than 524280 bytes (half of "
                            "AGENTSIGHT_QUEUE_BYTES)"), k["message"]
    assert k["dropped"] == "0"
    assert [x["action_name"] for x in read_jsonl(os.path.join(d, "b.jsonl"))] == ["small"]


def test_exit_does_not_wait_for_a_thread_that_keeps_tracking():
    """Proves (item 7) that exit() drains what was committed when it began and returns,
    although another thread goes on tracking: with a 30 s flush timeout the process ends
    well within the 20 s bound (it took the whole flush timeout)."""
    r, d = run_core(["exitbusy"], {"AGENTSIGHT_OUTPUT": "file:e.jsonl",
                                   "AGENTSIGHT_FLUSH_TIMEOUT_MS": "30000"}, timeout=20)
    assert r.returncode == 0, r.stderr
    names = {x["action_name"] for x in read_jsonl(os.path.join(d, "e.jsonl"))}
    assert "first" in names


def test_failed_start_is_told_once():
    """Proves (item 8) that a start that cannot open any sink is told once, not once per
    call, and every call is refused."""
    r, _ = run_core(["failstart", "2000"], {"AGENTSIGHT_OUTPUT": ",,,"})
    assert r.returncode == 0, r.stderr
    assert kv(r.stdout)["refused"] == "2000"
    told = [x for x in r.stderr.splitlines() if "no sink could be opened" in x]
    assert len(told) == 1, r.stderr[:2000]


def test_restart_keeps_settings_stable_for_other_threads():
    """Proves (item 10) that shutdown/restart cycles while other threads track never
    show them torn settings: every line carries the configured conversation id."""
    r, d = run_core(["restart", "100"], {"AGENTSIGHT_OUTPUT": "file:r.jsonl",
                                         "AGENTSIGHT_CONVERSATION_ID": "conv-stable-1"})
    assert r.returncode == 0, r.stderr
    lines = read_jsonl(os.path.join(d, "r.jsonl"))
    assert len([x for x in lines if x["action_name"] == "main"]) == 100
    assert {x["conversation_id"] for x in lines} == {"conv-stable-1"}


def test_shutdown_keeps_ring_files_of_live_threads():
    """Proves (item 5) that a shutdown followed by a restart leaves the ring files of
    threads that still run (they were unlinked, so later actions had no crash safety),
    that all four actions arrive, and that exit removes the files."""
    d = tmpdir()
    rings = os.path.join(d, "spool", "rings")
    r, _ = run_core(["livefile", rings], {"AGENTSIGHT_OUTPUT": "file:l.jsonl"}, d)
    assert r.returncode == 0, r.stderr
    assert kv(r.stdout)["rings_after_restart"] == "2"
    names = sorted(x["action_name"] for x in read_jsonl(os.path.join(d, "l.jsonl")))
    assert names == ["main_after", "main_before", "worker_after", "worker_before"]
    assert [f for f in os.listdir(rings) if f.endswith(".ring")] == []


def test_each_shutdown_reports_only_new_drops():
    """Proves (item 12) that a second shutdown does not report the first one's drops
    again: one "dropped" line for one burst."""
    r, _ = run_core(["drops", "2000"], {"AGENTSIGHT_OUTPUT": "file:d.jsonl",
                                        "AGENTSIGHT_QUEUE_BYTES": "4096",
                                        "AGENTSIGHT_QUEUE_POLICY": "drop"})
    assert r.returncode == 0, r.stderr
    k = kv(r.stdout)
    assert int(k["dropped_first"]) > 0
    told = [x for x in r.stderr.splitlines() if "actions dropped" in x]
    assert told == ["agentsight: %s actions dropped (queue full)" % k["dropped_first"]], told
