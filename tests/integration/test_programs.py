"""The interposer on installed programs: sqlite3 (libsqlite3) and curl (libcurl). Each
run compares stdout and exit code with a bare run and counts the actions."""
import collections
import os
import re
import shutil

from common import read_jsonl, run, run_preloaded, tmpdir, write

SQL = """CREATE TABLE t(x);
INSERT INTO t VALUES(1);
INSERT INTO t VALUES(2);
INSERT INTO t VALUES(3);
SELECT x FROM t;
"""


def preloaded(argv, conf_text, stdin=None):
    d = tmpdir()
    conf = write(os.path.join(d, "p.conf"), conf_text)
    out = os.path.join(d, "actions.jsonl")
    bare = run(argv, stdin=stdin)
    got = run_preloaded(argv, config=conf, out=out, stdin=stdin)
    assert got.stdout == bare.stdout, (bare.stdout, got.stdout, got.stderr)
    assert got.returncode == bare.returncode, (bare.returncode, got.returncode, got.stderr)
    return bare, got, read_jsonl(out)


def ltrace_counts(argv, names, stdin):
    """Independent count of the calls of names (from any object) with ltrace, or None
    when ltrace is not installed."""
    if not shutil.which("ltrace"):
        return None
    r = run(["ltrace", "-e", "+".join(names)] + argv, stdin=stdin)
    c = collections.Counter()
    for line in r.stderr.splitlines():
        m = re.search(r"->(\w+)\(", line)
        if m and m.group(1) in names:
            c[m.group(1)] += 1
    return c


def test_sqlite3_prepare_and_step():
    # Proves: one action per sqlite3_prepare_v2/sqlite3_step call (the shell's and the
    # library's own calls through its PLT), the SELECT's three rows as SQLITE_ROW (100)
    # responses, every other step SQLITE_DONE (101), output unchanged.
    argv = ["sqlite3", ":memory:"]
    bare, got, actions = preloaded(argv, "[actions]\nsqlite3_prepare_v2\nsqlite3_step\n", SQL)
    assert bare.stdout == "1\n2\n3\n"
    c = collections.Counter(a["action_name"] for a in actions)
    steps = [a["response"] for a in actions if a["action_name"] == "sqlite3_step"]
    prepares = [a["response"] for a in actions if a["action_name"] == "sqlite3_prepare_v2"]
    assert set(prepares) == {"0"} and len(prepares) >= 5, prepares
    assert steps.count("100") >= 3 and set(steps) <= {"100", "101"}, steps
    # 5 statements: each ends with one SQLITE_DONE from the shell's own loop at least.
    assert steps.count("101") >= 5, steps
    oracle = ltrace_counts(argv, ["sqlite3_prepare_v2", "sqlite3_step"], SQL)
    if oracle is not None:
        assert c["sqlite3_step"] == oracle["sqlite3_step"], (c, oracle)
        assert c["sqlite3_prepare_v2"] == oracle["sqlite3_prepare_v2"], (c, oracle)
    for a in actions:
        assert a["tools_used"]["library"] == "libsqlite3.so.0"


def test_curl_file_url():
    # Proves: curl_easy_perform on a file:// URL is one action with response 0 (CURLE_OK).
    d = tmpdir()
    f = write(os.path.join(d, "hello.txt"), "hello from a file\n")
    bare, got, actions = preloaded(["curl", "-s", "file://" + f], "[actions]\ncurl_easy_perform\n")
    assert bare.stdout == "hello from a file\n"
    assert [a["action_name"] for a in actions] == ["curl_easy_perform"]
    assert actions[0]["response"] == "0"


def test_curl_refused_port():
    # Proves: a refused connection (127.0.0.1:1) is one action with response 7
    # (CURLE_COULDNT_CONNECT) and curl still exits with 7.
    bare, got, actions = preloaded(["curl", "-s", "http://127.0.0.1:1/"],
                                   "[actions]\ncurl_easy_perform\n")
    assert bare.returncode == 7 and got.returncode == 7
    assert [a["response"] for a in actions] == ["7"]


def test_python_errno_readers_see_the_callers_errno():
    """Proves wrapped functions that read errno at their entry see the caller's value:
    python3 with PyErr_SetFromErrno* wrapped (they build OSError from errno) prints the
    same FileNotFoundError as bare, and with every function of the process wrapped ('*')
    python3 starts and prints as bare (errno was 0 inside every wrapped call, so python
    aborted at start with 'OSError: [Errno 0] Error' and exit status 1)."""
    py = shutil.which("python3")
    prog = "import os\ntry:\n    open('/nonexistent/x')\nexcept OSError as e:\n    print(e)\n"
    argv = [py, "-c", prog]
    bare, got, acts = preloaded(argv, "[actions]\nPyErr_SetFromErrno*\n")
    assert "[Errno 2] No such file or directory" in bare.stdout, bare.stdout
    assert any(a["action_name"].startswith("PyErr_SetFromErrno") for a in acts), got.stderr
    bare, got, acts = preloaded([py, "-c", "print(6 * 7)"], "[actions]\n*\n")
    assert bare.stdout == "42\n" and acts, got.stderr
