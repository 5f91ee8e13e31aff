"""The program runs exactly as before, whatever the interposer keeps open or writes:
its descriptors stay at high numbers (tar's close(0); dup(3) still gets 0), the stderr
sink writes to its own copy of descriptor 2 (coreutils close it at exit), a collector that
refuses connections does not hold up each exit (the batches are spooled at once and
`agentsight send` delivers them later), and a relative file sink is one file in the
working directory of `agentsight run` (or of the process at its start), never one per
directory the program visits."""
import json
import os
import socket
import sys
import tarfile
import time
import urllib.request

from common import CLI, PRELOAD, read_jsonl, run, tmpdir, write

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_delivery import Emulator  # noqa: E402


def tree(d):
    """A small directory to archive: name -> bytes."""
    src = os.path.join(d, "src")
    os.makedirs(os.path.join(src, "sub"))
    files = {"src/a.txt": b"alpha\n", "src/sub/b.bin": bytes(range(256)) * 64}
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    return files


def free_port():
    """A port nothing listens on (bound, then released): connections to it are refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def archive_members(path):
    with tarfile.open(path, "r:gz") as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}


def test_tar_czf_with_close_tracked():
    """Proves `tar czf` whose forked child's first tracked call is close(0) exits as bare
    (0; it aborted with "Child died with signal 6" when the sink file took fd 0 and tar's
    dup(3) returned another number) and writes a valid archive with the same members,
    under `agentsight run`, under a plain LD_PRELOAD and with an OTLP sink whose collector
    is down (libcurl's wakeup socket pair took fd 0); the close calls are recorded."""
    d = tmpdir()
    files = tree(d)
    out = os.path.join(d, "actions.jsonl")
    conf = write(os.path.join(d, "c.conf"), f"[output]\nsink = file:{out}\n[actions]\nclose\n")
    spool = os.path.join(d, "spool")
    bare = run(["tar", "czf", os.path.join(d, "bare.tgz"), "-C", d, "src"], timeout=60)
    assert bare.returncode == 0, bare.stderr
    assert archive_members(os.path.join(d, "bare.tgz")) == files
    runs = {
        "run": run([CLI, "run", "-q", "-c", conf, "--", "tar", "czf",
                    os.path.join(d, "run.tgz"), "-C", d, "src"],
                   env={"AGENTSIGHT_SPOOL_DIR": spool}, timeout=60),
        "preload": run(["tar", "czf", os.path.join(d, "preload.tgz"), "-C", d, "src"],
                       env={"LD_PRELOAD": PRELOAD, "AGENTSIGHT_CONFIG": conf,
                            "AGENTSIGHT_SPOOL_DIR": spool}, timeout=60),
        # An HTTP sink: libcurl's multi handle opens a socket pair of its own.
        "otlp": run(["tar", "czf", os.path.join(d, "otlp.tgz"), "-C", d, "src"],
                    env={"LD_PRELOAD": PRELOAD, "AGENTSIGHT_CONFIG": conf,
                         "AGENTSIGHT_OUTPUT": f"otlp:http://127.0.0.1:{free_port()}",
                         "AGENTSIGHT_SPOOL_DIR": spool}, timeout=60),
    }
    for name, r in runs.items():
        assert r.returncode == bare.returncode, (name, r.returncode, r.stderr)
        assert "signal" not in r.stderr, (name, r.stderr)
        assert archive_members(os.path.join(d, name + ".tgz")) == files, name
    acts = read_jsonl(out)
    assert acts and all(a["action_name"] == "close" for a in acts)


CHECK_LOWEST = r"""
import os, sys, time
os.close(0); os.close(1); os.close(2)
os.getppid()              # the first tracked call: the exporter and its files start here
time.sleep(0.3)           # past the exporter's first scans (see the docstring)
got = [os.open("/dev/null", os.O_RDONLY) for _ in range(3)]
r, w = os.pipe()          # the next two lowest numbers
got += [r, w, os.dup(got[0])]
res = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(res, repr(got).encode())
os.getppid()
"""


def test_closed_std_fds_are_the_programs_next_ones():
    """Proves a program that closes fds 0, 1 and 2 before its first tracked call gets 0, 1
    and 2 back from its next opens, then 3 and 4 from pipe() and 5 from dup(): the sink
    file, the .targets file and the ring files of the interposer took none of them (the
    sink file got 0 before). Under -o stderr too (the sink's copy of fd 2 is taken while
    fd 2 is closed: it is refused, and the program's numbers are still its own).
    The program waits a moment after that call: the exporter's short-lived opens (its
    scans of the ring and spool directories) move their descriptor high right after
    opening it, and one of the program's own opens landing in that instant would still
    see a number taken (README.md says so); this test is about what stays open."""
    d = tmpdir()
    prog = write(os.path.join(d, "lowest.py"), CHECK_LOWEST)
    conf = write(os.path.join(d, "c.conf"), "[actions]\ngetppid\n")
    for i, output in enumerate([f"file:{d}/a.jsonl", f"stderr,file:{d}/b.jsonl"]):
        res = os.path.join(d, f"res{i}")
        r = run([sys.executable, prog, res],
                env={"LD_PRELOAD": PRELOAD, "AGENTSIGHT_CONFIG": conf, "AGENTSIGHT_OUTPUT":
                     output, "AGENTSIGHT_SPOOL_DIR": os.path.join(d, "spool")}, timeout=60)
        assert r.returncode == 0, r.stderr
        with open(res) as f:
            assert f.read() == "[0, 1, 2, 3, 4, 5]", output
    acts = read_jsonl(os.path.join(d, "a.jsonl"))
    assert [a["action_name"] for a in acts] == ["getppid", "getppid"]


def test_stderr_sink_survives_close_stdout():
    """Proves `-o stderr` on sort (coreutils' close_stdout closes fd 2 at exit, before the
    exit flush): every setlocale action appears on stderr, the summary counts them with
    nothing "not delivered" (it said 600 not delivered for 3 actions, one count per retry
    until the flush timeout) and sort's output is unchanged."""
    d = tmpdir()
    data = write(os.path.join(d, "in.txt"), "b\na\nc\n")
    bare = run(["sort", data], timeout=60)
    r = run([CLI, "run", "-o", "stderr", "-e", "char *setlocale(int c, const char *l)", "--",
             "sort", data], env={"AGENTSIGHT_SPOOL_DIR": os.path.join(d, "spool")}, timeout=60)
    assert r.returncode == bare.returncode == 0, r.stderr
    assert r.stdout == bare.stdout == "a\nb\nc\n"
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("[agentsight] ")]
    assert lines and all("setlocale(" in ln for ln in lines), r.stderr
    assert "not delivered" not in r.stderr, r.stderr
    summary = [ln for ln in r.stderr.splitlines() if " actions tracked " in ln]
    assert summary and summary[0].startswith(f"agentsight: {len(lines)} actions tracked"), \
        r.stderr


