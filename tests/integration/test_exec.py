"""Integration tests of the exec family and dlopen/dlsym in real programs. The interposer
exports its own execve, execvp, ..., dlopen and dlsym over the C library's, so a program
that binds at start (BIND_NOW: bash, python3, node) has those GOT slots already pointing at
ours; a lazily bound one (env) binds them to ours too. Every call through such a slot must
still be one action: a failed exec one action with its error, a successful exec one action
marked as not returned, each dlopen/dlsym one action. A vfork child's exec is never
reported by its parent, let alone twice."""
import os
import shutil

from common import CLI, agent, read_jsonl, run, tmpdir, write


def run_cli(conf_text, argv, env=None):
    """Runs argv under `agentsight run -c` with conf_text (its [output] added) and returns
    (the completed process, the actions of the run's file sink)."""
    d = tmpdir()
    out = os.path.join(d, "out.jsonl")
    conf = write(os.path.join(d, "a.conf"),
                 "[output]\nsink = file:" + out + "\n[actions]\n" + conf_text)
    p = run([CLI, "run", "-q", "-c", conf, "--"] + argv, env=env)
    return p, read_jsonl(out)


def named(actions, name):
    return [a for a in actions if a.get("action_name") == name]


EXECVE = "int execve(const char *path, char **argv, char **envp) error_if=negative\n"
EXECVP = "int execvp(const char *file, char **argv) error_if=negative\n"
NOT_RETURNED = "did not return"


def test_bash_missing_command_one_execve_with_error():
    """Proves: bash (BIND_NOW: its execve slot holds the interposer's own execve at start)
    running a missing command makes exactly one execve action, with the path, -1 and the
    error; before, the call was not tracked at all (0 actions)."""
    bare = run(["bash", "-c", "/nonexistent-agentsight"])
    p, acts = run_cli(EXECVE, ["bash", "-c", "/nonexistent-agentsight"])
    assert (p.returncode, p.stdout) == (bare.returncode, bare.stdout), p.stderr
    ex = named(acts, "execve")
    assert len(ex) == 1, acts
    a = ex[0]
    assert a["tools_used"]["parameters"]["path"] == "/nonexistent-agentsight", a
    assert a["response"] == "-1", a
    assert "No such file" in a["error_msg"] and NOT_RETURNED not in a["error_msg"], a


def test_bash_runs_a_program_one_execve_not_returned():
    """Proves: bash running a program by its path (one successful execve, after a fork)
    makes exactly one execve action, marked as not returned, with its duration."""
    p, acts = run_cli(EXECVE, ["bash", "-c", "/bin/true; exit 3"])
    assert p.returncode == 3, p.stderr
    ex = named(acts, "execve")
    assert len(ex) == 1, acts
    assert ex[0]["tools_used"]["parameters"]["path"] == "/bin/true"
    assert NOT_RETURNED in ex[0]["error_msg"], ex[0]
    assert ex[0]["metadata"]["duration_ns"] >= 0


def test_env_successful_execvp_one_action():
    """Proves: env /bin/true (env calls execvp, which succeeds) makes exactly one execvp
    action, marked as not returned; before, none."""
    p, acts = run_cli(EXECVP, ["env", "/bin/true"])
    assert p.returncode == 0, p.stderr
    ex = named(acts, "execvp")
    assert len(ex) == 1, acts
    assert ex[0]["tools_used"]["parameters"]["file"] == "/bin/true"
    assert NOT_RETURNED in ex[0]["error_msg"] and ex[0]["response"] is None, ex[0]


def test_env_failed_execvp_one_action_with_error():
    """Proves: env running a missing program makes exactly one execvp action with -1 and
    the error, not one that says the call did not return (the record written before the
    exec is taken back when the exec fails)."""
    bare = run(["env", "/nonexistent-agentsight"])
    p, acts = run_cli(EXECVP, ["env", "/nonexistent-agentsight"])
    assert p.returncode == bare.returncode, p.stderr
    ex = named(acts, "execvp")
    assert len(ex) == 1, acts
    assert ex[0]["response"] == "-1" and "No such file" in ex[0]["error_msg"], ex[0]


