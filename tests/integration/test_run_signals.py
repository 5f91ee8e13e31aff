"""Integration tests of `agentsight run` between its caller and PROGRAM: a signal sent to
`run` by its pid reaches PROGRAM (whose handlers then act as without `run`), and `run`
ends as PROGRAM ended, by the same signal, so its parent sees the same wait status as
with the bare program, with no core file of its own. Every process has a timeout and
its own spool directory (AGENTSIGHT_SPOOL_DIR)."""
import os
import resource
import signal
import subprocess
import time

from common import CLI, TIMEOUT, agent, tmpdir, write

TRAP = 'sleep 30 >/dev/null & trap "echo got; kill $!; exit 5" TERM; echo ready; wait'


def _env(d):
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("AGENTSIGHT_") and k != "LD_PRELOAD"}
    e["AGENTSIGHT_SPOOL_DIR"] = os.path.join(d, "spool")
    return e


def _conf(d):
    return write(os.path.join(d, "a.conf"), "[actions]\nlabs\n")


def _signalled(argv, d, sig, preexec=None):
    """Starts argv in a session of its own, waits for its "ready" line, sends sig to its
    pid alone and returns (returncode, stdout). Killed (the whole session) on a timeout."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(d),
                         cwd=d, start_new_session=True, preexec_fn=preexec)
    try:
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(sig)
        out, _ = p.communicate(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=TIMEOUT)
    return p.returncode, out


def test_sigterm_to_run_reaches_the_programs_trap():
    """Proves SIGTERM sent to `run`'s pid alone (as Popen.terminate() or a supervisor
    does) runs PROGRAM's TERM trap, and `run` exits with the status of the bare program
    given the same signal (5, from the trap), after PROGRAM ended."""
    d = tmpdir()
    conf = _conf(d)
    bare_rc, bare_out = _signalled(["/bin/bash", "-c", TRAP], d, signal.SIGTERM)
    rc, out = _signalled([CLI, "run", "-q", "-c", conf, "--", "/bin/bash", "-c", TRAP], d,
                         signal.SIGTERM)
    assert bare_rc == 5 and bare_out == b"got\n", (bare_rc, bare_out)
    assert (rc, out) == (bare_rc, bare_out), (rc, out)


def test_other_signals_to_run_reach_the_program():
    """Proves SIGHUP, SIGUSR1, SIGUSR2, SIGALRM, and SIGINT and SIGQUIT sent to `run`'s
    pid alone (not from the terminal) reach PROGRAM's traps, each giving the same status
    as the bare program."""
    d = tmpdir()
    conf = _conf(d)
    for sig, name in ((signal.SIGHUP, "HUP"), (signal.SIGUSR1, "USR1"),
                      (signal.SIGUSR2, "USR2"), (signal.SIGALRM, "ALRM"),
                      (signal.SIGINT, "INT"), (signal.SIGQUIT, "QUIT")):
        script = ('sleep 30 >/dev/null & trap "echo got %s; kill $!; exit 6" %s; echo ready; '
                  'wait' % (name, name))
        bare = _signalled(["/bin/bash", "-c", script], d, sig)
        got = _signalled([CLI, "run", "-q", "-c", conf, "--", "/bin/bash", "-c", script], d,
                         sig)
        assert bare == (6, b"got %s\n" % name.encode()), (name, bare)
        assert got == bare, (name, got)


def test_sigterm_without_trap_ends_run_by_sigterm():
    """Proves that a PROGRAM without a handler, killed by the SIGTERM sent to `run`, makes
    `run` end by SIGTERM too (returncode -15, as the bare program)."""
    d = tmpdir()
    conf = _conf(d)
    script = "echo ready; exec sleep 30"
    bare = _signalled(["/bin/sh", "-c", script], d, signal.SIGTERM)
    got = _signalled([CLI, "run", "-q", "-c", conf, "--", "/bin/sh", "-c", script], d,
                     signal.SIGTERM)
    assert bare[0] == -signal.SIGTERM and got == bare, (bare, got)


def _core_unlimited():
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def test_death_by_signal_is_passed_on_without_a_core_file():
    """Proves a PROGRAM killed by SIGKILL or SIGSEGV makes `run`'s wait status the same
    signal (returncode -9 / -11, as the bare program; not 137 / 139), with the summary
    still printed first, and that `run`, started with an unlimited core size, writes no
    core file of its own (the test agent forbids its own)."""
    d = tmpdir()
    conf = _conf(d)
    out = os.path.join(d, "a.jsonl")
    for mode, sig in (("kill", signal.SIGKILL), ("segv", signal.SIGSEGV)):
        bare = subprocess.run([agent("crash_agent"), mode, "3"], env=_env(d), cwd=d,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
        p = subprocess.run([CLI, "run", "-c", conf, "-o", "file:" + out, "--",
                            agent("crash_agent"), mode, "3"], env=_env(d), cwd=d,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT,
                           preexec_fn=_core_unlimited)
        assert bare.returncode == -sig, bare.returncode
        assert p.returncode == -sig, (mode, p.returncode, p.stderr)
        assert p.stdout == bare.stdout
        assert b"actions tracked" in p.stderr, p.stderr
        cores = [f for f in os.listdir(d) if f.startswith("core")]
        assert cores == [], cores


def test_signal_from_program_to_run_is_not_sent_back():
    """Proves a signal PROGRAM sends to its parent `run` is not forwarded back to PROGRAM
    (which would otherwise die of its own SIGUSR1): PROGRAM goes on and exits 0."""
    d = tmpdir()
    conf = _conf(d)
    t0 = time.monotonic()
    p = subprocess.run([CLI, "run", "-q", "-c", conf, "--", "/bin/sh", "-c",
                        "kill -USR1 $PPID; sleep 0.3; echo alive"], env=_env(d), cwd=d,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
    assert p.returncode == 0 and p.stdout == b"alive\n", (p.returncode, p.stdout, p.stderr)
    assert time.monotonic() - t0 < TIMEOUT


# ---- the summary line adds up ------------------------------------------------------------

def _summary_count(stderr):
    import re
    m = re.search(rb"agentsight: (\d+) actions? tracked from (\d+) functions? .* -> (\S+)\n",
                  stderr)
    assert m, stderr
    return int(m.group(1)), int(m.group(2)), m.group(3).decode()


def test_summary_counts_the_file_for_killed_and_exited_children():
    """Proves the summary of a tree whose children are killed by SIGKILL and one of which
    ends with _exit counts exactly the lines the file sink got (tracked + recovered),
    names the file sink and the one function; and that when the only process that tracked
    anything ended with _exit (no stats line), the count and the file sink are right."""
    d = tmpdir()
    conf = write(os.path.join(d, "a.conf"), "[actions]\nlabs\n")
    out = os.path.join(d, "a.jsonl")
    ca = agent("crash_agent")
    script = ("for i in 1 2 3; do %s kill 500 >/dev/null & done; %s exit 300 >/dev/null; "
              "wait" % (ca, ca))
    p = subprocess.run([CLI, "run", "-c", conf, "-o", "file:" + out, "--", "/bin/sh", "-c",
                        script], env=_env(d), cwd=d, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    with open(out) as f:
        lines = sum(1 for line in f if line.strip())
    assert lines == 3 * 1000 + 600, lines
    assert _summary_count(p.stderr) == (lines, 1, "file:" + out), p.stderr

    out2 = os.path.join(d, "b.jsonl")
    p = subprocess.run([CLI, "run", "-c", conf, "-o", "file:" + out2, "--", ca, "exit", "7"],
                       env=_env(d), cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=TIMEOUT)
    assert p.returncode == 3, p.stderr
    count, _, sink = _summary_count(p.stderr)
    assert (count, sink) == (14, "file:" + out2), p.stderr


def test_entry_without_config_is_not_reported_as_no_config():
    """Proves `run -e PATTERN` without -c (and no ./agentsight.conf) never says "no
    config": with a program ending with _exit that tracked nothing, the summary says no
    instrumented process reported; with one that tracked, it counts its actions."""
    d = tmpdir()
    ca = agent("crash_agent")
    p = subprocess.run([CLI, "run", "-e", "no_such_function_zz", "--", ca, "exit", "0"],
                       env=_env(d), cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=TIMEOUT)
    assert p.returncode == 3, p.stderr
    assert b"no config" not in p.stderr, p.stderr
    assert b"no instrumented process reported" in p.stderr, p.stderr
    p = subprocess.run([CLI, "run", "-e", "labs", "--", ca, "exit", "4"], env=_env(d), cwd=d,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
    assert b"no config" not in p.stderr, p.stderr
    assert _summary_count(p.stderr)[0] == 8, p.stderr


def test_unmatched_entry_and_summary_agree():
    """Proves an entry that matched nothing in the one process that ran is reported with
    a summary that agrees (not "no instrumented process reported"), and that a config
    error every process image hits, in a tree where a process forks without exec, is
    printed without "(in N of M processes)"."""
    d = tmpdir()
    conf = write(os.path.join(d, "n.conf"), "[actions]\nno_such_function_zz\n")
    p = subprocess.run([CLI, "run", "-c", conf, "--", "/bin/true"], env=_env(d), cwd=d,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
    assert b"matched nothing in any of 1 process" in p.stderr, p.stderr
    assert b"no instrumented process reported" not in p.stderr, p.stderr
    bad = write(os.path.join(d, "bad.conf"), "[actions]\nlabs\nbogus line (((\n")
    prog = ("import os, sys\nfor i in range(2):\n    if os.fork() == 0:\n"
            "        sys.exit(0)\n    os.wait()\n")
    p = subprocess.run([CLI, "run", "-c", bad, "--", "python3", "-c", prog], env=_env(d),
                       cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
    assert b"unknown type 'bogus'" in p.stderr, p.stderr
    assert b" of " not in p.stderr.split(b"unknown type 'bogus'")[1].split(b"\n")[0], p.stderr


def test_ctrl_c_from_the_terminal_reaches_the_program():
    """Proves Ctrl-C typed on a real terminal (a pty: the kernel sends SIGINT to the
    foreground process group, si_code SI_KERNEL) runs PROGRAM's INT trap, does not stop
    `run`, and run exits with PROGRAM's status. (That run does not send it a second time
    cannot be told apart here: two SIGINTs close together merge into one.)"""
    import pty
    import select
    d = tmpdir()
    conf = _conf(d)
    script = ('n=0; trap "n=\\$((n+1))" INT; echo ready; i=0; '
              'while [ $i -lt 10 ]; do sleep 0.1; i=$((i+1)); done; echo "n=$n"; exit 4')
    env = _env(d)
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.chdir(d)
            os.execve(CLI, [CLI, "run", "-q", "-c", conf, "--", "/bin/bash", "-c", script],
                      env)
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + TIMEOUT
    sent = False
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.5)
            if r:
                try:
                    chunk = os.read(fd, 1024)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if not sent and b"ready" in out:
                time.sleep(0.2)
                os.write(fd, b"\x03")
                sent = True
        _, status = os.waitpid(pid, 0)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.close(fd)
    assert sent, out
    assert b"n=1" in out or b"n=2" in out, out
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 4, (status, out)


def test_closed_stderr_does_not_end_run_by_sigpipe():
    """Proves that when nobody reads `run`'s stderr any more (the reading end of the pipe
    closed), writing its summary does not kill `run` by SIGPIPE: it exits with PROGRAM's
    status (3), as the bare program does."""
    d = tmpdir()
    conf = _conf(d)
    r, w = os.pipe()
    os.close(r)
    try:
        argv = ["/bin/sh", "-c", "sleep 0.2; exit 3"]
        bare = subprocess.run(argv, stderr=w, env=_env(d), cwd=d, timeout=TIMEOUT)
        p = subprocess.run([CLI, "run", "-c", conf, "--"] + argv, stderr=w, env=_env(d),
                           cwd=d, timeout=TIMEOUT)
    finally:
        os.close(w)
    assert bare.returncode == 3 and p.returncode == 3, (bare.returncode, p.returncode)


def test_summary_counts_records_a_killed_process_had_written_to_the_file():
    """Proves the summary counts the actions a process killed by SIGKILL had already
    written to the file sink but not yet marked as delivered in its ring (recovery finds
    them in the file and skips them): over 3 runs of 4 children each killed right after
    20000 calls, while their exporters are writing, the count equals the file's lines.
    The count of those skipped records comes from preload/core/recover.c (its "records
    were already in the file sink" count added to as_recover_opts.unreported)."""
    d = tmpdir()
    conf = write(os.path.join(d, "a.conf"), "[actions]\nlabs\n")
    ca = agent("crash_agent")
    script = "for i in 1 2 3 4; do %s kill 20000 >/dev/null 2>&1 & done; wait" % ca
    for k in range(3):
        out = os.path.join(d, "k%d.jsonl" % k)
        p = subprocess.run([CLI, "run", "-c", conf, "-o", "file:" + out, "--", "/bin/sh",
                            "-c", script], env=_env(d), cwd=d, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=TIMEOUT)
        assert p.returncode == 0, p.stderr
        with open(out) as f:
            lines = sum(1 for line in f if line.strip())
        assert lines == 4 * 40000, lines
        assert _summary_count(p.stderr)[0] == lines, (k, p.stderr)


def test_summary_of_a_program_that_delivered_then_ended_with_exit():
    """Proves that when PROGRAM's own exporter delivered its action and PROGRAM then ended
    with _exit (no stats line, nothing left to recover), the summary still counts that
    action, the one function and the default file sink from the run's ring file (not
    "from 0 functions ... -> -"), and that a shell of the tree that changed directory and
    tracked nothing does not add its own (empty) sink to the list."""
    import sys
    d = tmpdir()
    sub = os.path.join(d, "elsewhere")
    os.mkdir(sub)
    prog = ("import ctypes, os, time\nctypes.CDLL(None).labs(-5)\ntime.sleep(0.5)\n"
            "os._exit(0)\n")
    script = '(cd %s && /bin/sh -c "exit 0"); exec %s -c "$0"' % (sub, sys.executable)
    p = subprocess.run([CLI, "run", "-e", "labs", "--", "/bin/sh", "-c", script, prog],
                       env=_env(d), cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    out = os.path.join(d, "agentsight-actions.jsonl")
    with open(out) as f:
        lines = sum(1 for line in f if line.strip())
    assert lines == 1, lines
    assert _summary_count(p.stderr) == (1, 1, "file:" + out), p.stderr
