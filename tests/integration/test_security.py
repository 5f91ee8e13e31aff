"""Places another user could control are never trusted: without HOME or XDG_STATE_HOME no
predictable shared spool (/tmp/agentsight-<uid>) is used; a spool or ring directory that
others may write to, and ring files owned by another user, are never read back and
shipped as ours; the emulator neither keeps nor serves API keys and refuses a body of
unknown size."""
import json
import os
import signal
import socket
import urllib.request

import test_delivery as delivery
from common import CLI, agent, cannot_chown, read_jsonl, run, run_preloaded, tmpdir, write

N = 5
NOBODY = 65534


def _run_without_home(argv, out, conf):
    """run_preloaded with HOME, XDG_STATE_HOME and XDG_RUNTIME_DIR removed (run() starts
    from os.environ, so they are cleared for the duration of the call)."""
    saved = {k: os.environ.pop(k) for k in ("HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR")
             if k in os.environ}
    try:
        return run_preloaded(argv, config=conf, out=out, env={"AGENTSIGHT_TEST_POLL_MS": "600000"})
    finally:
        os.environ.update(saved)


def _tree(top):
    """Every path under top (None when top does not exist)."""
    if not os.path.lexists(top):
        return None
    found = set()
    for dirpath, dirnames, filenames in os.walk(top):
        found.update(os.path.join(dirpath, n) for n in dirnames + filenames)
    return found


def test_no_predictable_spool_without_home():
    """Proves a process with neither HOME nor XDG_STATE_HOME (nor XDG_RUNTIME_DIR) warns
    once that it runs without a spool, still writes its actions and exits as it would
    without us, also when killed, and creates nothing under /tmp/agentsight-<uid>, the
    predictable place another user could have prepared."""
    d = tmpdir()
    conf = write(os.path.join(d, "c.conf"), "[actions]\nlabs\n")
    out = os.path.join(d, "a.jsonl")
    old = "/tmp/agentsight-%d" % os.geteuid()
    before = _tree(old)
    r = _run_without_home([agent("crash_agent"), "clean", str(N)], out, conf)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("running without a spool") == 1, r.stderr
    names = [a["action_name"] for a in read_jsonl(out)]
    assert names.count("crash_api") == N and names.count("labs") == N
    r = _run_without_home([agent("crash_agent"), "kill", str(N)], out, conf)
    assert r.returncode == -signal.SIGKILL
    assert "running without a spool" in r.stderr
    assert _tree(old) == before


def _dead_ring(spool, conf, out):
    """Leaves a dead process's ring file (N API actions, N calls) in spool/rings; returns
    its path."""
    r = run_preloaded([agent("crash_agent"), "kill", str(N)], config=conf, out=out,
                      env={"AGENTSIGHT_SPOOL_DIR": spool, "AGENTSIGHT_TEST_POLL_MS": "600000"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    rings = os.path.join(spool, "rings")
    files = [f for f in os.listdir(rings) if f.endswith(".ring")]
    assert len(files) == 1, files
    return os.path.join(rings, files[0])


def _recover(spool, conf, out):
    """A fresh process on the same sink that starts the library (as its first tracked call
    would); returns (its stderr, the actions it appended)."""
    had = len(read_jsonl(out))
    r = run_preloaded([agent("crash_agent"), "start", "0"], config=conf, out=out,
                      env={"AGENTSIGHT_SPOOL_DIR": spool})
    assert r.returncode == 0, r.stderr
    return r.stderr, read_jsonl(out)[had:]


def test_foreign_ring_file_is_never_shipped():
    """Proves a ring file owned by another user (as one planted by that user would be)
    is skipped with a warning and its actions are not shipped, and that the same file,
    once ours again, is recovered: the owner alone decided."""
    if cannot_chown("a ring file of another user"):
        return
    d = tmpdir()
    conf = write(os.path.join(d, "c.conf"), "[actions]\nlabs\n")
    spool, out = os.path.join(d, "spool"), os.path.join(d, "a.jsonl")
    ring = _dead_ring(spool, conf, out)
    os.chown(ring, NOBODY, NOBODY)
    err, got = _recover(spool, conf, out)
    assert got == [], got
    assert "not owned by uid %d skipped" % os.geteuid() in err, err
    assert os.path.exists(ring)
    os.chown(ring, os.geteuid(), os.getegid())
    err, got = _recover(spool, conf, out)
    assert sorted(a["metadata"]["i"] for a in got if a["action_name"] == "crash_api") == \
        list(range(N))


def test_ring_dir_writable_by_others_is_not_read():
    """Proves recovery refuses a rings directory others may write to (mode 0777) or that
    another user owns: nothing in it is shipped and the refusal is named."""
    for mode, owner in ((0o777, None), (0o700, NOBODY)):
        if owner is not None and cannot_chown("a rings directory of another user"):
            continue
        d = tmpdir()
        conf = write(os.path.join(d, "c.conf"), "[actions]\nlabs\n")
        spool, out = os.path.join(d, "spool"), os.path.join(d, "a.jsonl")
        ring = _dead_ring(spool, conf, out)
        rings = os.path.dirname(ring)
        os.chmod(rings, mode)
        if owner is not None:
            os.chown(rings, owner, owner)
        why = "mode 0777" if owner is None else "owned by uid %d" % owner
        err, got = _recover(spool, conf, out)
        assert [a for a in got if a["action_name"] == "crash_api"] == [], (mode, got)
        assert why in err, err
        had = len(read_jsonl(out))
        r = run([CLI, "send", "--spool", spool, "--timeout", "20000"], timeout=60)
        assert "its ring files are not recovered" in r.stderr and why in r.stderr, r.stderr
        assert len(read_jsonl(out)) == had
        assert os.path.exists(ring)


def test_emulator_keeps_no_key_and_refuses_bad_length():
    """Proves the emulator serves only a fingerprint of the Authorization header (never
    the key), counts the exact match, and answers 400 at once (no blocking read) to a
    negative, huge or non-numeric Content-Length."""
    d = tmpdir()
    emu = delivery.Emulator(os.path.join(d, "store.jsonl"))
    try:
        req = urllib.request.Request(emu.endpoint + "/api/conversations/", method="POST",
                                     data=json.dumps({"conversation_id": "c1"}).encode(),
                                     headers={"Authorization": "Api-Key " + delivery.KEY,
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as f:
            assert f.status in (200, 201)
        with urllib.request.urlopen(emu.endpoint + "/_received", timeout=10) as f:
            text = f.read().decode()
        got = json.loads(text)
        assert delivery.KEY not in text
        assert delivery.KEY[8:16] not in text
        assert "Api-Key " + delivery.KEY[:8] + "..." in got["auth_headers"]
        assert got["auth_matched"] >= 1
        host, port = emu.endpoint.rsplit("/", 1)[-1].split(":")
        for length in ("-1", "99999999999", "abc"):
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.settimeout(10)
                s.sendall(("POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: "
                           "application/json\r\nContent-Length: %s\r\n\r\n{}" % length).encode())
                answer = b""
                for _ in range(100):  # bounded: the server answers and closes
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 400"), (length, answer[:100])
            assert b"bad Content-Length" in answer
    finally:
        emu.stop()
