"""Integration tests of the tracer-style command line: `agentsight run -e PATTERN` (a name,
a glob, a C prototype; with and without a config), the ltrace/strace-shaped live lines of
`-o stderr`, `--no-follow`, `--version` and exit status 2 on every command, and the
Chrome trace of `report --format chrome` checked against a strict schema. Every run of a
program is compared with a bare run of the same program."""
import json
import os
import re

from common import CLI, agent, read_jsonl, run, tmpdir, write

COMMANDS = ["run", "report", "symbols", "check", "send"]
AGENT = agent("tracer_agent")


def traced(args, prog, cwd):
    """Runs prog under `agentsight run -q -o file:out.jsonl ARGS --`; returns the process
    and the actions read back with the json module."""
    out = os.path.join(cwd, "out.jsonl")
    if os.path.exists(out):
        os.unlink(out)
    p = run([CLI, "run", "-q", "-o", "file:" + out] + args + ["--"] + prog, cwd=cwd)
    return p, read_jsonl(out)


def names(actions):
    counts = {}
    for a in actions:
        counts[a["action_name"]] = counts.get(a["action_name"], 0) + 1
    return counts


def test_entries_name_glob_prototype():
    """Proves -e takes a bare name, a glob and a C prototype without any config file: the
    agent (threads + a child process) prints and exits as in a bare run, and every call
    becomes an action (main 3 + 3 threads x 3 multiply, the child 3 + 1; one tool_is_even
    per worker), the prototype's parameters named."""
    d = tmpdir()
    prog = [AGENT, "3", "child"]
    bare = run(prog, cwd=d)
    assert bare.returncode == 0, bare.stderr
    p, acts = traced(["-e", "multiply", "-e", "tool_is_*"], prog, d)
    assert (p.returncode, p.stdout) == (bare.returncode, bare.stdout), p.stderr
    assert names(acts) == {"multiply": 18, "tool_is_even": 4}, names(acts)
    assert len({a["metadata"]["pid"] for a in acts}) == 2  # the parent and its child

    p, acts = traced(["-e", "int multiply(int a, int b)", "-e", "bool tool_is_*(int x)"],
                     prog, d)
    assert (p.returncode, p.stdout) == (bare.returncode, bare.stdout), p.stderr
    assert names(acts) == {"multiply": 18, "tool_is_even": 4}
    assert sorted(a["tools_used"]["parameters"]["x"] for a in acts
                  if a["action_name"] == "tool_is_even") == [1, 1, 2, 3]
    acts = [a for a in acts if a["action_name"] == "multiply"]
    for a in acts:
        params = a["tools_used"]["parameters"]
        assert set(params) == {"a", "b"}
        assert int(a["response"]) == params["a"] * params["b"]


def test_entries_combined_with_config():
    """Proves -e entries are added to those of -c CONFIG: both functions are tracked."""
    d = tmpdir()
    conf = write(os.path.join(d, "a.conf"), "[actions]\nbool tool_is_even(int x)\n")
    prog = [AGENT, "2"]
    bare = run(prog, cwd=d)
    p, acts = traced(["-c", conf, "-e", "multiply"], prog, d)
    assert (p.returncode, p.stdout) == (bare.returncode, bare.stdout), p.stderr
    assert names(acts) == {"multiply": 9, "tool_is_even": 2}


def test_entry_refused_is_a_usage_error():
    """Proves a -e pattern the config parser refuses is reported as -e:N:COL and run exits
    2 without starting PROGRAM."""
    d = tmpdir()
    marker = os.path.join(d, "ran")
    p = run([CLI, "run", "-e", "multiply", "-e", "int broken(", "--", "touch", marker], cwd=d)
    assert p.returncode == 2
    assert re.search(r"-e:2:\d+: ", p.stderr), p.stderr
    assert not os.path.exists(marker)
    p = run([CLI, "run", "-e"], cwd=d)
    assert p.returncode == 2 and "needs a PATTERN" in p.stderr


def test_entries_sqlite3():
    """Proves -e on the sqlite3 shell (a name, a glob, a prototype): same output and exit
    status as a bare run, and the statements it ran are actions."""
    d = tmpdir()
    sql = "create table t(a); insert into t values(1),(2); select count(*) from t;"
    prog = ["sqlite3", ":memory:", sql]
    bare = run(prog, cwd=d)
    assert bare.returncode == 0 and bare.stdout == "2\n", bare.stderr
    p, acts = traced(["-e", "sqlite3_exec", "-e", "sqlite3_prepare*",
                      "-e", "int sqlite3_step(void *stmt)"], prog, d)
    assert (p.returncode, p.stdout) == (bare.returncode, bare.stdout), p.stderr
    got = names(acts)
    assert got.get("sqlite3_step", 0) >= 3, got
    assert any(n.startswith("sqlite3_prepare") for n in got), got
    assert all("stmt" in a["tools_used"]["parameters"] for a in acts
               if a["action_name"] == "sqlite3_step")