def test_exec_inside_tracked_call_reported_once_either_way():
    """Proves: a tracked outer call in flight when its process execs is one action, not
    returned, when the exec succeeds, and one returned action when the exec fails (bash's
    execve inside bash -c, with the exec traced too: two actions, never three)."""
    for cmd, outcome in (("/bin/true", "ok"), ("/nonexistent-agentsight", "fail")):
        p, acts = run_cli(EXECVE + "int execv(const char *path, char **argv)\n",
                          ["bash", "-c", cmd])
        ex = named(acts, "execve")
        assert len(ex) == 1, (cmd, acts)
        ids = [a["event_id"] for a in acts]
        assert len(ids) == len(set(ids)), acts
        if outcome == "ok":
            assert NOT_RETURNED in ex[0]["error_msg"], ex[0]
        else:
            assert ex[0]["response"] == "-1", ex[0]


def test_python_ctypes_dlopen_dlsym_each_call_one_action():
    """Proves: python3 (BIND_NOW) loading libraries with ctypes makes one dlopen action per
    CDLL() call (a failing one with its error) and one dlsym action per function looked
    up; before, none."""
    code = ("import ctypes\n"
            "for _ in range(3): ctypes.CDLL('libm.so.6')\n"
            "m = ctypes.CDLL('libm.so.6')\n"
            "m.cos; m.sin\n"
            "try: ctypes.CDLL('/nonexistent-agentsight.so')\n"
            "except OSError: print('missing')\n")
    conf = ("void *dlopen(const char *file, int mode) error_if=null\n"
            "void *dlsym(void *handle, const char *name) error_if=null\n")
    p, acts = run_cli(conf, ["python3", "-c", code])
    assert p.returncode == 0 and "missing" in p.stdout, p.stdout + p.stderr
    opens = named(acts, "dlopen")
    files = [a["tools_used"]["parameters"]["file"] for a in opens]
    assert files.count("libm.so.6") == 4, files
    bad = [a for a in opens if a["tools_used"]["parameters"]["file"] ==
           "/nonexistent-agentsight.so"]
    assert len(bad) == 1 and bad[0]["response"] is None and bad[0].get("error_msg"), bad
    names = [a["tools_used"]["parameters"]["name"] for a in named(acts, "dlsym")]
    assert names.count("cos") == 1 and names.count("sin") == 1, names


def test_node_process_dlopen_one_action():
    """Proves: node (BIND_NOW) calling process.dlopen on a missing file makes exactly one
    dlopen action for that file; before, none (it was seen only with hook=entry)."""
    if not shutil.which("node"):
        print("    left out: no node")
        return
    js = 'try{process.dlopen({exports:{}},"/nonexistent-agentsight.node")}catch(e){}'
    p, acts = run_cli("void *dlopen(const char *file, int mode)\n", ["node", "-e", js])
    assert p.returncode == 0, p.stderr
    files = [a["tools_used"]["parameters"]["file"] for a in named(acts, "dlopen")]
    assert files.count("/nonexistent-agentsight.node") == 1, files


def test_dl_caller_identity_kept_when_dlopen_dlsym_tracked():
    """Proves: with dlopen and dlsym tracked (so their calls enter through a thunk, whose
    landing is their return address), dlopen("$ORIGIN/...") and an RTLD_LOCAL plugin's
    dlsym(RTLD_DEFAULT) still resolve for the real caller: same output as bare, and one
    action per call."""
    argv = [agent("review_agent"), "dl"]
    bare = run(argv)
    conf = ("review_*\nvoid *dlopen(const char *file, int mode)\n"
            "void *dlsym(void *handle, const char *name)\n")
    p, acts = run_cli(conf, argv)
    assert (p.returncode, p.stdout) == (0, bare.stdout), p.stdout + p.stderr
    assert len(named(acts, "dlopen")) == 1, acts
    assert len(named(acts, "dlsym")) == 2, acts
    assert len(named(acts, "review_dep_helper")) == 1, acts


