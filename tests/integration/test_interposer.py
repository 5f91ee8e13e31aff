"""The interposer on the test agents of tests/agents (issue 3): every run compares the
agent's stdout and exit code with a bare run, and the actions in the JSONL with the call
counts the agent prints ("count NAME N"), plus the integer responses of each call."""
import collections
import os

from common import agent, read_jsonl, run, run_preloaded, tmpdir, write

CONFIG = """[actions]
agent_callback name=callback_from_lib
plugin_search lib=libagent_plugin.so name=search_plugin
origin_tool
tool_mul lib=libnothing.so name=never_used
tool_*
"""

VARIANTS = ["hook_agent", "hook_agent_now", "hook_agent_noplt"]


def instrumented(binary, mode, config_text=CONFIG, env=None, argv=None):
    """Runs the agent bare and under the interposer; checks stdout and exit code are the
    same. Returns (bare result, instrumented result, actions)."""
    d = tmpdir()
    conf = write(os.path.join(d, "agent.conf"), config_text)
    out = os.path.join(d, "actions.jsonl")
    cmd = argv or [agent(binary), mode]
    bare = run(cmd)
    got = run_preloaded(cmd, config=conf, out=out, env=env)
    assert got.stdout == bare.stdout, (bare.stdout, got.stdout, got.stderr)
    assert got.returncode == bare.returncode, (bare.returncode, got.returncode, got.stderr)
    return bare, got, read_jsonl(out)


def printed_counts(stdout):
    """The agent's own counts: {name: n} from its "count NAME N" lines."""
    counts = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "count":
            counts[parts[1]] = int(parts[2])
    return counts


def by_name(actions):
    return collections.Counter(a["action_name"] for a in actions)


def responses(actions, name):
    return sorted(a["response"] for a in actions if a["action_name"] == name)


def test_basic_counts_and_responses_all_builds():
    # Proves: lazy, -z now and -fno-plt builds each give exactly one action per call of
    # every tool (stack arguments, varargs, hidden struct return, recursion through a GOT
    # pointer, a program function called from a library, longjmp), with the right
    # integer responses, and the agent's output and exit code unchanged.
    for binary in VARIANTS:
        bare, got, actions = instrumented(binary, "basic")
        assert bare.returncode == 3
        assert dict(by_name(actions)) == printed_counts(bare.stdout), (binary, by_name(actions))
        assert responses(actions, "tool_add") == sorted(["2", "3", "4", "5", "6", "42"])
        assert responses(actions, "tool_mul") == ["42"] * 3
        assert responses(actions, "tool_many") == ["81"]
        assert responses(actions, "tool_va") == ["11"]
        assert responses(actions, "tool_recurse") == ["0", "1", "2", "3", "4"]
        assert responses(actions, "tool_fail_errno") == ["-1"]
        assert responses(actions, "callback_from_lib") == ["50"]
        assert responses(actions, "tool_callback") == ["51"]
        assert responses(actions, "tool_next_is_null") == ["1"]
        jump = [a for a in actions if a["action_name"] == "tool_jump"]
        assert len(jump) == 1 and "did not return" in (jump[0]["error_msg"] or ""), jump
        assert "never_used" not in by_name(actions)
        for a in actions:
            if a["action_name"] == "callback_from_lib":
                assert a["tools_used"]["function"] == "agent_callback"
            else:
                assert a["tools_used"]["library"] == "libagent_tools.so", a


def test_errno_preserved_and_output_order():
    # Proves: errno set by a tool reaches the caller through the thunk (the agent prints
    # "errno ENOENT" only when it did) -- the comparison with the bare run checks it.
    bare, got, _ = instrumented("hook_agent", "basic")
    assert "tool_fail_errno -1 errno ENOENT" in got.stdout


def test_threads():
    # Proves: 4 threads calling concurrently produce exactly one action per call, each
    # with the tid of the thread that made it.
    bare, got, actions = instrumented("hook_agent", "threads")
    assert dict(by_name(actions)) == printed_counts(bare.stdout)
    tids = collections.Counter(a["metadata"]["tid"] for a in actions)
    assert len(tids) == 4 and set(tids.values()) == {200}, tids


def test_fork_counts_each_call_once_in_its_pid():
    # Proves: after fork the child's calls are recorded in the child's pid and the
    # parent's in the parent's, each exactly once (no pending action duplicated).
    bare, got, actions = instrumented("hook_agent", "fork")
    per = collections.Counter((a["action_name"], a["metadata"]["pid"]) for a in actions)
    add_pids = {p for (n, p) in per if n == "tool_add"}
    mul_pids = {p for (n, p) in per if n == "tool_mul"}
    assert len(add_pids) == 1 and len(mul_pids) == 1 and add_pids != mul_pids, per
    assert per[("tool_add", add_pids.pop())] == 3
    assert per[("tool_mul", mul_pids.pop())] == 3


def test_exec_new_image_tracked_and_nothing_lost():
    # Proves: the action queued before execv is flushed (not lost with the old image) and
    # the new image is instrumented again.
    bare, got, actions = instrumented("hook_agent", "exec")
    assert dict(by_name(actions)) == printed_counts(bare.stdout)
    assert len({a["metadata"]["pid"] for a in actions}) == 1