LINE = re.compile(r"^\[agentsight\] \d\d:\d\d:\d\d\.\d{3} \[pid (\d+)/(\d+)\] "
                  r"(\w+)\((.*)\) = (\S+) <(\d+\.\d{3}) ms>( ERROR: (.+))?$")


def test_stderr_lines():
    """Proves -o stderr prints one ltrace-shaped line per call: pid/tid (one pid, one tid
    per thread), name(arguments), result, duration, and an ERROR suffix exactly on the
    calls the error_if rule fails."""
    d = tmpdir()
    prog = [AGENT, "4"]
    bare = run(prog, cwd=d)
    p = run([CLI, "run", "-q", "-o", "stderr", "-e", "int multiply(int a, int b)",
             "-e", "bool tool_is_even(int x) error_if=false", "--"] + prog, cwd=d)
    assert (p.returncode, p.stdout) == (bare.returncode, bare.stdout), p.stderr
    lines = [l for l in p.stderr.splitlines() if l.startswith("[agentsight] ")]
    assert len(lines) == 3 + 4 * 3 + 4, p.stderr
    pids, tids = set(), set()
    for line in lines:
        m = LINE.match(line)
        assert m, line
        pid, tid, name, args, result, dur, _, err = m.groups()
        pids.add(pid)
        tids.add(tid)
        assert float(dur) >= 0
        if name == "multiply":
            a, b = re.fullmatch(r"a=(-?\d+), b=(-?\d+)", args).groups()
            assert int(result) == int(a) * int(b) and err is None, line
        else:
            x = int(re.fullmatch(r"x=(-?\d+)", args).group(1))
            assert result == ("true" if x % 2 == 0 else "false"), line
            assert (err is not None) == (x % 2 == 1), line
    assert len(pids) == 1 and len(tids) == 5  # main + 4 workers


def test_no_follow_direct_child():
    """Proves --no-follow tracks PROGRAM only: the child it executes produces no action,
    and the output and exit status equal a bare run's."""
    d = tmpdir()
    prog = [AGENT, "2", "child"]
    bare = run(prog, cwd=d)
    p, acts = traced(["--no-follow", "-e", "multiply"], prog, d)
    assert (p.returncode, p.stdout) == (bare.returncode, bare.stdout), p.stderr
    assert names(acts) == {"multiply": 9}  # the parent's 3 + 2 x 3, none of the child's
    assert len({a["metadata"]["pid"] for a in acts}) == 1
    p, acts = traced(["-e", "multiply"], prog, d)
    assert names(acts) == {"multiply": 15}  # followed: the child's 3 + 1 x 3 too


def test_no_follow_shell():
    """Proves --no-follow with `bash -c 'agent; agent'`: bash is traced, the agents it
    runs are not (no action), their output equals a bare run's, and the environment the
    children see is exactly the bare one."""
    d = tmpdir()
    script = f"{AGENT} 2; {AGENT} 1 child; echo \"[$LD_PRELOAD]\""
    bare = run(["bash", "-c", script], cwd=d)
    p, acts = traced(["--no-follow", "-e", "multiply"], ["bash", "-c", script], d)
    assert (p.returncode, p.stdout) == (bare.returncode, bare.stdout), p.stderr
    assert acts == []
    p, acts = traced(["-e", "multiply"], ["bash", "-c", script], d)
    assert names(acts) == {"multiply": 9 + 6 + 6}  # followed: every agent's calls

    env_bare = run(["bash", "-c", "env -0"], cwd=d, env={"LD_PRELOAD": "", "X_KEEP": "1"})
    env_nf = run([CLI, "run", "-q", "-o", "null", "--no-follow", "-e", "multiply", "--",
                  "bash", "-c", "env -0"], cwd=d, env={"LD_PRELOAD": "", "X_KEEP": "1"})
    strip = lambda t: sorted(v for v in t.split("\0")
                             if v and not v.startswith("_="))
    assert strip(env_nf.stdout) == strip(env_bare.stdout)
    assert "LD_PRELOAD=" in strip(env_nf.stdout)  # set-but-empty before: restored so


def test_version_and_usage_errors_everywhere():
    """Proves every subcommand answers --version and -V with the top-level version and
    exit 0, and exits 2 with a message on stderr for an unknown option."""
    top = run([CLI, "--version"]).stdout
    assert top.startswith("agentsight ")
    for c in COMMANDS:
        for flag in ("--version", "-V"):
            p = run([CLI, c, flag])
            assert (p.returncode, p.stdout) == (0, top), (c, flag, p.stderr)
        p = run([CLI, c, "--bogus"])
        assert p.returncode == 2, (c, p.returncode, p.stderr)
        assert "--bogus" in p.stderr and p.stdout == "", (c, p.stderr)
    for c in ("report", "check", "symbols"):  # an option after a FILE argument too
        p = run([CLI, c, "/dev/null", "--bogus"])
        assert p.returncode == 2 and "--bogus" in p.stderr, (c, p.returncode, p.stderr)
    assert run([CLI, "send", "--timeout", "soon", "x.jsonl"]).returncode == 2
    assert run([CLI, "report", "--format", "svg", "x.jsonl"]).returncode == 2


