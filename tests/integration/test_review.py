"""Integration tests of the review regressions: the dl* wrappers keep the caller's identity
($ORIGIN in a dlopen'ed name, RTLD_DEFAULT from an RTLD_LOCAL plugin, the caller's
namespace), a constructor calling dlopen while another thread loads libraries does not
deadlock, posix_spawn does not go through the exec path, execl* do not touch the heap,
the file sink survives a program that closes all fds, and relative sink paths mean the
working directory at start. Each runs review_agent (tests/agents/review_agent.c) bare and
under the interposer and compares."""
import json
import os

from common import AGENTS, CLI, agent, read_jsonl, run, run_preloaded, tmpdir, write

AGENT = agent("review_agent")
TOOLS_CONF = "[actions]\nreview_*\n"


def conf(d, text=TOOLS_CONF):
    return write(os.path.join(d, "review.conf"), text)


def actions(path, name):
    return [a for a in read_jsonl(path) if a.get("action_name") == name]


def test_dl_origin_and_local_scope_unchanged():
    """Proves dlopen("$ORIGIN/...") finds the plugin and the RTLD_LOCAL plugin's
    dlsym(RTLD_DEFAULT) finds its own dependency's symbol, exactly as without us: with the
    kill switch, with nothing configured, and with the looked-up symbol tracked (then the
    call through the dlsym result is an action)."""
    bare = run([AGENT, "dl"])
    assert bare.returncode == 0, bare.stdout + bare.stderr
    assert "= ok" in bare.stdout and "= found" in bare.stdout, bare.stdout
    d = tmpdir()
    off = run_preloaded([AGENT, "dl"], env={"AGENTSIGHT_DISABLE": "1"})
    assert (off.returncode, off.stdout) == (0, bare.stdout), off.stdout + off.stderr
    none = run_preloaded([AGENT, "dl"])
    assert (none.returncode, none.stdout) == (0, bare.stdout), none.stdout + none.stderr
    out = os.path.join(d, "out.jsonl")
    on = run_preloaded([AGENT, "dl"], config=conf(d), out=out)
    assert (on.returncode, on.stdout) == (0, bare.stdout), on.stdout + on.stderr
    helper = actions(out, "review_dep_helper")
    assert len(helper) == 1, read_jsonl(out)
    assert helper[0]["response"] == "42"
    assert len(actions(out, "review_tool_add")) == 1


def test_dlopen_in_callers_namespace():
    """Proves a library loaded into a new namespace with dlmopen that dlopens a bare name
    gets it in its own namespace (through its RUNPATH), and its RTLD_DEFAULT lookup still
    works, as without us. (Preloaded objects live in the base namespace only, so these
    calls reach the namespace's own libc: this guards that nothing of ours leaks in.)"""
    bare = run([AGENT, "ns"])
    assert bare.returncode == 0, bare.stdout + bare.stderr
    assert "the caller's namespace" in bare.stdout, bare.stdout
    d = tmpdir()
    for env in ({"AGENTSIGHT_DISABLE": "1"}, {}):
        p = run_preloaded([AGENT, "ns"], env=env)
        assert (p.returncode, p.stdout) == (0, bare.stdout), (env, p.stdout + p.stderr)
    out = os.path.join(d, "out.jsonl")
    p = run_preloaded([AGENT, "ns"], config=conf(d), out=out)
    assert (p.returncode, p.stdout) == (0, bare.stdout), p.stdout + p.stderr