def test_plugin_through_dlsym_calls_tool_library():
    # Proves: a dlopen'ed plugin reached through dlsym is tracked (lib= and name= applied)
    # and its calls into the tool library through its own GOT are tracked too.
    for binary in VARIANTS:
        bare, got, actions = instrumented(binary, "plugin")
        assert dict(by_name(actions)) == printed_counts(bare.stdout), by_name(actions)
        assert responses(actions, "search_plugin") == ["100", "101", "102"]
        hooks = {a["metadata"]["hook"] for a in actions if a["action_name"] == "search_plugin"}
        assert all("dlsym" in h for h in hooks), hooks


def test_plugin_found_through_callers_origin_runpath():
    # Proves: a library whose RUNPATH is $ORIGIN/plugins still finds its plugin by bare
    # name through our dlopen (the output would say -1 otherwise), and the plugin's
    # function reached by dlsym is tracked.
    bare, got, actions = instrumented("hook_agent", "origin")
    assert "origin 21 24" in bare.stdout
    assert dict(by_name(actions)) == printed_counts(bare.stdout)
    assert responses(actions, "origin_tool") == ["21", "24"]


def test_through_a_shell():
    # Proves: the constructor in a process that only execs (sh -c) neither blocks nor
    # breaks it, and the agent it starts is tracked once per call.
    bare, got, actions = instrumented(None, None, argv=["sh", "-c", agent("hook_agent") + " threads"])
    assert dict(by_name(actions)) == printed_counts(bare.stdout)


def test_bad_config_reports_file_line_col_and_changes_nothing():
    # Proves: a syntax error and an unknown symbol are reported as FILE:LINE:COL on
    # stderr, the other entries still work, and output and exit code are unchanged.
    text = "[actions]\ntool_mul bogus=1\nno_such_function_here\ntool_add\n"
    bare, got, actions = instrumented("hook_agent", "basic", config_text=text)
    assert "agent.conf:2:" in got.stderr, got.stderr
    assert "agent.conf:3:1:" in got.stderr and "no_such_function_here" in got.stderr
    assert set(by_name(actions)) == {"tool_add"} and by_name(actions)["tool_add"] == 6


def test_unreadable_config():
    # Proves: a config that cannot be read gives one message and the agent runs untouched.
    d = tmpdir()
    out = os.path.join(d, "a.jsonl")
    bare = run([agent("hook_agent"), "basic"])
    got = run_preloaded([agent("hook_agent"), "basic"], config=os.path.join(d, "missing.conf"),
                        out=out)
    assert got.stdout == bare.stdout and got.returncode == bare.returncode
    assert "missing.conf" in got.stderr and "cannot read" in got.stderr, got.stderr
    assert read_jsonl(out) == []


def test_disable_switch():
    # Proves: AGENTSIGHT_DISABLE=1 turns everything off: nothing tracked, nothing printed.
    bare, got, actions = instrumented("hook_agent", "basic", env={"AGENTSIGHT_DISABLE": "1"})
    assert actions == [] and got.stderr == ""


def test_no_config_tracks_nothing():
    # Proves: without AGENTSIGHT_CONFIG the interposer tracks nothing and changes nothing.
    d = tmpdir()
    out = os.path.join(d, "a.jsonl")
    bare = run([agent("hook_agent"), "plugin"])
    got = run_preloaded([agent("hook_agent"), "plugin"], out=out)
    assert got.stdout == bare.stdout and got.returncode == bare.returncode
    assert read_jsonl(out) == []


def test_example_agent_with_example_config():
    # Proves: the demo config tracks every tool call of the demo agent once, with its
    # integer responses, and the agent's answers are unchanged.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "config", "example.conf")) as f:
        text = f.read()
    bare, got, actions = instrumented("example_agent", None, config_text=text,
                                      argv=[agent("example_agent")])
    assert dict(by_name(actions)) == {"calculator_multiply": 2, "calculator_add": 1,
                                      "weather_lookup": 3, "database_search": 2}
    assert responses(actions, "database_search") == ["-1", "3"]
    assert responses(actions, "calculator_add") == ["67"]
    assert {a["conversation_id"] for a in actions} == {"demo-conversation"}
    # The prototypes of example.conf give named parameters, text responses, error rules
    # and the display name.
    mul = [a for a in actions if a["action_name"] == "calculator_multiply"][0]
    assert mul["tools_used"]["parameters"] == {"a": 12, "b": 5} and mul["response"] == "60"
    weather = [a for a in actions if a["action_name"] == "weather_lookup"]
    assert [w["tools_used"]["parameters"]["location"] for w in weather] == [
        "San Francisco", "Oslo", "Atlantis"]
    assert weather[0]["response"] == "Temperature: 18\u00b0C, Conditions: Sunny"
    assert weather[2]["response"] is None and weather[2]["error_msg"] == "returned NULL"
    assert weather[0]["error_msg"] is None
    db = [a for a in actions if a["action_name"] == "database_search"]
    assert [d["error_msg"] for d in db] == [None, "returned -1"]
    assert {d["metadata"]["display_name"] for d in db} == {"Database search"}
    assert all(w["duration_ms"] >= 10 for w in weather)


def test_static_and_setuid_programs_untouched():
    # Proves: a static binary (the loader never maps us) and a setuid binary (secure mode)
    # run exactly as without the interposer.
    import stat
    for argv in (["/sbin/ldconfig", "--version"], ["/usr/bin/passwd", "--help"]):
        if not os.path.exists(argv[0]):
            continue
        if argv[0].endswith("passwd") and not os.stat(argv[0]).st_mode & stat.S_ISUID:
            continue
        instrumented(None, None, argv=argv)
