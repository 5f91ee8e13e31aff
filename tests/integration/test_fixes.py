"""Integration tests of the thunk and installer fixes: coroutines that park inside tracked
calls and return in another order, threads with the smallest stacks, libraries unloaded
and loaded again (at the same address, or another library there), function pointers
stored in data tables, exit() inside a tracked call, and a library constructor calling
dlopen while another thread installs hooks. Each runs fix_agent (tests/agents/fix_agent.c)
bare and under the interposer, compares stdout and exit code, and reads the actions."""
import os

from common import agent, read_jsonl, run, run_preloaded, tmpdir, write

AGENT = agent("fix_agent")
CONF = "[actions]\nfix_*\n"


def traced(mode, *args, env=None, timeout=60):
    """Runs fix_agent MODE bare and under the interposer; asserts both print the same and
    exit the same. Returns (actions, the preloaded run)."""
    bare = run([AGENT, mode, *args], timeout=timeout)
    d = tmpdir()
    out = os.path.join(d, "out.jsonl")
    p = run_preloaded([AGENT, mode, *args], config=write(os.path.join(d, "fix.conf"), CONF),
                      out=out, env=env, timeout=timeout)
    assert (p.returncode, p.stdout) == (bare.returncode, bare.stdout), \
        (mode, bare.returncode, bare.stdout, p.returncode, p.stdout, p.stderr)
    return read_jsonl(out), p


def named(actions, name):
    return [a for a in actions if a["action_name"] == name]


def test_coroutines_return_out_of_order():
    """Proves two ucontext coroutines parked inside fix_call, the first returning while the
    second is still parked, both return right and are both recorded with their response
    (the first's return used to drop the second's frame, and the second's return aborted),
    and a later call is tracked as usual."""
    actions, _ = traced("coro")
    calls = named(actions, "fix_call")
    assert len(calls) == 2, actions
    assert all(a["response"] == "7" and a["error_msg"] is None for a in calls), calls
    assert [a["response"] for a in named(actions, "fix_add")] == ["4"], actions


def test_small_stack_thread():
    """Proves a thread created with a PTHREAD_STACK_MIN stack starts under the interposer
    (pthread_create returned EINVAL while our static TLS held the shadow stack), with the
    kill switch too, and its tracked call is recorded."""
    bare = run([AGENT, "stack"])
    assert bare.returncode == 0 and "rc=0" in bare.stdout, bare.stdout
    off = run_preloaded([AGENT, "stack"], env={"AGENTSIGHT_DISABLE": "1"})
    assert (off.returncode, off.stdout) == (0, bare.stdout), off.stdout + off.stderr
    actions, _ = traced("stack")
    adds = named(actions, "fix_add")
    assert len(adds) == 1 and adds[0]["response"] == "41", actions


def test_reload_keeps_tracking():
    """Proves a plugin loaded, unloaded and loaded again (same file, usually the same
    address) has its calls tracked every round: rounds 1 and 2 were lost when the installer
    took the reloaded plugin for the one it had already patched."""
    actions, _ = traced("reload")
    responses = [a["response"] for a in named(actions, "fix_add")]
    assert responses == ["2", "100", "101", "102"], actions


def test_swap_reports_the_right_library():
    """Proves a library loaded where an unloaded one was gets its own target: each call of
    fix_swap_tool names the library it came from (the second was reported with the first
    library's name while the unloaded one's target was still matched by address)."""
    actions, _ = traced("swap")
    swaps = named(actions, "fix_swap_tool")
    got = [(a["response"], a["tools_used"]["library"]) for a in swaps]
    assert got == [("2", "libfix_swap_a.so"), ("3", "libfix_swap_b.so")], actions


def test_function_pointer_in_data_table():
    """Proves a call through a function pointer stored in an initialised data table (an
    R_X86_64_64 relocation, not a GOT slot) is tracked: it was missed before."""
    actions, _ = traced("table")
    adds = named(actions, "fix_add")
    assert len(adds) == 1 and adds[0]["response"] == "7", actions


def test_exit_inside_tracked_call():
    """Proves a tracked function that calls exit() is still reported, as not returned,
    with the program's exit code unchanged (the call was silently lost before)."""
    actions, _ = traced("exit")
    assert [a["response"] for a in named(actions, "fix_add")] == ["3"], actions
    ex = named(actions, "fix_exit")
    assert len(ex) == 1, actions
    assert ex[0]["response"] is None
    assert "did not return" in ex[0]["error_msg"], ex


def test_constructor_dlopen_during_install():
    """Proves a constructor calling dlopen (the loader's lock held) while another thread's
    dlopen makes the installer resolve and patch 12 libraries of 90 tools finishes: the
    installer asked the loader while holding its own lock and deadlocked; a deadlock runs
    into the timeout. The sink file is valid JSONL."""
    actions, p = traced("dead", "300", timeout=60)
    assert "dead: done" in p.stdout