def test_constructor_dlopen_while_installing_no_deadlock():
    """Proves a library constructor calling dlopen (loader lock held) while another thread
    dlopens libraries with many tracked functions (installer busy asking the loader)
    finishes: 3000 rounds against 12 libraries of 256 tools deadlocked before; a deadlock
    runs into the timeout. The sink file is still valid JSONL."""
    d = tmpdir()
    out = os.path.join(d, "out.jsonl")
    p = run_preloaded([AGENT, "ctor", "12", "3000"], config=conf(d), out=out, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ctor: done (ok)" in p.stdout
    read_jsonl(out)


def stats_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_posix_spawn_does_not_flush():
    """Proves posix_spawn in an instrumented program does not take the exec path (flush
    and stats line before the image is replaced: the caller is not replaced): the stats
    file has one line for the program, written at its exit, and all 3 actions arrive."""
    d = tmpdir()
    out = os.path.join(d, "out.jsonl")
    stats = write(os.path.join(d, "stats"), "")
    p = run_preloaded([AGENT, "spawn"], config=conf(d), out=out,
                      env={"AGENTSIGHT_STATS_FILE": stats})
    assert p.returncode == 0, p.stdout + p.stderr
    lines = stats_lines(stats)
    pids = [l["pid"] for l in lines]
    assert len(pids) == len(set(pids)), lines  # no early line before each spawn
    assert len(actions(out, "review_tool_add")) == 3


def test_execl_vfork_does_not_grow_parent_heap():
    """Proves execl in a vfork child builds its argv without malloc: after 200 vfork+execl
    the parent's heap in use has not grown, with or without tracking."""
    d = tmpdir()
    for env, config in (({"AGENTSIGHT_DISABLE": "1"}, None), ({}, conf(d))):
        p = run_preloaded([AGENT, "vfork"], config=config, env=env,
                          out=os.path.join(d, "out.jsonl"))
        assert p.returncode == 0, p.stdout + p.stderr
        assert "heap grew by 0 bytes" in p.stdout, p.stdout


def test_execle_passes_environment():
    """Proves execle passes its argument list and its own environment through."""
    bare = run([AGENT, "execle"])
    assert bare.stdout == "REVIEW_X=from-execle\n", bare.stdout + bare.stderr
    d = tmpdir()
    p = run_preloaded([AGENT, "execle"], config=conf(d), out=os.path.join(d, "o.jsonl"))
    assert (p.returncode, p.stdout) == (0, bare.stdout), p.stdout + p.stderr


def test_file_sink_survives_closed_fds():
    """Proves a program that closes every fd and opens its own file (getting our old fd
    number) keeps its file to itself: the file holds only what the program wrote, and
    both actions are in the sink file."""
    d = tmpdir()
    out = os.path.join(d, "out.jsonl")
    data = os.path.join(d, "data.txt")
    p = run_preloaded([AGENT, "daemon", data], config=conf(d), out=out)
    assert p.returncode == 0, p.stdout + p.stderr
    with open(data) as f:
        assert f.read() == "PROGRAM DATA\n"
    assert [a["response"] for a in actions(out, "review_tool_add")] == ["2", "5"]


def test_relative_config_sink_is_start_cwd():
    """Proves a relative file: sink in the config means the working directory at start,
    even when the first tracked function appears only after the program chdir'ed."""
    d = tmpdir()
    other = os.path.join(d, "elsewhere")
    os.mkdir(other)
    c = conf(d, "[output]\nsink = file:rel.jsonl\n[actions]\nreview_tool_add\n")
    p = run_preloaded([AGENT, "cwd", other], config=c, cwd=d)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not os.path.exists(os.path.join(other, "rel.jsonl"))
    assert len(actions(os.path.join(d, "rel.jsonl"), "review_tool_add")) == 1


def test_run_relative_output_survives_chdir_exec():
    """Proves `agentsight run -o file:REL` hands the exec'ed program an absolute path: a
    program that chdirs and execs another instrumented image still writes to the file
    in the directory agentsight was started in."""
    d = tmpdir()
    other = os.path.join(d, "elsewhere")
    os.mkdir(other)
    c = conf(d, "[actions]\nreview_tool_add\n")
    p = run([CLI, "run", "-q", "-c", c, "-o", "file:run.jsonl", "--", AGENT, "cwdexec", other],
            cwd=d)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "review_tool_add=5" in p.stdout
    assert not os.path.exists(os.path.join(other, "run.jsonl"))
    assert len(actions(os.path.join(d, "run.jsonl"), "review_tool_add")) == 1
