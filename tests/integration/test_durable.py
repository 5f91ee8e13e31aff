"""Delivery guarantees whatever fails: an action leaves its ring only into a durable place
(the file sink's file, an HTTP sink's write-ahead spool, a 2xx answer), every action has
one stable event id in every sink, a kill in the middle of a file write leaves no torn or
repeated line, and `agentsight run` returns only when what its whole process tree recorded
is delivered or spooled. Real agents are killed at random points of their work; the
collector is the repository's emulator (127.0.0.1) made slow, hanging or dead."""
import json
import os
import random
import signal
import socket
import struct
import subprocess
import time
import urllib.request

import test_delivery as delivery
from common import CLI, PRELOAD, agent, read_jsonl, run, tmpdir, write

KEY = delivery.KEY


def _conf(d):
    return write(os.path.join(d, "labs.conf"), "[actions]\nlabs\n")


def _env(extra):
    """The environment of a child: ours without AGENTSIGHT_* and LD_PRELOAD, plus extra."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("AGENTSIGHT_") and k != "LD_PRELOAD"}
    e.update(extra)
    return e


def _preloaded(conf, output, spool, extra=None):
    e = {"LD_PRELOAD": PRELOAD, "AGENTSIGHT_CONFIG": conf, "AGENTSIGHT_OUTPUT": output,
         "AGENTSIGHT_SPOOL_DIR": spool}
    e.update(extra or {})
    return _env(e)


def _count(path):
    """Calls of durable_agent's loop that returned (its shared counter)."""
    with open(path, "rb") as f:
        raw = f.read(8)
    return struct.unpack("<Q", raw)[0] if len(raw) == 8 else 0


