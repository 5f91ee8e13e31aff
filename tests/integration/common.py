"""Shared helpers for the integration tests: where the build is, running programs with and
without the interposer, reading JSONL with the json module. Every process gets a timeout."""
import json
import os
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("AGENTSIGHT_BUILD", os.path.join(ROOT, "build"))
PRELOAD = os.path.join(BUILD, "libagentsight-preload.so")
CLI = os.path.join(BUILD, "agentsight")
AGENTS = os.path.join(BUILD, "agents")
TIMEOUT = 60


def agent(name):
    """Path of a built test agent."""
    return os.path.join(AGENTS, name)


def cannot_chown(what):
    """True (with a note printed) when this test run may not give files to another user:
    only root may; the part of a test that needs it is then left out, not failed."""
    if os.geteuid() == 0:
        return False
    print(f"    left out (needs root to chown): {what}")
    return True


def tmpdir():
    return tempfile.mkdtemp(prefix="agentsight-test-")


def run(argv, env=None, cwd=None, timeout=TIMEOUT, stdin=None):
    """Runs argv; returns CompletedProcess with text stdout/stderr."""
    full = dict(os.environ)
    for k in list(full):
        if k.startswith("AGENTSIGHT_") or k == "LD_PRELOAD":
            del full[k]
    if env:
        full.update(env)
    return subprocess.run(argv, env=full, cwd=cwd, timeout=timeout, input=stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          errors="replace")


def run_preloaded(argv, config=None, out=None, env=None, **kw):
    """Runs argv under the interposer, actions to the JSONL file `out`."""
    e = {"LD_PRELOAD": PRELOAD}
    if config:
        e["AGENTSIGHT_CONFIG"] = config
    if out:
        e["AGENTSIGHT_OUTPUT"] = "file:" + out
    if env:
        e.update(env)
    return run(argv, env=e, **kw)


def read_jsonl(path):
    """Every line of a JSONL file parsed with json.loads (a bad line fails the test)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path
