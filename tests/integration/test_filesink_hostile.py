"""The file sink in hostile places: a symlink another user planted in a sticky shared
directory is not followed (the rule of fs.protected_symlinks, applied whatever the sysctl
says), a FIFO or a device as the sink path is refused without waiting, and a new output
file is created 0600; the program always runs as it does without us."""
import os
import stat

from common import agent, cannot_chown, run, run_preloaded, tmpdir, write

NOBODY = 65534
DEFAULT = "agentsight-actions.jsonl"  # the default sink, relative to the working directory


def _run(cwd, d, output=None):
    """hook_agent (its tool_* functions tracked by the interposer) in cwd, its state
    under d; returns the instrumented run and a bare one for comparison."""
    conf = os.path.join(d, "agent.conf")
    if not os.path.exists(conf):
        write(conf, "[actions]\ntool_*\n")
    env = {"HOME": os.path.join(d, "home"), "XDG_STATE_HOME": os.path.join(d, "state"),
           "AGENTSIGHT_SPOOL_DIR": os.path.join(d, "spool")}
    if output:
        env["AGENTSIGHT_OUTPUT"] = output
    argv = [agent("hook_agent"), "basic"]
    bare = run(argv, env=env, cwd=cwd)
    return run_preloaded(argv, config=conf, env=env, cwd=cwd), bare


def _shared_dir(d):
    shared = os.path.join(d, "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o1777)
    return shared


def test_foreign_symlink_in_sticky_dir_not_followed():
    """Proves a symlink owned by nobody in a sticky 1777 directory, named like the default
    sink and pointing at a victim file, is not followed: the victim is unchanged, a message
    names the refusal, the program's output and exit status are those of a bare run. The
    same link owned by us is followed (so the check can fail)."""
    if cannot_chown("a symlink owned by nobody in a sticky directory"):
        return
    d = tmpdir()
    shared = _shared_dir(d)
    victim = os.path.join(d, "victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    link = os.path.join(shared, DEFAULT)
    os.symlink(victim, link)
    os.lchown(link, NOBODY, NOBODY)
    r, bare = _run(shared, d)
    assert (r.returncode, r.stdout) == (bare.returncode, bare.stdout), r.stderr
    with open(victim) as f:
        assert f.read() == "precious\n"
    assert "symlink" in r.stderr and "not followed" in r.stderr, r.stderr
    os.lchown(link, os.geteuid(), os.getegid())  # ours now: followed
    r, bare = _run(shared, d)
    assert r.returncode == bare.returncode, r.stderr
    with open(victim) as f:
        assert f.read().count('"action_name"') > 0


def test_fifo_and_device_refused_without_waiting():
    """Proves a FIFO (no reader) and a character device as the sink path are refused with
    a message naming what they are, and the program ends with the output and status of a
    bare run instead of waiting (the run's timeout would fail the test)."""
    d = tmpdir()
    fifo = os.path.join(d, "out.fifo")
    os.mkfifo(fifo)
    for path, what in ((fifo, "FIFO"), ("/dev/null", "device")):
        r, bare = _run(d, d, "file:" + path)
        assert (r.returncode, r.stdout) == (bare.returncode, bare.stdout), r.stderr
        assert what in r.stderr and "not a regular file" in r.stderr, r.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_new_output_file_is_0600():
    """Proves a new output file (its lines hold call arguments) is created mode 0600 even
    under umask 022, and an existing file keeps its mode."""
    d = tmpdir()
    old = os.umask(0o022)
    try:
        out = os.path.join(d, "new.jsonl")
        r, bare = _run(d, d, "file:" + out)
        assert r.returncode == bare.returncode, r.stderr
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
        with open(out) as f:
            assert f.read().count('"action_name"') > 0
        kept = os.path.join(d, "kept.jsonl")
        open(kept, "w").close()
        os.chmod(kept, 0o640)
        r, _ = _run(d, d, "file:" + kept)
        assert stat.S_IMODE(os.stat(kept).st_mode) == 0o640
        with open(kept) as f:
            assert f.read().count('"action_name"') > 0
    finally:
        os.umask(old)