def check_chrome(trace, actions):
    """A strict schema check of a Chrome trace against the actions it was made from:
    exact key sets and types per event kind, dur >= 0, names and counts equal, every
    lane named once."""
    assert isinstance(trace, dict) and set(trace) == {"traceEvents", "displayTimeUnit",
                                                     "otherData"}
    assert trace["displayTimeUnit"] == "ms"
    events = trace["traceEvents"]
    assert isinstance(events, list)
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    xs, procs, threads = [], {}, {}
    for ev in events:
        assert isinstance(ev, dict) and isinstance(ev.get("ph"), str), ev
        if ev["ph"] == "X":
            assert set(ev) == {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"}, ev
            assert isinstance(ev["name"], str) and ev["cat"] == "action"
            assert num(ev["ts"]) and ev["ts"] > 0 and num(ev["dur"]) and ev["dur"] >= 0
            assert isinstance(ev["pid"], int) and isinstance(ev["tid"], int)
            args = ev["args"]
            assert isinstance(args, dict)
            assert set(args) <= {"function", "library", "arguments", "response", "error",
                                 "conversation_id", "tools_used"}, args
            for k in ("function", "library", "response", "error", "conversation_id"):
                assert k not in args or isinstance(args[k], str), (k, args)
            assert "arguments" not in args or isinstance(args["arguments"], dict)
            xs.append(ev)
        else:
            assert ev["ph"] == "M", ev
            assert set(ev) == {"name", "ph", "pid", "tid", "args"}, ev
            assert ev["name"] in ("process_name", "thread_name")
            assert set(ev["args"]) == {"name"} and isinstance(ev["args"]["name"], str)
            lanes = procs if ev["name"] == "process_name" else threads
            key = ev["pid"] if ev["name"] == "process_name" else (ev["pid"], ev["tid"])
            assert key not in lanes, ("named twice", key)
            lanes[key] = ev["args"]["name"]
    assert len(xs) == len(actions)
    assert sorted(e["name"] for e in xs) == sorted(a["action_name"] for a in actions)
    assert set(procs) == {e["pid"] for e in xs}
    assert set(threads) == {(e["pid"], e["tid"]) for e in xs}
    assert trace["otherData"]["events"] == len(actions)
    return xs


def test_chrome_trace_of_a_real_run():
    """Proves `report --format chrome` turns the actions of a real run (threads and a child
    process) into a trace that passes the strict schema check: one X event per action with
    the action's pid/tid lane, start and duration, arguments, result and error in args."""
    d = tmpdir()
    prog = [AGENT, "3", "child"]
    bare = run(prog, cwd=d)
    p, acts = traced(["-e", "int multiply(int a, int b)",
                      "-e", "bool tool_is_even(int x) error_if=false"], prog, d)
    assert (p.returncode, p.stdout) == (bare.returncode, bare.stdout), p.stderr
    assert len(acts) == 22
    out = os.path.join(d, "out.jsonl")
    c = run([CLI, "report", "--format", "chrome", out], cwd=d)
    assert c.returncode == 0 and c.stderr == "", c.stderr
    xs = check_chrome(json.loads(c.stdout), acts)
    assert len({e["pid"] for e in xs}) == 2 and len({(e["pid"], e["tid"]) for e in xs}) == 6
    by_key = {}
    for a in acts:
        m = a["metadata"]
        by_key.setdefault((a["action_name"], m["pid"], m["tid"],
                           json.dumps(a["tools_used"]["parameters"], sort_keys=True)), []).append(a)
    for e in xs:
        key = (e["name"], e["pid"], e["tid"], json.dumps(e["args"]["arguments"], sort_keys=True))
        a = by_key[key].pop()
        assert e["dur"] == round(a["metadata"]["duration_ns"] / 1000, 3)
        assert e["args"]["response"] == a["response"]
        assert e["args"].get("error") == a["error_msg"]
    assert sum(1 for e in xs if "error" in e["args"]) == 3  # x=1 and x=3, the child's x=1
    # stdin, --format=chrome, several files: one trace with both runs' events
    c2 = run([CLI, "report", "--format=chrome", out, "-"], cwd=d,
             stdin=open(out).read())
    assert c2.returncode == 0
    check_chrome(json.loads(c2.stdout), acts + acts)
    # --json stays a synonym of --format json
    j1 = run([CLI, "report", "--json", out], cwd=d)
    j2 = run([CLI, "report", "--format", "json", out], cwd=d)
    assert j1.returncode == 0 and j1.stdout == j2.stdout and json.loads(j1.stdout)
