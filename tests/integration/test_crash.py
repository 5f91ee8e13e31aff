"""Crash-safe capture: actions recorded before a process dies by SIGKILL, SIGSEGV or
_exit() are shipped by the next instrumented process writing to the same sinks (ring
files in the spool directory), or by `agentsight send`, each to the sinks it was meant
for, exactly once; damaged ring files never ship garbage; a live process's files are never
taken. The dying agent runs with AGENTSIGHT_TEST_POLL_MS (a test-only exporter interval)
so nothing is delivered before it dies."""
import json
import os
import signal
import struct
import subprocess
import urllib.request

import test_delivery as delivery
from common import CLI, PRELOAD, agent, read_jsonl, run, run_preloaded, tmpdir, write

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


def _recover(conf, spool, out):
    """Starts a fresh instrumented process writing to `out` (it tracks nothing itself, but
    starts the library, as its first tracked call would); returns the actions it appended
    there (what it recovered)."""
    had = len(read_jsonl(out))
    r = run_preloaded([agent("crash_agent"), "start", "0"], config=conf, out=out,
                      env=_env(spool, False))
    assert r.returncode == 0, r.stderr
    return read_jsonl(out)[had:]


def _killed_ring(conf, spool, out):
    """Runs crash_agent writing to `out` until SIGKILL and returns the path of the single
    ring file it left in the spool."""
    r = run_preloaded([agent("crash_agent"), "kill", str(N)], config=conf, out=out,
                      env=_env(spool, True))
    assert r.returncode == -signal.SIGKILL, r.stderr
    files = _ring_files(spool)
    assert len(files) == 1, files
    return os.path.join(spool, "rings", files[0])


def _split(actions):
    """API indexes and labs responses seen, with duplicates kept."""
    api = [a["metadata"]["i"] for a in actions if a["action_name"] == "crash_api"]
    calls = [int(a["response"]) - 1000 for a in actions if a["action_name"] == "labs"]
    other = [a for a in actions if a["action_name"] not in ("crash_api", "labs")]
    return api, calls, other


def test_death_then_next_start_delivers_exactly_once():
    """Proves that for SIGKILL, SIGSEGV and _exit() the N API actions and N wrapped calls
    recorded before death reach its sink exactly once (what the dying process delivered
    plus what the next start with the same sink recovered), with the names and values
    they were recorded with."""
    for mode, want_rc in (("kill", -signal.SIGKILL), ("segv", -signal.SIGSEGV), ("exit", 3)):
        d, conf, spool = _setup()
        before = os.path.join(d, "before.jsonl")
        r = run_preloaded([agent("crash_agent"), mode, str(N)], config=conf, out=before,
                          env=_env(spool, True))
        assert r.returncode == want_rc, (mode, r.returncode, r.stderr)
        assert _ring_files(spool), mode  # something was left to recover
        after = _recover(conf, spool, before)
        api, calls, other = _split(read_jsonl(before))
        assert sorted(api) == list(range(N)), (mode, api)
        assert sorted(calls) == list(range(N)), (mode, calls)
        assert other == []
        labs = [a for a in after if a["action_name"] == "labs"]
        assert labs and labs[0]["tools_used"]["function"] == "labs"
        assert labs[0]["metadata"]["agentsight_recovered"] is True
        assert _ring_files(spool) == [], (mode, _ring_files(spool))
        # A second start finds nothing more: recovered files are gone.
        assert _recover(conf, spool, before) == []


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
    assert _recover(conf, spool, out) == []


def test_torn_record_is_skipped_and_bad_file_kept_aside():
    """Proves a ring file whose first record header was overwritten yields every other
    record and nothing invented, and a truncated ring file ships nothing, is kept aside as
    .bad, and breaks neither the recovering process nor its output."""
    d, conf, spool = _setup()
    before = os.path.join(d, "before.jsonl")
    path = _killed_ring(conf, spool, before)
    with open(path, "r+b") as f:  # the first record is API action i=0
        f.seek(RING_DATA_OFF)
        f.write(b"\xff" * 8)
    after = _recover(conf, spool, before)
    api, calls, other = _split(after)
    assert sorted(api) == list(range(1, N)), api
    assert sorted(calls) == list(range(N)), calls
    assert other == []

    before2 = os.path.join(d, "before2.jsonl")
    path = _killed_ring(conf, spool, before2)
    os.truncate(path, 5000)
    after = _recover(conf, spool, before2)
    assert after == []
    assert _ring_files(spool) == [os.path.basename(path) + ".bad"]


