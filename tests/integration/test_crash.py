"""Crash-safe capture: actions recorded before a process dies by SIGKILL, SIGSEGV or
_exit() are shipped by the next instrumented process (ring files in the spool directory),
exactly once; damaged ring files never ship garbage; a live process's files are never
taken. The dying agent runs with AGENTSIGHT_TEST_POLL_MS (a test-only exporter interval)
so nothing is delivered before it dies."""
import os
import signal
import subprocess

from common import PRELOAD, agent, read_jsonl, run_preloaded, tmpdir, write

N = 40
RING_DATA_OFF = 4096  # ring.h: AS_RING_DATA_OFF


def _env(spool, slow):
    e = {"AGENTSIGHT_SPOOL_DIR": spool}
    if slow:
        e["AGENTSIGHT_TEST_POLL_MS"] = "600000"
    return e


def _setup():
    d = tmpdir()
    conf = write(os.path.join(d, "crash.conf"), "[actions]\nlabs\n")
    return d, conf, os.path.join(d, "spool")


def _ring_files(spool):
    rings = os.path.join(spool, "rings")
    if not os.path.isdir(rings):
        return []
    return sorted(f for f in os.listdir(rings) if ".ring" in f)


def _recover(d, conf, spool, name="after.jsonl"):
    """Starts a fresh instrumented process (tracks nothing itself); returns its actions."""
    out = os.path.join(d, name)
    r = run_preloaded([agent("crash_agent"), "clean", "0"], config=conf, out=out,
                      env=_env(spool, False))
    assert r.returncode == 0, r.stderr
    return read_jsonl(out)


def _split(actions):
    """API indexes and labs responses seen, with duplicates kept."""
    api = [a["metadata"]["i"] for a in actions if a["action_name"] == "crash_api"]
    calls = [int(a["response"]) - 1000 for a in actions if a["action_name"] == "labs"]
    other = [a for a in actions if a["action_name"] not in ("crash_api", "labs")]
    return api, calls, other


def test_death_then_next_start_delivers_exactly_once():
    """Proves that for SIGKILL, SIGSEGV and _exit() the N API actions and N wrapped calls
    recorded before death reach a sink exactly once (what the dying process delivered plus
    what the next start recovered), with the names and values they were recorded with."""
    for mode, want_rc in (("kill", -signal.SIGKILL), ("segv", -signal.SIGSEGV), ("exit", 3)):
        d, conf, spool = _setup()
        before = os.path.join(d, "before.jsonl")
        r = run_preloaded([agent("crash_agent"), mode, str(N)], config=conf, out=before,
                          env=_env(spool, True))
        assert r.returncode == want_rc, (mode, r.returncode, r.stderr)
        assert _ring_files(spool), mode  # something was left to recover
        after = _recover(d, conf, spool)
        api, calls, other = _split(read_jsonl(before) + after)
        assert sorted(api) == list(range(N)), (mode, api)
        assert sorted(calls) == list(range(N)), (mode, calls)
        assert other == []
        labs = [a for a in after if a["action_name"] == "labs"]
        assert labs and labs[0]["tools_used"]["function"] == "labs"
        assert labs[0]["metadata"]["agentsight_recovered"] is True
        assert _ring_files(spool) == [], (mode, _ring_files(spool))
        # A second start finds nothing more: recovered files are gone.
        assert _recover(d, conf, spool, "again.jsonl") == []


def test_clean_exit_leaves_no_ring_files():
    """Proves a normal exit delivers everything itself and removes its ring files, so a
    later start recovers nothing (no duplicates)."""
    d, conf, spool = _setup()
    out = os.path.join(d, "a.jsonl")
    r = run_preloaded([agent("crash_agent"), "clean", str(N)], config=conf, out=out,
                      env=_env(spool, False))
    assert r.returncode == 0, r.stderr
    api, calls, _ = _split(read_jsonl(out))
    assert sorted(api) == list(range(N)) and sorted(calls) == list(range(N))
    assert _ring_files(spool) == []
    assert _recover(d, conf, spool) == []


def test_torn_record_is_skipped_and_bad_file_kept_aside():
    """Proves a ring file whose first record header was overwritten yields every other
    record and nothing invented, and a truncated ring file ships nothing, is kept aside as
    .bad, and breaks neither the recovering process nor its output."""
    d, conf, spool = _setup()
    r = run_preloaded([agent("crash_agent"), "kill", str(N)], config=conf,
                      out=os.path.join(d, "before.jsonl"), env=_env(spool, True))
    assert r.returncode == -signal.SIGKILL
    files = _ring_files(spool)
    assert len(files) == 1, files
    path = os.path.join(spool, "rings", files[0])
    with open(path, "r+b") as f:  # the first record is API action i=0
        f.seek(RING_DATA_OFF)
        f.write(b"\xff" * 8)
    after = _recover(d, conf, spool)
    api, calls, other = _split(after)
    assert sorted(api) == list(range(1, N)), api
    assert sorted(calls) == list(range(N)), calls
    assert other == []

    r = run_preloaded([agent("crash_agent"), "kill", str(N)], config=conf,
                      out=os.path.join(d, "before2.jsonl"), env=_env(spool, True))
    assert r.returncode == -signal.SIGKILL
    files = _ring_files(spool)
    assert len(files) == 1, files
    path = os.path.join(spool, "rings", files[0])
    os.truncate(path, 5000)
    after = _recover(d, conf, spool, "after2.jsonl")
    assert after == []
    assert _ring_files(spool) == [files[0] + ".bad"]


def test_live_process_ring_is_never_taken():
    """Proves a running process's ring file is left alone by another process's recovery,
    and that the running process then delivers its own actions itself."""
    d, conf, spool = _setup()
    own = os.path.join(d, "live.jsonl")
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("AGENTSIGHT_") or k == "LD_PRELOAD":
            del env[k]
    env.update({"LD_PRELOAD": PRELOAD, "AGENTSIGHT_CONFIG": conf,
                "AGENTSIGHT_OUTPUT": "file:" + own}, **_env(spool, True))
    p = subprocess.Popen([agent("crash_agent"), "wait", str(N)], env=env, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = []
        for _ in range(3):  # "sum ..." then "ready"
            line = p.stdout.readline()
            lines.append(line)
            if line.startswith("ready") or not line:
                break
        assert lines[-1].startswith("ready"), lines
        files = _ring_files(spool)
        assert files, "the live process has a ring file"
        assert _recover(d, conf, spool) == []
        assert _ring_files(spool) == files
        p.stdin.close()
        assert p.wait(timeout=60) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
    api, calls, _ = _split(read_jsonl(own))
    assert sorted(api) == list(range(N)) and sorted(calls) == list(range(N))
    assert _ring_files(spool) == []


def test_crash_safe_off_uses_memory():
    """Proves AGENTSIGHT_CRASH_SAFE=0 keeps rings in memory: no ring file is made, and
    the actions still arrive."""
    d, conf, spool = _setup()
    out = os.path.join(d, "a.jsonl")
    env = _env(spool, False)
    env["AGENTSIGHT_CRASH_SAFE"] = "0"
    r = run_preloaded([agent("crash_agent"), "clean", str(N)], config=conf, out=out, env=env)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(os.path.join(spool, "rings"))
    api, calls, _ = _split(read_jsonl(out))
    assert len(api) == N and len(calls) == N
