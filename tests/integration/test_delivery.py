"""Delivery without loss: actions from real processes reach the AgentSight API emulator
(scripts/agentsight_emulator.py on 127.0.0.1) through the agentsight sink, the spool and
`agentsight send`; refused actions land in the dead letters; the key is written nowhere."""
import json
import os
import signal
import subprocess
import time
import urllib.request

from common import CLI, PRELOAD, ROOT, agent, run, tmpdir, write

KEY = "ags_0123456789abcdef0123456789abcdef_a1b2c3"
EMULATOR = os.path.join(ROOT, "scripts", "agentsight_emulator.py")


class Emulator:
    """The emulator as a child process; stop() ends it by its own pid."""

    def __init__(self, store, port=0, legacy=True):
        # legacy: a 0.0.x server, so what arrives is action logs (test_ingest.py covers the
        # ingest API).
        self.p = subprocess.Popen(
            ["python3", EMULATOR, "--port", str(port), "--key", KEY, "--store", store,
             "--max-seconds", "300"] + (["--legacy"] if legacy else []),
            stdout=subprocess.PIPE, text=True)
        self.port = int(self.p.stdout.readline())
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=10)


def env_for(endpoint, spool):
    return {"AGENTSIGHT_API_KEY": KEY, "AGENTSIGHT_API_ENDPOINT": endpoint,
            "AGENTSIGHT_OUTPUT": "agentsight", "AGENTSIGHT_SPOOL_DIR": spool}


def send_until_done(env, tries=5):
    """Runs `agentsight send` until it reports nothing pending (bounded)."""
    outs = []
    for _ in range(tries):
        r = run([CLI, "send", "--timeout", "60000"], env=env, timeout=120)
        outs.append(r.stdout + r.stderr)
        if r.returncode == 0:
            return outs
    raise AssertionError("spool not emptied: " + outs[-1])