def _lines(path):
    """(parsed lines, lines that are not whole JSON objects ending in a newline)."""
    if not os.path.exists(path):
        return [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    good, bad = [], []
    parts = text.split("\n")
    for i, line in enumerate(parts):
        if not line:
            continue
        try:
            if i == len(parts) - 1:
                raise ValueError("no newline")
            good.append(json.loads(line))
        except ValueError:
            bad.append(line[:80])
    return good, bad


def _ring_files(spool):
    rings = os.path.join(spool, "rings")
    return sorted(os.listdir(rings)) if os.path.isdir(rings) else []


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _control(emu, **kw):
    body = json.dumps(kw).encode()
    with urllib.request.urlopen(emu.endpoint + "/_control", data=body, timeout=10):
        pass


def _responses(actions, name="labs"):
    return [int(a["response"]) for a in actions if a["action_name"] == name]


def _one_id_each(actions, key):
    """Maps each action (by key(a)) to the set of event ids it arrived with."""
    ids = {}
    for a in actions:
        ev = a.get("event_id") or (a.get("metadata") or {}).get("agentsight_event_id")
        ids.setdefault(key(a), set()).add(ev)
    return ids


def test_kill_during_file_writes_then_recovery_is_exact():
    """Proves that killing (SIGKILL) an agent at random points of a hot loop whose actions
    go to the file sink, six times in a row (each start recovers what the last one left,
    and may itself be killed while doing so), then `agentsight send`, leaves a file where
    every line is a whole JSON line with an event id, no event id and no call appears
    twice, and every call that returned (the agent publishes that count in shared memory
    after each return) is there."""
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    d = tmpdir()
    conf, spool, out = _conf(d), os.path.join(d, "spool"), os.path.join(d, "out.jsonl")
    counts = {}
    for r in range(1, 7):
        cnt = write(os.path.join(d, f"count{r}"), "")
        base = r * 10_000_000
        p = subprocess.Popen([agent("durable_agent"), "loop", str(base), "5000000", cnt],
                             env=_preloaded(conf, "file:" + out, spool),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rnd.uniform(0.5, 1.6))
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        p.stderr.close()
        counts[base] = _count(cnt)
    r = run([CLI, "send", "--timeout", "30000"], env={"AGENTSIGHT_SPOOL_DIR": spool},
            timeout=120)
    assert r.returncode == 0, r.stderr
    good, bad = _lines(out)
    assert not any(a.get("metadata") and "agentsight_dropped" in a["metadata"] for a in good)
    resp = _responses(good)
    ids = [a.get("event_id") for a in good]
    want = {base + k for base, c in counts.items() for k in range(c)}
    missing = want - set(resp)
    dup_calls = len(resp) - len(set(resp))
    dup_ids = len(ids) - len(set(ids))
    print(f"    seed {seed}: {len(want)} calls returned, {len(good)} lines, {len(bad)} torn, "
          f"{dup_calls} repeated calls, {dup_ids} repeated ids, {len(missing)} missing")
    assert not bad, bad[:3]
    assert None not in ids
    assert dup_calls == 0 and dup_ids == 0
    assert not missing
    assert not [f for f in _ring_files(spool) if f.endswith(".ring")]


def _slow_collector(seconds):
    """A new directory with the labs config, and an emulator (storing into store.jsonl there)
    that answers each request `seconds` late. Returns (conf, spool, store, emu, env), env
    the sink environment for that API and spool; the caller stops emu."""
    d = tmpdir()
    conf, spool = _conf(d), os.path.join(d, "spool")
    store = os.path.join(d, "store.jsonl")
    emu = delivery.Emulator(store)
    try:
        _control(emu, fail_mode="slow", slow_seconds=seconds)
    except BaseException:
        emu.stop()
        raise
    return conf, spool, store, emu, delivery.env_for(emu.endpoint, spool)


def test_slow_collector_then_kill_loses_nothing():
    """Proves that with an API that answers each request 0.3 s late, an agent killed
    (SIGKILL) right after tracking 3,000 actions and making 3,000 wrapped calls loses none
    of them: what the exporter took from its ring was written ahead into the spool, the
    rest is still in the ring file, and `agentsight send` (once the API is fast again)
    delivers every action, each under one event id whatever the retries."""
    n = 3000
    conf, spool, store, emu, env = _slow_collector(0.3)
    try:
        env.update({"LD_PRELOAD": PRELOAD, "AGENTSIGHT_CONFIG": conf})
        r = run([agent("crash_agent"), "kill", str(n)], env=env, timeout=60)
        assert r.returncode == -signal.SIGKILL, r.stderr
        _control(emu, fail_mode="none")
        delivery.send_until_done(delivery.env_for(emu.endpoint, spool))
        logs = delivery.received(store)
        api = {a["metadata"]["i"] for a in logs if a["action_name"] == "crash_api"}
        calls = set(_responses(logs))
        print(f"    {len(api)}/{n} tracked and {len(calls)}/{n} calls arrived, "
              f"{len(logs) - len(api) - len(calls)} duplicates (same event id)")
        assert api == set(range(n))
        assert calls == {1000 + k for k in range(n)}
        by = _one_id_each(logs, lambda a: (a["action_name"], a.get("response"),
                                           (a.get("metadata") or {}).get("i")))
        assert all(len(v) == 1 for v in by.values())
    finally:
        emu.stop()


def test_hanging_collector_and_exec_lose_nothing():
    """Proves that with an API that never answers (30 s per request), an agent that makes
    500 wrapped calls and then execs itself to make 500 more, under `agentsight run`,
    ends within its flush bounds with its own output and status, and every one of the
    1,000 calls is delivered by `agentsight send` once the API answers: the requests that
    were out when exec replaced the image had their actions written ahead."""
    conf, spool, store, emu, env = _slow_collector(30)
    try:
        env["AGENTSIGHT_FLUSH_TIMEOUT_MS"] = "1000"
        r = run([CLI, "run", "-q", "-c", conf, "--", agent("durable_agent"), "exec", "1000",
                 "500"], env=env, timeout=60)
        bare = run([agent("durable_agent"), "exec", "1000", "500"])
        assert r.returncode == 0 and r.stdout == bare.stdout, (r.stdout, r.stderr)
        _control(emu, fail_mode="none")
        delivery.send_until_done(delivery.env_for(emu.endpoint, spool))
        calls = _responses(delivery.received(store))
        print(f"    {len(set(calls))}/1000 calls arrived, {len(calls) - len(set(calls))} "
              "duplicates")
        assert set(calls) == set(range(1000, 2000))
    finally:
        emu.stop()


def test_collector_dies_then_agent_killed_loses_nothing():
    """Proves that when the API dies in the middle of a run and the agent is then killed
    (SIGKILL), a new API on the same port receives, through `agentsight send`, every call
    that returned which the first one did not get (the agent publishes its count of
    returned calls), none of them under two event ids."""
    d = tmpdir()
    conf, spool = _conf(d), os.path.join(d, "spool")
    store1, store2 = os.path.join(d, "store1.jsonl"), os.path.join(d, "store2.jsonl")
    cnt = write(os.path.join(d, "count"), "")
    emu = delivery.Emulator(store1)
    port = emu.port
    env = delivery.env_for(emu.endpoint, spool)
    env.update({"LD_PRELOAD": PRELOAD, "AGENTSIGHT_CONFIG": conf})
    p = subprocess.Popen([agent("durable_agent"), "loop", "0", "5000000", cnt, "10"],
                         env=_env(env),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.2)
        emu.stop()
        time.sleep(0.6)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    returned = _count(cnt)
    emu2 = delivery.Emulator(store2, port=port)
    try:
        delivery.send_until_done(delivery.env_for(emu2.endpoint, spool))
    finally:
        emu2.stop()
    logs = delivery.received(store1) + delivery.received(store2)
    calls = _responses(logs)
    missing = set(range(returned)) - set(calls)
    print(f"    {returned} calls returned, {len(missing)} missing, "
          f"{len(calls) - len(set(calls))} duplicates")
    assert returned > 0 and not missing
    by = _one_id_each(logs, lambda a: a["response"])
    assert all(len(v) == 1 for v in by.values())


def test_two_dead_http_sinks_at_exit_then_send_exactly_once():
    """Proves that an agent whose two HTTP sinks (AgentSight API and OTLP) have nothing
    listening exits with its own status without abandoning its exporter, and that
    `agentsight send` against a collector then started on that port delivers each of its
    2,000 actions exactly once to each sink, under the same event id in both."""
    n = 1000
    d = tmpdir()
    conf, spool = _conf(d), os.path.join(d, "spool")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"LD_PRELOAD": PRELOAD, "AGENTSIGHT_CONFIG": conf, "AGENTSIGHT_API_KEY": KEY,
           "AGENTSIGHT_SPOOL_DIR": spool, "AGENTSIGHT_OUTPUT": f"agentsight:{url},otlp:{url}"}
    r = run([agent("crash_agent"), "clean", str(n)], env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "did not stop" not in r.stderr, r.stderr
    store = os.path.join(d, "store.jsonl")
    emu = delivery.Emulator(store, port=port)
    try:
        delivery.send_until_done({"AGENTSIGHT_API_KEY": KEY, "AGENTSIGHT_SPOOL_DIR": spool,
                                  "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
        with urllib.request.urlopen(emu.endpoint + "/_received", timeout=10) as f:
            got = json.load(f)
    finally:
        emu.stop()
    logs = got["action_logs"]
    span_ids = []
    for s in got["spans"]:
        for a in s["span"]["attributes"]:
            if a["key"] == "agentsight.event_id":
                span_ids.append(a["value"]["stringValue"])
    log_ids = [a["metadata"]["agentsight_event_id"] for a in logs]
    print(f"    {len(logs)} action logs ({len(set(log_ids))} ids), {len(span_ids)} spans "
          f"({len(set(span_ids))} ids) for {2 * n} actions")
    assert len(logs) == 2 * n and len(set(log_ids)) == 2 * n
    assert len(span_ids) == 2 * n and set(span_ids) == set(log_ids)
    assert {a["metadata"]["i"] for a in logs if a["action_name"] == "crash_api"} == set(range(n))


def test_run_returns_with_forked_exit_children_delivered():
    """Proves that `agentsight run` of an agent whose 200 forked children each make 20
    wrapped calls and leave with _exit (no at-exit flush) returns only when all 4,000
    actions are in the file sink, each once, counts them in its summary, and leaves no
    ring file behind; likewise for an agent killed by SIGKILL after 300 actions."""
    d = tmpdir()
    conf, spool = _conf(d), os.path.join(d, "spool")
    out = os.path.join(d, "out.jsonl")
    env = {"AGENTSIGHT_SPOOL_DIR": spool}
    r = run([CLI, "run", "-c", conf, "-o", "file:" + out, "--", agent("durable_agent"), "fork",
             "200", "20"], env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    good, bad = _lines(out)
    resp = _responses(good)
    want = {(i + 1) * 1000000 + k for i in range(200) for k in range(20)}
    print(f"    {len(set(resp) & want)}/{len(want)} actions present when run returned, "
          f"{len(resp) - len(set(resp))} repeated")
    assert not bad and set(resp) == want and len(resp) == len(want)
    assert "agentsight: 4000 actions tracked" in r.stderr, r.stderr
    assert not [f for f in _ring_files(spool) if ".ring" in f], _ring_files(spool)

    out2 = os.path.join(d, "killed.jsonl")
    r = run([CLI, "run", "-c", conf, "-o", "file:" + out2, "--", agent("crash_agent"), "kill",
             "150"], env=dict(env, AGENTSIGHT_TEST_POLL_MS="600000"), timeout=60)
    assert r.returncode == -signal.SIGKILL, r.stderr
    got = read_jsonl(out2)
    assert len(got) == 300 and len({a["event_id"] for a in got}) == 300
    assert "agentsight: 300 actions tracked" in r.stderr, r.stderr
    assert not [f for f in _ring_files(spool) if ".ring" in f], _ring_files(spool)


def test_leftovers_of_another_run_are_not_reported_by_the_next():
    """Proves that what a process of one run left in its ring file (killed before its
    exporter delivered anything) is not shipped and counted by a later, unrelated
    `agentsight run` writing to the same sink: that run reports only its own 10 actions,
    and `agentsight send` then delivers the 100 left behind, once."""
    d = tmpdir()
    conf, spool = _conf(d), os.path.join(d, "spool")
    out = os.path.join(d, "out.jsonl")
    r = run([agent("crash_agent"), "kill", "50"],
            env=_preloaded(conf, "file:" + out, spool,
                           {"AGENTSIGHT_TEST_POLL_MS": "600000",
                            "AGENTSIGHT_RUN_ID": "an-earlier-run"}))
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert _ring_files(spool)
    r = run([CLI, "run", "-c", conf, "-o", "file:" + out, "--", agent("crash_agent"), "clean",
             "5"], env={"AGENTSIGHT_SPOOL_DIR": spool}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "agentsight: 10 actions tracked" in r.stderr, r.stderr
    assert len(read_jsonl(out)) == 10
    r = run([CLI, "send"], env={"AGENTSIGHT_SPOOL_DIR": spool}, timeout=60)
    assert r.returncode == 0, r.stderr
    got = read_jsonl(out)
    assert len(got) == 110 and len({a["event_id"] for a in got}) == 110
