"""Integration tests of the `agentsight` command line: the dispatcher, `report` on real
JSONL files (values read back with the json module), and `run` with real programs (exit
status, streams, signals, the environment it sets and its summary line)."""
import json
import os
import re
import signal
import subprocess
import time

from common import CLI, PRELOAD, ROOT, TIMEOUT, read_jsonl, run, tmpdir, write

COMMANDS = ["run", "report", "symbols", "check", "send"]


def header_version():
    with open(os.path.join(ROOT, "include", "agentsight.h")) as f:
        return re.search(r'#define AGENTSIGHT_VERSION "([^"]+)"', f.read()).group(1)


def test_version_matches_header():
    """Proves --version prints the version of include/agentsight.h."""
    p = run([CLI, "--version"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "agentsight " + header_version()


def test_help_lists_every_command():
    """Proves --help exits 0 and names every subcommand."""
    p = run([CLI, "--help"])
    assert p.returncode == 0
    for c in COMMANDS:
        assert re.search(r"^\s+%s\s" % c, p.stdout, re.M), (c, p.stdout)


def test_every_command_has_help():
    """Proves each subcommand answers -h, --help and `help CMD` with exit 0 and text."""
    for c in COMMANDS:
        for argv in ([CLI, c, "--help"], [CLI, c, "-h"], [CLI, "help", c]):
            p = run(argv)
            assert p.returncode == 0, (argv, p.returncode, p.stderr)
            assert c in (p.stdout + p.stderr).lower(), (argv, p.stdout)


def test_unknown_command_and_no_command():
    """Proves an unknown command or none gives a clear message and usage on stderr, exit 2."""
    p = run([CLI, "frobnicate"])
    assert p.returncode == 2
    assert "unknown command 'frobnicate'" in p.stderr
    assert "usage: agentsight" in p.stderr
    assert p.stdout == ""
    p = run([CLI])
    assert p.returncode == 2 and "usage: agentsight" in p.stderr
    p = run([CLI, "help", "frobnicate"])
    assert p.returncode == 2 and "unknown command" in p.stderr


# ---- report ------------------------------------------------------------------------------

KNOWN = [
    # weather_lookup: 4 calls (one error), durations 100, 200, 300, 400 ms
    {"action_name": "weather_lookup", "duration_ms": 100, "error_msg": None},
    {"action_name": "weather_lookup", "duration_ms": 200, "error_msg": "timeout"},
    {"action_name": "weather_lookup", "duration_ms": 300},
    {"action_name": "weather_lookup", "duration_ms": 400},
    # sqlite3_exec: interposer actions whose metadata.duration_ns wins over duration_ms
    {"action_name": "sqlite3_exec", "duration_ms": 0,
     "metadata": {"duration_ns": 1500000, "display_name": "SQL query"}},
    {"action_name": "sqlite3_exec", "duration_ms": 1,
     "metadata": {"duration_ns": 2500000}},
    # calculator_add: 1 call of 2000 ms
    {"action_name": "calculator_add", "duration_ms": 2000},
]


def known_file(d):
    return write(os.path.join(d, "known.jsonl"), "".join(json.dumps(a) + "\n" for a in KNOWN))


def test_report_json_values():
    """Proves report --json computes calls, errors, total, mean, nearest-rank percentiles,
    max and display_name per action, sorted by total time descending."""
    d = tmpdir()
    p = run([CLI, "report", "--json", known_file(d)])
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert [r["action_name"] for r in rows] == ["calculator_add", "weather_lookup",
                                                 "sqlite3_exec"]
    w = rows[1]
    assert (w["calls"], w["errors"], w["total_ms"], w["mean_ms"]) == (4, 1, 1000, 250)
    assert (w["p50_ms"], w["p95_ms"], w["p99_ms"], w["max_ms"]) == (200, 400, 400, 400)
    assert w["display_name"] is None and w["exact"] is True
    s = rows[2]
    assert s["display_name"] == "SQL query"
    assert (s["calls"], s["errors"], s["total_ms"], s["max_ms"]) == (2, 0, 4, 2.5)
    assert s["p50_ms"] == 1.5


def test_report_sort_keys():
    """Proves --sort calls and --sort name change the row order."""
    d = tmpdir()
    f = known_file(d)
    p = run([CLI, "report", "--json", "--sort", "calls", f])
    assert [r["action_name"] for r in json.loads(p.stdout)] == [
        "weather_lookup", "sqlite3_exec", "calculator_add"]
    p = run([CLI, "report", "--json", "--sort=name", f])
    assert [r["action_name"] for r in json.loads(p.stdout)] == [
        "calculator_add", "sqlite3_exec", "weather_lookup"]
    p = run([CLI, "report", "--sort", "bogus", f])
    assert p.returncode == 2 and "--sort" in p.stderr


def test_report_table():
    """Proves the human table has one aligned row per action with the same values, and a
    display_name column because one action has metadata.display_name."""
    d = tmpdir()
    p = run([CLI, "report", known_file(d)])
    assert p.returncode == 0, p.stderr
    lines = p.stdout.rstrip("\n").split("\n")
    assert len(lines) == 4
    assert len({len(l) for l in lines}) == 1, lines  # aligned: equal widths
    head = lines[0].split()
    assert head == ["action_name", "display_name", "calls", "errors", "total_ms", "mean_ms",
                    "p50_ms", "p95_ms", "p99_ms", "max_ms"]
    by_name = {l.split()[0]: l for l in lines[1:]}
    assert by_name["weather_lookup"].split()[1:] == [
        "-", "4", "1", "1000.000", "250.000", "200.000", "400.000", "400.000", "400.000"]
    assert "SQL query" in by_name["sqlite3_exec"]


def test_report_stdin_and_several_files():
    """Proves '-' reads stdin and several files add up into one report."""
    d = tmpdir()
    f = known_file(d)
    text = open(f).read()
    p = run([CLI, "report", "--json", "-", f], stdin=text)
    assert p.returncode == 0, p.stderr
    rows = {r["action_name"]: r for r in json.loads(p.stdout)}
    assert rows["weather_lookup"]["calls"] == 8
    assert rows["calculator_add"]["total_ms"] == 4000


def test_report_bad_lines():
    """Proves bad lines are counted and reported with the first one's line and reason, and
    do not stop the report."""
    d = tmpdir()
    f = write(os.path.join(d, "bad.jsonl"),
              '{"action_name":"a","duration_ms":1}\n'
              '{"action_name":"a","duration_ms":2}\n'
              'garbage\n'
              '{"duration_ms":5}\n'
              '\n'
              '{"action_name":"a","duration_ms":3}\n'
              '[]\n')
    p = run([CLI, "report", "--json", f])
    assert p.returncode == 0
    assert "report: 3 bad lines skipped (first at line 3: not JSON)" in p.stderr, p.stderr
    rows = json.loads(p.stdout)
    assert rows[0]["calls"] == 3 and rows[0]["total_ms"] == 6


def test_report_unreadable():
    """Proves exit 1 when no file could be read, and 0 when at least one could."""
    d = tmpdir()
    p = run([CLI, "report", os.path.join(d, "missing.jsonl")])
    assert p.returncode == 1 and "missing.jsonl" in p.stderr
    p = run([CLI, "report", os.path.join(d, "missing.jsonl"), known_file(d)])
    assert p.returncode == 0 and "missing.jsonl" in p.stderr
    p = run([CLI, "report"])
    assert p.returncode == 2


def nearest_rank(sorted_vals, pct):
    n = len(sorted_vals)
    rank = max(1, -(-pct * n // 100))
    return sorted_vals[min(rank, n) - 1]


def test_report_large_file_bounded_memory():
    """Proves a 200k-line, ~100 MB file is processed in one pass with bounded memory (peak
    RSS far below the file size) and the histogram percentiles stay within 1% of exact."""
    d = tmpdir()
    path = os.path.join(d, "big.jsonl")
    names = ["tool_%d" % i for i in range(20)]
    durs = {n: [] for n in names}
    pad = "x" * 450
    state = 12345
    with open(path, "w") as f:
        for i in range(200000):
            state = (state * 1103515245 + 12345) % (1 << 31)
            name = names[i % 20]
            ns = 1000 + state % 50000000
            durs[name].append(ns)
            f.write('{"action_name":"%s","duration_ms":0,"response":"%s",'
                    '"metadata":{"duration_ns":%d}}\n' % (name, pad, ns))
    size = os.path.getsize(path)
    assert size > 90 * 1024 * 1024
    out_path = os.path.join(d, "out.json")
    with open(out_path, "w") as out_f:
        proc = subprocess.Popen([CLI, "report", "--json", path], stdout=out_f,
                                stderr=subprocess.PIPE)
    # The report's own peak RSS: VmHWM of its image, read while it runs (wait4's ru_maxrss
    # would also count this Python process's pages, which the child had before its exec).
    # The loop is bounded in count and time.
    status, hwm_kib = None, 0
    deadline = time.monotonic() + TIMEOUT * 3
    for _ in range(100000):
        try:
            with open("/proc/%d/status" % proc.pid) as st:
                fields = dict(line.split(":", 1) for line in st if ":" in line)
            if fields.get("Name", "").strip() == "agentsight":  # after the exec only
                hwm_kib = max(hwm_kib, int(fields.get("VmHWM", "0 kB").split()[0]))
        except (OSError, ValueError):
            pass
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    else:
        pid = 0
    if pid != proc.pid:
        proc.kill()
        os.wait4(proc.pid, 0)
        raise AssertionError("report did not finish in time")
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.returncode == 0, err
    # In KiB: a streaming pass needs a few MB whatever the file size.
    assert 0 < hwm_kib < 48 * 1024, hwm_kib
    with open(out_path) as f:
        out = f.read()
    rows = {r["action_name"]: r for r in json.loads(out)}
    assert len(rows) == 20
    for n in names:
        r = rows[n]
        vals = sorted(durs[n])
        assert r["calls"] == len(vals)
        assert r["exact"] is False  # 10000 calls each: past the exact cap
        assert abs(r["max_ms"] - vals[-1] / 1e6) < 1e-9
        for key, pct in (("p50_ms", 50), ("p95_ms", 95), ("p99_ms", 99)):
            want = nearest_rank(vals, pct) / 1e6
            assert abs(r[key] - want) / want <= 0.01, (n, key, r[key], want)
    os.unlink(path)


# ---- run -------------------------------------------------------------------------------

SUMMARY = re.compile(r"^agentsight: \d+ actions? tracked from \d+ functions? "
                     r"\(\d+ dropped\) -> (\S+)$", re.M)


def run_bytes(argv, env=None, stdin=b"", cwd=None):
    """Runs argv with bytes in and out (for byte-exact comparisons)."""
    full = {k: v for k, v in os.environ.items()
            if not k.startswith("AGENTSIGHT_") and k != "LD_PRELOAD"}
    full.update(env or {})
    return subprocess.run(argv, env=full, input=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=TIMEOUT, cwd=cwd)


def test_run_exit_status_passes_through():
    """Proves exit statuses 0 and 3 pass through, and a death by SIGTERM/SIGKILL is passed
    on as a death by the same signal (returncode -15 / -9, as the bare program gives)."""
    d = tmpdir()
    for script, want in (("exit 0", 0), ("exit 3", 3), ("kill -TERM $$", -15),
                         ("kill -KILL $$", -9)):
        p = run([CLI, "run", "-q", "-o", "file:" + os.path.join(d, "a.jsonl"), "--",
                 "/bin/sh", "-c", script], cwd=d)
        assert p.returncode == want, (script, p.returncode, p.stderr)


def test_run_not_found():
    """Proves a missing PROGRAM gives 'agentsight: PROGRAM: not found' and exit 127, by
    path and by PATH lookup, and a non-executable file exit 126."""
    d = tmpdir()
    for prog in (os.path.join(d, "nope"), "agentsight-no-such-program"):
        p = run([CLI, "run", "--", prog], cwd=d)
        assert p.returncode == 127, p.stderr
        assert "agentsight: %s: not found" % prog in p.stderr
        assert not SUMMARY.search(p.stderr)
    f = write(os.path.join(d, "noexec"), "#!/bin/sh\n")
    p = run([CLI, "run", "--", f], cwd=d)
    assert p.returncode == 126, p.stderr


def test_run_streams_byte_exact():
    """Proves stdin reaches PROGRAM and PROGRAM's stdout comes out byte for byte (binary
    bytes included), and its stderr bytes are all there."""
    d = tmpdir()
    blob = bytes(range(256)) * 64 + b"\r\n\x00tail-without-newline"
    bin_path = os.path.join(d, "blob.bin")
    with open(bin_path, "wb") as f:
        f.write(blob)
    script = 'cat; cat "$1"; printf "to-stderr\\n" >&2'
    stdin = b"line one\nline two\x00\xff\n"
    plain = run_bytes(["/bin/sh", "-c", script, "sh", bin_path], stdin=stdin)
    ours = run_bytes([CLI, "run", "-q", "-o", "file:" + os.path.join(d, "a.jsonl"), "--",
                      "/bin/sh", "-c", script, "sh", bin_path], stdin=stdin, cwd=d)
    assert plain.returncode == ours.returncode == 0
    assert ours.stdout == plain.stdout == stdin + blob
    assert b"to-stderr\n" in ours.stderr


def test_run_environment():
    """Proves run sets LD_PRELOAD (ours first, an existing value kept after it),
    AGENTSIGHT_CONFIG from -c (absolute) or ./agentsight.conf, and AGENTSIGHT_OUTPUT from
    -o, without parsing PROGRAM's own options."""
    d = tmpdir()
    conf = write(os.path.join(d, "my.conf"), "# no functions\n")
    libm = "/lib/x86_64-linux-gnu/libm.so.6"
    out = "file:" + os.path.join(d, "x.jsonl")
    show = 'printf "%s|%s|%s|%s\\n" "$LD_PRELOAD" "$AGENTSIGHT_CONFIG" "$AGENTSIGHT_OUTPUT" "$1"'
    p = run([CLI, "run", "-q", "-c", "my.conf", "-o", out, "--", "/bin/sh", "-c", show, "sh",
             "-q"], env={"LD_PRELOAD": libm}, cwd=d)
    assert p.returncode == 0, p.stderr
    pre, cfg, o, arg = p.stdout.strip().split("|")
    assert pre == os.path.realpath(PRELOAD) + ":" + libm
    assert cfg == os.path.realpath(conf)
    assert o == out and arg == "-q"
    # no -c: ./agentsight.conf when present
    write(os.path.join(d, "agentsight.conf"), "# no functions\n")
    p = run([CLI, "run", "-q", "-o", out, "/bin/sh", "-c", show], cwd=d)
    assert p.stdout.split("|")[1] == os.path.realpath(os.path.join(d, "agentsight.conf"))
    # a -c file that does not exist stops before running anything
    p = run([CLI, "run", "-c", "missing.conf", "--", "/bin/sh", "-c", "echo ran"], cwd=d)
    assert p.returncode == 2 and "missing.conf" in p.stderr and "ran" not in p.stdout


def test_run_summary_line():
    """Proves one summary line on stderr naming the output the interposer reported, with
    ./agentsight.conf picked up when no -c is given, and none with -q."""
    d = tmpdir()
    target = os.path.join(d, "actions.jsonl")
    write(os.path.join(d, "agentsight.conf"), "[actions]\nstrlen\n")
    argv = [CLI, "run", "-o", "file:" + target, "--", "/bin/echo", "hello"]
    p = run(argv, cwd=d)
    assert p.stdout == "hello\n"
    assert p.returncode == 0, p.stderr
    found = SUMMARY.findall(p.stderr)
    assert found == ["file:" + target], p.stderr
    p = run([CLI, "run", "-q", "-o", "file:" + target, "--", "/bin/true"], cwd=d,
            env={"TMPDIR": d})  # the stats file is made in TMPDIR
    assert p.returncode == 0 and not SUMMARY.search(p.stderr), p.stderr
    # without any config the line says why nothing was tracked
    bare = tmpdir()
    p = run([CLI, "run", "-o", "file:" + target, "--", "/bin/echo", "x"], cwd=bare)
    assert p.returncode == 0 and "nothing tracked: no config" in p.stderr, p.stderr
    # the stats file was removed after both runs (TMPDIR=d)
    p = run([CLI, "run", "-o", "file:" + target, "--", "/bin/echo", "x"], cwd=d,
            env={"TMPDIR": d})
    assert SUMMARY.search(p.stderr), p.stderr
    assert not [f for f in os.listdir(d) if f.startswith("agentsight-stats")]


FORKER = r"""
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    int sum = atoi("1") + atoi("2") + atoi("3"); /* 3 calls in the parent */
    pid_t pid = fork();
    if (pid == 0)
        exit(atoi("4") + atoi("5") == 9 ? 0 : 1); /* 2 calls in the child */
    int st = 0;
    waitpid(pid, &st, 0);
    return sum == 6 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 5 : 1;
}
"""


def test_run_summary_counts_children():
    """Proves the summary adds up the actions of PROGRAM and of its forked child (3 + 2
    calls of the one configured function), matching the lines of the JSONL file."""
    d = tmpdir()
    src = write(os.path.join(d, "forker.c"), FORKER)
    exe = os.path.join(d, "forker")
    p = run(["cc", "-O0", "-o", exe, src])  # -O0: atoi stays a real call
    assert p.returncode == 0, p.stderr
    conf = write(os.path.join(d, "forker.conf"), "[actions]\natoi\n")
    target = os.path.join(d, "actions.jsonl")
    p = run([CLI, "run", "-c", conf, "-o", "file:" + target, "--", exe], cwd=d)
    assert p.returncode == 5, p.stderr
    lines = read_jsonl(target)
    assert len(lines) == 5 and {a["action_name"] for a in lines} == {"atoi"}
    assert len({a["metadata"]["pid"] for a in lines}) == 2
    assert ("agentsight: 5 actions tracked from 1 function (0 dropped) -> file:" + target
            in p.stderr.splitlines()), p.stderr


def test_run_ctrl_c_reaches_child_only():
    """Proves SIGINT sent to the whole foreground group is handled by PROGRAM (its trap
    exits 7) while `agentsight run` survives to pass that status through."""
    d = tmpdir()
    script = 'trap "exit 7" INT; echo ready; i=0; while [ $i -lt 300 ]; do sleep 0.1; ' \
             'i=$((i+1)); done; exit 1'
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AGENTSIGHT_") and k != "LD_PRELOAD"}
    proc = subprocess.Popen([CLI, "run", "-q", "-o", "file:" + os.path.join(d, "a.jsonl"),
                             "--", "/bin/sh", "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=d, start_new_session=True)
    try:
        assert proc.stdout.readline() == b"ready\n"
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=TIMEOUT)
    assert proc.returncode == 7, proc.returncode


def test_run_usage_errors():
    """Proves missing PROGRAM, unknown options and bad sink URIs are usage errors (exit 2)
    that run nothing."""
    p = run([CLI, "run"])
    assert p.returncode == 2 and "no PROGRAM" in p.stderr
    p = run([CLI, "run", "--bogus", "/bin/true"])
    assert p.returncode == 2 and "unknown option" in p.stderr
    p = run([CLI, "run", "-o", "nosuchscheme:x", "--", "/bin/sh", "-c", "echo ran"])
    assert p.returncode == 2 and "ran" not in p.stdout