def test_refused_otlp_spools_at_exit_then_send_delivers():
    """Proves that with an OTLP collector refusing connections the exits of a process
    tree do not wait out the retry backoff (each exec and exit spooled at once: the tree
    of 4 processes ends well within one flush timeout of 2 s, where it took about 1 s per
    process), every action is in the spool, and `agentsight send` to a live emulator on
    that port then delivers every close action as a span."""
    d = tmpdir()
    spool = os.path.join(d, "spool")
    port = free_port()
    conf = write(os.path.join(d, "c.conf"), "[actions]\nclose\n")
    env = {"LD_PRELOAD": PRELOAD, "AGENTSIGHT_CONFIG": conf, "AGENTSIGHT_SPOOL_DIR": spool,
           "AGENTSIGHT_OUTPUT": f"otlp:http://127.0.0.1:{port}",
           "AGENTSIGHT_FLUSH_TIMEOUT_MS": "2000", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
    t0 = time.monotonic()
    r = run(["bash", "-c", "echo hi | cat; cat /etc/hostname >/dev/null; true"], env=env,
            timeout=60)
    took = time.monotonic() - t0
    assert r.returncode == 0 and r.stdout == "hi\n", r.stderr
    assert took < 2.0, f"{took:.2f} s: the exits waited for retries"
    spooled = [f for dp, _, fs in os.walk(spool) for f in fs if f.endswith(".jsonl")]
    assert spooled, "nothing spooled"
    emu = Emulator(os.path.join(d, "store.jsonl"), port, legacy=False)
    try:
        s = run([CLI, "send", "--timeout", "60000"],
                env={"AGENTSIGHT_SPOOL_DIR": spool, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
                timeout=120)
        assert s.returncode == 0, s.stdout + s.stderr
        with urllib.request.urlopen(emu.endpoint + "/_received", timeout=10) as resp:
            got = json.loads(resp.read())
    finally:
        emu.stop()
    names = [e["span"]["name"] for e in got["spans"]]
    assert any("close" in n for n in names), names


def test_relative_sink_under_run_is_one_file_in_runs_directory():
    """Proves that with no [output] the default relative file sink of `agentsight run` is
    one file in run's working directory although the program cds into two others and
    starts processes there (each wrote its own file there, which git status showed), the
    summary names that one file; and that under a plain LD_PRELOAD a process that chdirs
    before its first tracked call still writes in the directory it started in."""
    d = tmpdir()
    top, a, b = (os.path.join(d, n) for n in ("top", "a", "b"))
    for p in (top, a, b):
        os.mkdir(p)
    conf = write(os.path.join(d, "c.conf"), "[actions]\nclose\n")
    spool = os.path.join(d, "spool")
    r = run([CLI, "run", "-c", conf, "--", "bash", "-c",
             f"cd {a} && echo x | cat; cd {b} && echo y | cat"],
            env={"AGENTSIGHT_SPOOL_DIR": spool}, cwd=top, timeout=60)
    assert r.returncode == 0 and r.stdout == "x\ny\n", r.stderr
    assert os.listdir(a) == [] and os.listdir(b) == [], (os.listdir(a), os.listdir(b))
    assert os.listdir(top) == ["agentsight-actions.jsonl"]
    assert read_jsonl(os.path.join(top, "agentsight-actions.jsonl"))
    summary = [ln for ln in r.stderr.splitlines() if " actions tracked " in ln]
    assert summary and summary[0].count("file:") == 1, r.stderr
    assert f"file:{top}/agentsight-actions.jsonl" in summary[0], summary
    # Plain LD_PRELOAD: resolved at the process's start, before its chdir.
    conf2 = write(os.path.join(d, "c2.conf"), "[actions]\ngetppid\n")
    p = run([sys.executable, "-c", f"import os; os.chdir({a!r}); os.getppid()"],
            env={"LD_PRELOAD": PRELOAD, "AGENTSIGHT_CONFIG": conf2,
                 "AGENTSIGHT_SPOOL_DIR": spool}, cwd=b, timeout=60)
    assert p.returncode == 0, p.stderr
    assert os.listdir(a) == [], os.listdir(a)
    assert [x["action_name"] for x in read_jsonl(os.path.join(b, "agentsight-actions.jsonl"))] \
        == ["getppid"]