def test_vfork_exec_children_not_reported_by_parent():
    """Proves: 200 vfork + execl children with execl, execv and _exit tracked leave no
    action of theirs in the parent (the frames a vfork child pushes on the stack it shares
    are not calls of the parent), no duplicate, and the program's output is unchanged."""
    argv = [agent("review_agent"), "vfork"]
    bare = run(argv)
    p, acts = run_cli("int execl(const char *path, const char *arg)\n"
                      "int execv(const char *path, char **argv)\nvoid _exit(int status)\n",
                      argv)
    assert (p.returncode, p.stdout) == (0, bare.stdout), p.stdout + p.stderr
    ids = [a["event_id"] for a in acts]
    assert len(ids) == len(set(ids)), acts
    assert len(acts) <= 200, len(acts)
    assert not [a for a in acts if NOT_RETURNED in (a.get("error_msg") or "")
                and a["action_name"] in ("execl", "execv")
                and a["metadata"]["pid"] != acts[0]["metadata"]["pid"]]


def test_check_says_how_exec_is_reached():
    """Proves: `agentsight check` of execve in bash says the calls are reached through
    the GOT, by the interposer's own execve standing in for the C library's."""
    d = tmpdir()
    conf = write(os.path.join(d, "a.conf"), "[actions]\n" + EXECVE)
    p = run([CLI, "check", conf, "bash"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "via got" in p.stdout and "interposer's own execve" in p.stdout, p.stdout


def test_hook_entry_exec_and_dlopen_once():
    """Proves: with hook=entry (the C library's entry patched as well), a successful and a
    failed execvp of env and node's dlopen are still one action each, never two (our own
    execvp/dlopen call the C library's past its patched entry)."""
    conf = "int execvp(const char *file, char **argv) hook=entry error_if=negative\n"
    p, acts = run_cli(conf, ["env", "/bin/true"])
    ex = named(acts, "execvp")
    assert len(ex) == 1 and NOT_RETURNED in ex[0]["error_msg"], acts
    p, acts = run_cli(conf, ["env", "/nonexistent-agentsight"])
    ex = named(acts, "execvp")
    assert len(ex) == 1 and ex[0]["response"] == "-1", acts
    if shutil.which("node"):
        js = 'try{process.dlopen({exports:{}},"/nonexistent-agentsight.node")}catch(e){}'
        p, acts = run_cli("void *dlopen(const char *file, int mode) hook=entry\n",
                          ["node", "-e", js])
        files = [a["tools_used"]["parameters"]["file"] for a in named(acts, "dlopen")]
        assert files.count("/nonexistent-agentsight.node") == 1, files


def test_python_os_exit_one_action():
    """Proves: python3's os._exit(3) with _exit tracked makes exactly one _exit action,
    with its status, marked as not returned (recorded before the process ends, shipped
    by recovery); before, none. The exit status is unchanged."""
    p, acts = run_cli("void _exit(int status)\n", ["python3", "-c", "import os; os._exit(3)"])
    assert p.returncode == 3, p.stderr
    ex = named(acts, "_exit")
    assert len(ex) == 1, acts
    assert ex[0]["tools_used"]["parameters"]["status"] == 3, ex[0]
    assert NOT_RETURNED in ex[0]["error_msg"], ex[0]


def test_run_summary_counts_execve_as_one_function():
    """Proves: the summary of `run` for bash making one failed and one successful execve
    says "2 actions tracked from 1 function" (the C library's execve and the interposer's
    own standing in for it are two targets of one function; it said "2 functions")."""
    d = tmpdir()
    out = os.path.join(d, "out.jsonl")
    conf = write(os.path.join(d, "a.conf"),
                 "[output]\nsink = file:" + out + "\n[actions]\n" + EXECVE)
    env = {"AGENTSIGHT_SPOOL_DIR": os.path.join(d, "state")}
    p = run([CLI, "run", "-c", conf, "--", "bash", "-c",
             "/nonexistent-agentsight 2>/dev/null; /bin/true; echo done"], env=env)
    assert p.stdout == "done\n", p.stderr
    assert len(named(read_jsonl(out), "execve")) == 2
    assert "2 actions tracked from 1 function " in p.stderr, p.stderr
