"""Entry patches of C library functions the interposer itself uses: configs naming
pthread_mutex_lock/unlock, munmap, __errno_location, clock_gettime, __sigjmp_save or globs
over pthread_* and mem* with hook=entry leave real programs (bash, sh, python3, node when
installed, tar) exactly as they run bare: same stdout, same exit status, within a timeout
(no hang at fork, no deadlock in an atfork handler, no crash), and a glob's matches that
cannot be patched add nothing to the program's stderr."""
import os
import shutil
import signal
import subprocess
import sys

from common import PRELOAD, tmpdir, write

# (config line, whether an exact name: it may get one warning on stderr)
CONFIGS = [
    ("pthread_mutex_lock hook=entry", True),
    ("pthread_mutex_unlock hook=entry", True),
    ("munmap hook=entry", True),
    ("__errno_location hook=entry", True),
    ("clock_gettime hook=entry", True),
    ("__sigjmp_save hook=entry lib=libc.so.6", True),
    ("pthread_* hook=entry", False),
    ("mem* hook=entry", False),
]

PY = ("import subprocess, threading\n"
      "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
      "print(subprocess.run(['echo', 'x'], capture_output=True).stdout.decode().strip())\n")
NODE = ('const r = require("child_process").spawnSync("/bin/echo", ["x"]);'
        'console.log(r.status, r.signal, r.stdout.toString().trim())')


def _programs(d):
    src = os.path.join(d, "src")
    os.makedirs(src, exist_ok=True)
    for i in range(3):
        write(os.path.join(src, "f%d.txt" % i), "line %d\n" % i * 50)
    progs = [
        ["bash", "-c", "echo hi | cat; ls / > /dev/null; (exit 3)"],
        ["sh", "-c", "echo hi | cat; x=$(echo sub); echo $x"],
        [sys.executable, "-c", PY],
        ["tar", "czf", os.path.join(d, "out.tgz"), "-C", src, "."],
        ["sh", "-c", "tar cf - -C %s . | tar tf - | sort" % src],
    ]
    node = shutil.which("node")
    if node:
        progs.append([node, "-e", NODE])
    return progs


def _run_bounded(argv, env=None, timeout=30):
    """Runs argv (environment as common.run, plus env) in a session of its own for at most
    timeout s; a hang is a result (returncode 'timeout', the whole session killed), not an
    error, so a deadlocked fork child is not left behind."""
    full = {k: v for k, v in os.environ.items()
            if not k.startswith("AGENTSIGHT_") and k != "LD_PRELOAD"}
    full.update(env or {})
    p = subprocess.Popen(argv, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate(timeout=30)
        rc = "timeout"
    dec = lambda b: b.decode("utf-8", "replace")
    return subprocess.CompletedProcess(argv, rc, dec(out), dec(err))


def test_entry_on_own_functions_runs_programs_as_bare():
    """Proves: whatever C library function the interposer itself needs is named with
    hook=entry, each program's stdout and exit status match its bare run, and only an
    exact name may add one warning line to stderr (a glob none)."""
    d = tmpdir()
    progs = _programs(d)
    bare = [_run_bounded(p) for p in progs]
    for p, b in zip(progs, bare):
        assert b.returncode != "timeout", p
    bad = []
    for k, (line, exact) in enumerate(CONFIGS):
        conf = write(os.path.join(d, "c%d.conf" % k), "[actions]\n%s\n" % line)
        for p, b in zip(progs, bare):
            out = os.path.join(d, "a%d.jsonl" % k)
            r = _run_bounded(p, {"LD_PRELOAD": PRELOAD, "AGENTSIGHT_CONFIG": conf,
                                 "AGENTSIGHT_OUTPUT": "file:" + out})
            # a full queue's report is the pipeline's own accounting, not a refusal
            extra = [s for s in r.stderr.splitlines()
                     if s not in b.stderr.splitlines() and "actions dropped" not in s]
            why = []
            if r.returncode != b.returncode:
                why.append("exit %s, bare %s" % (r.returncode, b.returncode))
            if r.stdout != b.stdout:
                why.append("stdout %r, bare %r" % (r.stdout[:200], b.stdout[:200]))
            if len(extra) > (1 if exact else 0):
                why.append("stderr %r" % extra[:4])
            if why:
                bad.append("%s | %s: %s" % (line, " ".join(p)[:60], "; ".join(why)))
    assert not bad, "\n".join(bad)


def test_every_libc_function_entry_patched_echo_runs():
    """Proves: '* hook=entry lib=libc.so.6' (every C library function the patcher can
    patch, those the patcher and the thunk call while patching included) leaves echo's
    output, exit status and stderr as bare: no SIGILL from a neighbour jumping into a
    patched entry, no recursion through __errno_location, no starter thread starting
    another one (bounded: 120 s)."""
    d = tmpdir()
    conf = write(os.path.join(d, "all.conf"), "[actions]\n* hook=entry lib=libc.so.6\n")
    argv = ["/bin/echo", "ok"]
    bare = _run_bounded(argv)
    r = _run_bounded(argv, {"LD_PRELOAD": PRELOAD, "AGENTSIGHT_CONFIG": conf,
                            "AGENTSIGHT_OUTPUT": "file:" + os.path.join(d, "a.jsonl")},
                     timeout=120)
    assert (r.returncode, r.stdout) == (bare.returncode, bare.stdout), (r.returncode, r.stdout,
                                                                         r.stderr[-2000:])
    assert r.stderr == bare.stderr, r.stderr[-2000:]
