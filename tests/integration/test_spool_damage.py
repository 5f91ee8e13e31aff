"""A damaged spool never blocks or loses what it can still deliver: empty, cut-short and
garbage batch files are set aside (renamed .bad) with a message, `agentsight send` ships
everything else and its exit status says what is left; actions refused for their API key
(HTTP 401) stay in the spool and arrive exactly once when the key is fixed."""
import json
import os

from common import CLI, agent, run, tmpdir
from test_delivery import KEY, Emulator, env_for, received

WRONG_KEY = "ags_ffffffffffffffffffffffffffffffff_ffffff"


def _ids(store):
    """(pid, thread, seq) of every action log the emulator stored, duplicates kept."""
    return [(a["metadata"]["pid"], a["metadata"]["t"], a["metadata"]["s"])
            for a in received(store)]


def _spooled(spool):
    """Every action line pending in the spool: {(pid, t, s): file name}."""
    out = {}
    for dirpath, _, files in os.walk(spool):
        for fn in files:
            if not fn.endswith(".jsonl") or fn == "dead-letter.jsonl":
                continue
            with open(os.path.join(dirpath, fn), encoding="utf-8") as f:
                for line in f.read().splitlines()[1:]:
                    m = json.loads(line)["metadata"]
                    out[(m["pid"], m["t"], m["s"])] = fn
    return out


def test_damaged_spool_set_aside_rest_delivered():
    """Proves an empty batch at the head of a sink's spool, a garbage batch and a batch cut
    in its last line neither stop `agentsight send` nor lose the readable actions: every
    action but the one cut in half arrives exactly once, the three files are renamed .bad
    with a message, and the exit status is 3 (delivered, damage set aside); a second send
    finds nothing left and exits 0."""
    d = tmpdir()
    store, spool = os.path.join(d, "store.jsonl"), os.path.join(d, "spool")
    emu = Emulator(store)
    port = emu.port
    emu.stop()  # the API is down while the agents run: their actions are spooled
    env = env_for(emu.endpoint, spool)
    for _ in range(3):
        r = run([agent("api_stress"), "threads", "1", "40"], env=env, timeout=60)
        assert r.returncode == 0, r.stderr
    before = _spooled(spool)
    assert len(before) == 120, len(before)
    sinkdir = [os.path.join(spool, x) for x in os.listdir(spool) if len(x) == 16][0]
    batches = sorted(f for f in os.listdir(sinkdir) if f.endswith(".jsonl"))
    # Cut the newest batch inside its last line.
    cut = os.path.join(sinkdir, batches[-1])
    with open(cut, "rb") as f:
        data = f.read()
    with open(cut, "wb") as f:
        f.write(data[:len(data) - 30])
    lost = [k for k, fn in before.items() if fn == batches[-1]]
    lost = max(lost, key=lambda k: k[2])  # its last line
    # An empty batch at the head (a power loss with fsync off), garbage in the middle.
    open(os.path.join(sinkdir, "00000000000000000001-1-0.jsonl"), "w").close()
    with open(os.path.join(sinkdir, batches[0][:20] + "-2-0.jsonl"), "wb") as f:
        f.write(b"\x00\xff garbage \x7f\n{\"action_name\n")
    emu = Emulator(store, port)
    try:
        r = run([CLI, "send", "--timeout", "30000"], env=env, timeout=120)
        assert r.returncode == 3, r.stderr
        assert "damaged batch" in r.stderr and ".bad" in r.stderr, r.stderr
        got = _ids(store)
        assert len(got) == len(set(got)), "an action arrived twice"
        assert set(got) == set(before) - {lost}, r.stderr
        bad = [f for f in os.listdir(sinkdir) if f.endswith(".bad")]
        assert len(bad) == 3, os.listdir(sinkdir)
        r = run([CLI, "send", "--timeout", "30000"], env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        print(f"    {len(got)} of {len(before)} actions delivered, 3 damaged batches set aside")
    finally:
        emu.stop()


def test_refused_key_stays_replayable():
    """Proves actions an API refuses with HTTP 401 (a wrong key) are not dead letters: they
    stay in the spool, `agentsight send` with the same wrong key delivers nothing and exits
    1, and with the right key delivers each of them exactly once and exits 0."""
    d = tmpdir()
    store, spool = os.path.join(d, "store.jsonl"), os.path.join(d, "spool")
    emu = Emulator(store)
    try:
        wrong = dict(env_for(emu.endpoint, spool), AGENTSIGHT_API_KEY=WRONG_KEY)
        r = run([agent("api_stress"), "threads", "2", "20"], env=wrong, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "401" in r.stderr, r.stderr
        assert _ids(store) == []
        assert not os.path.exists(os.path.join(spool, "dead-letter.jsonl"))
        assert len(_spooled(spool)) == 40
        r = run([CLI, "send", "--timeout", "20000"], env=wrong, timeout=120)
        assert r.returncode == 1, r.stderr
        assert _ids(store) == [] and len(_spooled(spool)) == 40
        r = run([CLI, "send", "--timeout", "30000"], env=env_for(emu.endpoint, spool),
                timeout=120)
        assert r.returncode == 0, r.stderr
        got = _ids(store)
        assert len(got) == 40 and len(set(got)) == 40, got
        assert _spooled(spool) == {}
    finally:
        emu.stop()


def test_dead_letter_file_readable_by_send():
    """Proves the dead-letter file is an input `agentsight send -o` reads: an action the
    server refused (400) is uploaded again from it (0 unreadable lines), and reading it
    while the same refusal is appended to it ends."""
    d = tmpdir()
    store, spool = os.path.join(d, "store.jsonl"), os.path.join(d, "spool")
    dl = os.path.join(d, "dead.jsonl")
    with open(dl, "w") as f:
        for name in ("fine", "emulator_refuse"):
            f.write(json.dumps({"sink": "agentsight:http://127.0.0.1:9", "status": 400,
                                "answer": "no", "action": {"action_name": name,
                                                           "conversation_id": "conv_x"}}) + "\n")
    emu = Emulator(store)
    try:
        env = env_for(emu.endpoint, spool)
        r = run([CLI, "send", "-o", "agentsight", dl], env=env, timeout=60)
        assert "0 unreadable lines" in r.stderr, r.stderr
        assert r.returncode == 1, r.stderr  # the refused one is refused again
        assert [a["action_name"] for a in received(store)] == ["fine"]
    finally:
        emu.stop()
