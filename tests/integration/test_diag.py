"""The program's stderr is its own (issue 11, item 4): diagnostics about the config and
unmatched entries are reported once per run, not once per process. Each test runs a real
process tree (bash, sh, /bin/true, python3, make, the dlopen test agent) bare and under the
interposer and compares stderr line by line."""
import os
import re

from common import CLI, PRELOAD, agent, read_jsonl, run, run_preloaded, tmpdir, write

ABSENT = "agentsight_absent_fn_q7"
SUMMARY = re.compile(r"^agentsight: (\d+ actions? tracked|no instrumented process)")


def tree(d):
    """A bash script starting sh, /bin/true, python3 and make (a tiny Makefile in d), with
    output on both streams; returns its argv."""
    write(os.path.join(d, "Makefile"), "all:\n\t@echo made\n\t@echo made-err >&2\n")
    script = ('sh -c "echo one; /bin/true; echo two >&2"; /bin/true; '
              'python3 -c "import sys; print(1+2); print(4, file=sys.stderr)"; '
              'make -s -C "%s"; echo end' % d)
    return ["bash", "-c", script]


def conf(d, text="[actions]\n" + ABSENT + "\n"):
    return write(os.path.join(d, "diag.conf"), text)


def without_summary(stderr):
    """stderr's lines without run's summary line (asserted to be there once)."""
    lines = stderr.splitlines()
    summary = [x for x in lines if SUMMARY.match(x)]
    assert len(summary) == 1, stderr
    return [x for x in lines if not SUMMARY.match(x)]


def logged_pids(path, needle):
    """The pids of the AGENTSIGHT_LOG lines containing needle (one per line)."""
    with open(path) as f:
        lines = f.read().splitlines()
    for line in lines:
        assert re.match(r"^agentsight\[\d+\]: (error|warning|info|debug): ", line), line
    return [int(re.match(r"agentsight\[(\d+)\]", x).group(1)) for x in lines if needle in x]


def test_run_reports_an_unmatched_entry_once_for_the_tree():
    """Proves that under `agentsight run` a tree of bash, sh, /bin/true, python3 and make
    with an entry no process has leaves the program's stderr as in the bare run plus one
    aggregated line naming the entry, its config line and the number of processes, and
    that number is the count of processes that report it one by one to AGENTSIGHT_LOG."""
    d = tmpdir()
    argv = tree(d)
    c = conf(d)
    bare = run(argv, cwd=d)
    assert bare.returncode == 0 and "made-err" in bare.stderr, bare.stderr
    private = tmpdir()
    got = run([CLI, "run", "-c", c, "-o", "file:" + os.path.join(d, "o.jsonl"), "--"] + argv,
              cwd=d, env={"TMPDIR": private})
    assert (got.returncode, got.stdout) == (bare.returncode, bare.stdout), got.stderr
    assert os.listdir(private) == []  # run's private directory is gone
    lines = without_summary(got.stderr)
    assert lines[:-1] == bare.stderr.splitlines(), got.stderr
    m = re.fullmatch(r"agentsight: entry '%s' \(diag\.conf:2\) matched nothing in any of "
                     r"(\d+) processes" % ABSENT, lines[-1])
    assert m, got.stderr
    # The same tree with every process writing its own line to a log file.
    log = os.path.join(d, "diag.log")
    again = run(argv, cwd=d, env={"LD_PRELOAD": PRELOAD, "AGENTSIGHT_CONFIG": c,
                                  "AGENTSIGHT_LOG": log})
    assert again.stderr == bare.stderr, again.stderr
    pids = logged_pids(log, ABSENT)
    assert len(pids) == len(set(pids)) and len(pids) >= 5, pids
    assert int(m.group(1)) == len(pids), (m.group(1), pids)


def test_run_quiet_leaves_stderr_exactly_as_bare():
    """Proves that `agentsight run -q` adds nothing at all to the program's stderr, with a
    config whose entry no process has and a line that is a syntax error."""
    d = tmpdir()
    argv = tree(d)
    c = conf(d, "[actions]\n%s\nputs(int\n" % ABSENT)
    bare = run(argv, cwd=d)
    got = run([CLI, "run", "-q", "-c", c, "--"] + argv, cwd=d)
    assert (got.returncode, got.stdout, got.stderr) == (bare.returncode, bare.stdout,
                                                        bare.stderr), got.stderr


def test_plain_preload_tree_warns_once():
    """Proves that under plain LD_PRELOAD only the first process of the tree speaks: the
    unmatched entry is named once, every other line is the bare run's."""
    d = tmpdir()
    argv = tree(d)
    c = conf(d)
    bare = run(argv, cwd=d)
    got = run_preloaded(argv, config=c, out=os.path.join(d, "o.jsonl"), cwd=d)
    assert (got.returncode, got.stdout) == (bare.returncode, bare.stdout), got.stderr
    told = [x for x in got.stderr.splitlines() if ABSENT in x]
    assert len(told) == 1, got.stderr
    assert told[0].startswith("agentsight: warning: %s:2:1: '%s' matched no function" % (c, ABSENT))
    rest = [x for x in got.stderr.splitlines() if ABSENT not in x]
    assert rest == bare.stderr.splitlines(), got.stderr