def received(store):
    """Action logs in the emulator's store file, parsed with json."""
    logs = []
    with open(store, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec["kind"] == "action_log":
                logs.append(rec["data"])
    return logs


def check_all_arrived(store, threads, per_thread):
    logs = received(store)
    seen = {}
    for a in logs:
        assert isinstance(a["conversation"], int) and a["conversation_id"]
        m = a["metadata"]
        seen.setdefault((m["t"], m["s"]), set()).add(m["agentsight_event_id"])
    want = {(t, s) for t in range(threads) for s in range(per_thread)}
    missing = want - set(seen)
    assert not missing, f"{len(missing)} actions never arrived"
    assert all(len(ids) == 1 for ids in seen.values()), "one action got two event ids"
    dups = len(logs) - len(want)
    print(f"    delivered {len(want)} actions, {dups} duplicates from retries/replays")
    return logs


def assert_key_absent(paths, texts):
    for t in texts:
        assert KEY not in t
    for top in paths:
        for dirpath, _, files in os.walk(top):
            for fn in files:
                with open(os.path.join(dirpath, fn), "rb") as f:
                    assert KEY.encode() not in f.read(), os.path.join(dirpath, fn)


def test_100k_actions_from_4_threads_all_arrive():
    """Proves 100,000 actions from 4 threads all reach the API (live, or through the
    spool and `agentsight send`), each exactly once by identity; duplicates reported."""
    d = tmpdir()
    store, spool = os.path.join(d, "store.jsonl"), os.path.join(d, "spool")
    emu = Emulator(store)
    try:
        env = env_for(emu.endpoint, spool)
        r = run([agent("api_stress"), "threads", "4", "25000"], env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        outs = send_until_done(env)
        check_all_arrived(store, 4, 25000)
        assert_key_absent([d], [r.stdout, r.stderr] + outs)
    finally:
        emu.stop()


def test_emulator_killed_midrun_then_replayed():
    """Proves actions survive the server dying mid-run: the agent exits normally with the
    same status, and after a restart `agentsight send` replays everything."""
    d = tmpdir()
    store, spool = os.path.join(d, "store.jsonl"), os.path.join(d, "spool")
    emu = Emulator(store)
    port = emu.port
    env = env_for(emu.endpoint, spool)
    full = dict(os.environ)
    for k in list(full):
        if k.startswith("AGENTSIGHT_"):
            del full[k]
    full.update(env)
    p = subprocess.Popen([agent("api_stress"), "threads", "4", "5000"], env=full,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    emu.stop()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    emu = Emulator(store, port)
    try:
        outs = send_until_done(env)
        check_all_arrived(store, 4, 5000)
        assert_key_absent([d], [out, err] + outs)
    finally:
        emu.stop()


def test_dead_letters_on_400_and_upload_of_recorded_file():
    """Proves `agentsight send -o agentsight FILE` uploads a recorded JSONL file, and an
    action the server refuses (400) is not retried but kept in the dead-letter file."""
    d = tmpdir()
    store, spool = os.path.join(d, "store.jsonl"), os.path.join(d, "spool")
    rec = write(os.path.join(d, "recorded.jsonl"),
                json.dumps({"action_name": "fine", "conversation_id": "conv_x",
                            "duration_ms": 3, "response": "ok"}) + "\n" +
                json.dumps({"action_name": "emulator_refuse",
                            "conversation_id": "conv_x"}) + "\n")
    emu = Emulator(store)
    try:
        env = env_for(emu.endpoint, spool)
        r = run([CLI, "send", "-o", "agentsight", rec], env=env, timeout=60)
        assert r.returncode == 1, r.stderr  # one action was not delivered
        names = [a["action_name"] for a in received(store)]
        assert names == ["fine"]
        with open(os.path.join(spool, "dead-letter.jsonl"), encoding="utf-8") as f:
            dead = [json.loads(line) for line in f]
        assert len(dead) == 1 and dead[0]["status"] == 400
        assert dead[0]["action"]["action_name"] == "emulator_refuse"
        assert "refused by the emulator" in dead[0]["answer"]
        assert_key_absent([d], [r.stdout, r.stderr])
    finally:
        emu.stop()


def test_bad_key_refused_with_clear_message():
    """Proves a malformed key is refused at start with a message that does not echo it,
    and the program still runs with its own exit status."""
    bad = "ags_notakey_SECRET123"
    d = tmpdir()
    r = run([agent("api_stress"), "threads", "1", "10"],
            env={"AGENTSIGHT_API_KEY": bad, "AGENTSIGHT_OUTPUT": "agentsight",
                 "AGENTSIGHT_API_ENDPOINT": "http://127.0.0.1:9",
                 "AGENTSIGHT_SPOOL_DIR": os.path.join(d, "spool")}, timeout=60)
    assert "ags_<32 hex>_<6 hex>" in r.stderr
    assert "SECRET123" not in r.stderr + r.stdout


def test_static_link_has_http_sinks():
    """Proves a program linked statically with libagentsight.a (crash_agent_static) can
    open "otlp:http://127.0.0.1:PORT": its actions reach the collector, with no
    "unknown sink" message (the HTTP sinks are pulled into a static link)."""
    d = tmpdir()
    store, spool = os.path.join(d, "store.jsonl"), os.path.join(d, "spool")
    emu = Emulator(store)
    try:
        r = run([agent("crash_agent_static"), "clean", "5"],
                env={"AGENTSIGHT_OUTPUT": "otlp:" + emu.endpoint,
                     "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
                     "AGENTSIGHT_SPOOL_DIR": spool}, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "sink" not in r.stderr, r.stderr
        spans = []
        with open(store, encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                if rec["kind"] == "span":
                    spans.append(rec["span"] if "span" in rec else rec["data"]["span"])
        tools = [s["name"] for s in spans if s["name"] != "process crash_agent_static"]
        assert sorted(tools) == ["execute_tool crash_api"] * 5
    finally:
        emu.stop()


def test_exit_within_flush_bound_when_server_dead_or_slow():
    """Proves exit is bounded by the flush timeout when the API is dead (127.0.0.1:1) or
    answers in 5 s: the process ends within AGENTSIGHT_FLUSH_TIMEOUT_MS + 1.5 s (a
    correctness bound, not a speed figure) with its own exit status, and every action is
    kept in the spool, none lost."""
    flush_ms, n = 1000, 200
    d = tmpdir()
    store = os.path.join(d, "store.jsonl")
    emu = Emulator(store)
    try:
        body = json.dumps({"fail_mode": "slow", "slow_seconds": 5}).encode()
        with urllib.request.urlopen(emu.endpoint + "/_control", data=body, timeout=10):
            pass
        for name, endpoint in (("dead", "http://127.0.0.1:1"), ("slow", emu.endpoint)):
            spool = os.path.join(d, "spool-" + name)
            env = env_for(endpoint, spool)
            env["AGENTSIGHT_FLUSH_TIMEOUT_MS"] = str(flush_ms)
            t0 = time.monotonic()
            r = run([agent("crash_agent"), "clean", str(n)], env=env, timeout=60)
            took = time.monotonic() - t0
            assert r.returncode == 0, (name, r.stderr)
            assert took < flush_ms / 1000 + 1.5, (name, took)
            ids = set()
            for dirpath, _, files in os.walk(spool):
                for fn in files:
                    if fn.endswith(".jsonl") and "dead-letter" not in fn:
                        with open(os.path.join(dirpath, fn), encoding="utf-8") as f:
                            for line in f:
                                rec = json.loads(line)
                                if rec.get("action_name") == "crash_api":
                                    ids.add(rec["metadata"]["i"])
            assert ids == set(range(n)), (name, len(ids))
    finally:
        emu.stop()


def test_http_sink_survives_closed_fds():
    """Proves a daemon-style program that closes every descriptor after our client has
    connected, then opens its own file (getting the old low numbers), keeps that file to
    itself: no request bytes are written into it, nothing is read from it, and both
    actions still reach the API (over a new connection)."""
    d = tmpdir()
    store = os.path.join(d, "store.jsonl")
    emu = Emulator(store)
    try:
        data = os.path.join(d, "data.txt")
        conf = write(os.path.join(d, "review.conf"), "[actions]\nreview_tool_add\n")
        env = env_for(emu.endpoint, os.path.join(d, "spool"))
        env.update({"AGENTSIGHT_CONFIG": conf, "REVIEW_SETTLE_MS": "500"})
        p = run([agent("review_agent"), "daemon", data], env=dict(env, LD_PRELOAD=PRELOAD))
        assert p.returncode == 0, p.stdout + p.stderr
        assert "files intact" in p.stdout, p.stdout + p.stderr
        for name in [data] + [f"{data}.{i}" for i in range(1, 16)]:
            with open(name, encoding="utf-8", errors="replace") as f:
                assert f.read() == "PROGRAM DATA\n", name
        names = []
        for _ in range(100):  # bounded: 10 s for the second action to arrive
            names = [a for a in received(store) if a.get("action_name") == "review_tool_add"]
            if len(names) == 2:
                break
            time.sleep(0.1)
        assert len(names) == 2, received(store)
    finally:
        emu.stop()