def _records(path, want):
    """The records of kind `want` between tail and head of a ring file, as (file offset of
    the payload, payload length, first 8 bytes after the call record's 40: its rax), by
    the layout of ring.h and record.h."""
    with open(path, "rb") as f:
        data = f.read()
    head, = struct.unpack_from("<Q", data, 0)
    tail, = struct.unpack_from("<Q", data, 64)
    size, = struct.unpack_from("<Q", data, 208)
    out, pos = [], tail
    while pos < head:
        off = RING_DATA_OFF + (pos & (size - 1))
        n, kind, _tag = struct.unpack_from("<IHH", data, off)
        if kind == want:
            out.append((off + 8, n, struct.unpack_from("<Q", data, off + 8 + 40)[0]))
        pos += 8 + ((n + 7) & ~7)
    return out


def _flip(path, at, bit):
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ (1 << bit)]))


def test_damaged_records_are_counted_and_never_shipped():
    """Proves the records' checksums end to end: in a killed process's ring file, one bit
    of the return value of the 8th labs call flipped (1007 would read 999, a value that
    looks real) and one bit in the middle of the 21st API action's record; `agentsight
    send` counts both as damaged records and ships neither, and every other call and API
    action is delivered exactly once with the values it was recorded with."""
    d, conf, spool = _setup()
    out = os.path.join(d, "a.jsonl")
    path = _killed_ring(conf, spool, out)
    calls = _records(path, 2)  # AS_MSG_CALL
    assert [rax for _, _, rax in calls] == [1000 + k for k in range(N)], calls
    _flip(path, calls[7][0] + 40, 3)  # as_callrec.rax: 1007 = 0x3ef -> 0x3e7 = 999
    assert _records(path, 2)[7][2] == 999
    api = _records(path, 1)  # AS_MSG_ACTION: packed actions, i = 0 .. N-1 in order
    assert len(api) == N
    _flip(path, api[20][0] + api[20][1] // 2, 5)
    r = run([CLI, "send", "--spool", spool, "--timeout", "20000"], timeout=60)
    assert r.returncode == 0, r.stderr
    assert "2 damaged records skipped" in r.stderr, r.stderr
    got_api, got_calls, other = _split(read_jsonl(out))
    assert sorted(got_api) == [k for k in range(N) if k != 20], got_api
    assert sorted(got_calls) == [k for k in range(N) if k != 7], got_calls
    assert other == []
    assert _ring_files(spool) == []


def test_live_process_ring_is_never_taken():
    """Proves a running process's ring file is left alone by another process's recovery
    (one writing to the very same sink) and by `agentsight send`, and that the running
    process then delivers its own actions itself, once."""
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
        assert _recover(conf, spool, own) == []
        r = run([CLI, "send", "--spool", spool, "--timeout", "20000"], timeout=60)
        assert r.returncode == 0, r.stderr
        assert read_jsonl(own) == []
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


def test_other_sinks_ring_waits_for_send():
    """Proves a crashed process's ring (sink A) is not absorbed by a later process writing
    to sink B, and that `agentsight send` then ships it to A: all N API actions and N
    wrapped calls exactly once, B untouched, no ring file left."""
    d, conf, spool = _setup()
    a_out, b_out = os.path.join(d, "a.jsonl"), os.path.join(d, "b.jsonl")
    r = run_preloaded([agent("crash_agent"), "kill", str(N)], config=conf, out=a_out,
                      env=_env(spool, True))
    assert r.returncode == -signal.SIGKILL
    files = _ring_files(spool)
    assert files
    assert _recover(conf, spool, b_out) == []
    assert _ring_files(spool) == files  # left for a process writing to A, or send
    r = run([CLI, "send", "--spool", spool, "--timeout", "20000"], timeout=60)
    assert r.returncode == 0, r.stderr
    api, calls, other = _split(read_jsonl(a_out))
    assert sorted(api) == list(range(N)), api
    assert sorted(calls) == list(range(N)), calls
    assert other == []
    assert read_jsonl(b_out) == []
    assert _ring_files(spool) == []
    # Nothing is shipped twice: a second send finds nothing.
    r = run([CLI, "send", "--spool", spool, "--timeout", "20000"], timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(read_jsonl(a_out)) == 2 * N


def test_send_ships_dead_ring_to_recorded_http_sinks():
    """Proves `agentsight send` ships a dead process's actions to the HTTP sinks its ring
    file names (the AgentSight API at the endpoint the process used, and an OTLP
    collector), although send itself runs with no endpoint or output set; each action
    arrives once per sink."""
    d = tmpdir()
    spool = os.path.join(d, "spool")
    store = os.path.join(d, "store.jsonl")
    emu = delivery.Emulator(store)
    try:
        env = {"AGENTSIGHT_API_KEY": delivery.KEY, "AGENTSIGHT_API_ENDPOINT": emu.endpoint,
               "AGENTSIGHT_OUTPUT": f"agentsight,otlp:{emu.endpoint}",
               "AGENTSIGHT_SPOOL_DIR": spool, "AGENTSIGHT_TEST_POLL_MS": "600000",
               "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
        r = run([agent("crash_agent"), "kill", str(N)], env=env, timeout=60)
        assert r.returncode == -signal.SIGKILL, r.stderr
        assert _ring_files(spool)
        r = run([CLI, "send", "--spool", spool, "--timeout", "30000"],
                env={"AGENTSIGHT_API_KEY": delivery.KEY,
                     "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, timeout=90)
        assert r.returncode == 0, r.stderr
        with urllib.request.urlopen(emu.endpoint + "/_received", timeout=10) as f:
            got = json.load(f)
        logs = [a for a in got["action_logs"] if a["action_name"] == "crash_api"]
        assert sorted(a["metadata"]["i"] for a in logs) == list(range(N))
        spans = [s["span"] for s in got["spans"]]
        assert len(spans) == N, [s["name"] for s in spans]
        assert all(s["name"] == "execute_tool crash_api" for s in spans)
        assert _ring_files(spool) == []
        delivery.assert_key_absent([d], [r.stdout, r.stderr])
    finally:
        emu.stop()


def test_hostile_calibration_ships_no_garbage_times():
    """Proves a ring file whose clock calibration was altered so that converting a call's
    raw times overflows int64 (clock_unix0 near INT64_MAX, the largest ns-per-raw allowed)
    ships none of those call records (each would carry an invented time), while its API
    actions, which carry their own times, are all recovered intact."""
    import struct
    d, conf, spool = _setup()
    before = os.path.join(d, "before.jsonl")
    path = _killed_ring(conf, spool, before)
    with open(path, "r+b") as f:  # ring.h: as_ring_info at 256; clock_unix0 at +32
        f.seek(256 + 32)
        f.write(struct.pack("<qd", 2**63 - 10, 999999.0))
    after = _recover(conf, spool, before)
    api, calls, other = _split(after)
    assert calls == [], calls
    assert sorted(api) == list(range(N)), api
    assert other == []
    for a in after:
        assert a["started_at"] <= a["ended_at"]


def test_run_recovers_orphans_killed_after_the_program():
    """Proves `agentsight run` delivers what descendants that outlive its program leave:
    the shell it runs is killed (SIGKILL) while a child it started in the background goes
    on, tracks N API actions and N labs calls and is killed too; run waits for that orphan,
    recovers its ring, counts its actions in the summary and returns with no ring file
    left (it returned at once, leaving the orphan's ring for a later `agentsight send`)."""
    d, conf, spool = _setup()
    out = os.path.join(d, "a.jsonl")
    script = "( sleep 0.3; exec %s kill %d ) & kill -9 $$" % (agent("crash_agent"), N)
    r = run([CLI, "run", "-c", conf, "-o", "file:" + out, "--", "/bin/sh", "-c", script],
            env=_env(spool, True))
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert _ring_files(spool) == [], _ring_files(spool)
    api, calls, other = _split(read_jsonl(out))
    assert sorted(api) == list(range(N)) and sorted(calls) == list(range(N)), (api, calls)
    assert other == [], other
    assert "%d actions tracked" % (2 * N) in r.stderr, r.stderr