def test_log_file_takes_every_message():
    """Proves that with AGENTSIGHT_LOG=FILE nothing of ours reaches stderr, also under
    `run` (whose own summary line stays), and the file has one line per message and
    process, with the pid: the syntax error and the unmatched entry of each process."""
    d = tmpdir()
    argv = tree(d)
    c = conf(d, "[actions]\n%s\nputs(int\n" % ABSENT)
    log = os.path.join(d, "as.log")
    bare = run(argv, cwd=d)
    got = run_preloaded(argv, config=c, cwd=d, env={"AGENTSIGHT_LOG": log})
    assert (got.returncode, got.stdout, got.stderr) == (bare.returncode, bare.stdout,
                                                        bare.stderr), got.stderr
    unmatched = logged_pids(log, ABSENT)
    syntax = logged_pids(log, "diag.conf:3:")
    assert len(unmatched) >= 5 and len(set(unmatched)) == len(unmatched), unmatched
    assert set(unmatched) <= set(syntax), (unmatched, syntax)
    os.unlink(log)
    got = run([CLI, "run", "-c", c, "--"] + argv, cwd=d, env={"AGENTSIGHT_LOG": log})
    assert without_summary(got.stderr) == bare.stderr.splitlines(), got.stderr
    assert len(logged_pids(log, ABSENT)) == len(unmatched)


def test_entry_in_a_library_loaded_later_never_warns():
    """Proves that an entry naming a function of a library the agent dlopens after start
    is hooked and never reported as unmatched, under `run` and under plain LD_PRELOAD."""
    d = tmpdir()
    c = conf(d, "[actions]\nplugin_search\n")
    argv = [agent("hook_agent"), "plugin"]
    bare = run(argv, cwd=d)
    assert bare.returncode == 3 and "plugin sum" in bare.stdout, bare.stdout + bare.stderr
    out = os.path.join(d, "o.jsonl")
    got = run([CLI, "run", "-c", c, "-o", "file:" + out, "--"] + argv, cwd=d)
    assert (got.returncode, got.stdout) == (bare.returncode, bare.stdout), got.stderr
    assert without_summary(got.stderr) == bare.stderr.splitlines(), got.stderr
    assert [a["action_name"] for a in read_jsonl(out)] == ["plugin_search"] * 3
    os.unlink(out)
    got = run_preloaded(argv, config=c, out=out, cwd=d)
    assert (got.returncode, got.stdout, got.stderr) == (bare.returncode, bare.stdout,
                                                        bare.stderr), got.stderr
    assert len(read_jsonl(out)) == 3


def test_bad_config_line_is_reported_once_for_ten_processes():
    """Proves that a syntax error in the config is reported once for a tree of 10
    processes (bash and 9 /bin/true), under `run` (which also counts the 10 processes for
    the unmatched entry) and under plain LD_PRELOAD."""
    d = tmpdir()
    c = conf(d, "[actions]\nputs(int\n%s\n" % ABSENT)
    argv = ["bash", "-c", "for i in 1 2 3 4 5 6 7 8 9; do /bin/true; done; echo done"]
    bare = run(argv, cwd=d)
    assert (bare.returncode, bare.stdout, bare.stderr) == (0, "done\n", "")
    got = run([CLI, "run", "-c", c, "--"] + argv, cwd=d)
    assert (got.returncode, got.stdout) == (0, "done\n"), got.stderr
    lines = without_summary(got.stderr)
    assert len(lines) == 2, got.stderr
    assert re.fullmatch(r"agentsight: error: diag\.conf:2:\d+: .*", lines[0]), lines
    assert lines[1] == ("agentsight: entry '%s' (diag.conf:3) matched nothing in any of 10 "
                        "processes" % ABSENT), lines
    got = run_preloaded(argv, config=c, cwd=d)
    assert (got.returncode, got.stdout) == (0, "done\n"), got.stderr
    lines = got.stderr.splitlines()
    assert len([x for x in lines if ":2:" in x]) == 1, got.stderr
    assert len([x for x in lines if ABSENT in x]) == 1, got.stderr
    assert len(lines) == 2, got.stderr


def test_lost_actions_are_told_even_under_quiet():
    """Proves the alert rule: with a sink that cannot be opened every tracked call is
    lost, and `run -q` still says so on stderr, once for the one process that hooked
    something, while stdout and the exit status are the bare run's."""
    d = tmpdir()
    c = conf(d, "[actions]\ntool_add\n")
    argv = [agent("hook_agent"), "basic"]
    bare = run(argv, cwd=d)
    sink = "file:" + os.path.join(d, "missing-dir", "o.jsonl")
    got = run([CLI, "run", "-q", "-c", c, "-o", sink, "--"] + argv, cwd=d)
    assert (got.returncode, got.stdout) == (bare.returncode, bare.stdout), got.stderr
    assert got.stderr.splitlines() == bare.stderr.splitlines() + [
        "agentsight: error: no sink could be opened (output '%s'): tracking nothing" % sink]
