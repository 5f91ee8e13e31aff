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
    # a spool of its own: what a heavy run leaves is no other test's start-up work
    got = run_preloaded(argv, config=conf, out=out, stdin=stdin,
                        env={"AGENTSIGHT_SPOOL_DIR": os.path.join(d, "spool")})
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


GETATTR_SRC = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
static void *body(void *arg) {
    (void)arg;
    pthread_attr_t at;
    size_t size = 0;
    void *addr = NULL;
    if (pthread_getattr_np(pthread_self(), &at) == 0) {
        pthread_attr_getstack(&at, &addr, &size);
        pthread_attr_destroy(&at);
    }
    free(malloc(16));
    return (void *)(size > 0 ? (void *)1 : NULL);
}
int main(void) {
    int ok = 0;
    for (int i = 0; i < 4; i++) {
        pthread_t t;
        void *r = NULL;
        pthread_create(&t, NULL, body, NULL);
        pthread_join(t, &r);
        ok += r != NULL;
    }
    printf("%d threads knew their stack\n", ok);
    return 0;
}
"""


def test_first_tracked_call_inside_pthread_getattr_np():
    """Proves a thread whose first tracked call is made inside pthread_getattr_np (free
    and realloc, called under the thread's own lock) runs on: the interposer learns the
    thread's stack without asking pthread_getattr_np again (it did, and the program hung
    on its own lock: `java -version` with free wrapped never ended). Then java itself, if
    installed, with malloc and free wrapped prints what it prints bare."""
    d = tmpdir()
    src = write(os.path.join(d, "getattr.c"), GETATTR_SRC)
    exe = os.path.join(d, "getattr")
    p = run(["cc", "-O1", "-o", exe, src, "-lpthread"])
    assert p.returncode == 0, p.stderr
    bare, got, acts = preloaded([exe], "[actions]\nfree\nrealloc\nmalloc\n")
    assert bare.stdout == "4 threads knew their stack\n", bare.stdout
    assert any(a["action_name"] == "free" for a in acts), got.stderr
    java = shutil.which("java")
    if java:
        bare, got, acts = preloaded([java, "-version"], "[actions]\nmalloc\nfree\n")
        assert got.stderr.endswith(bare.stderr) or bare.stderr in got.stderr, got.stderr
        assert acts, got.stderr
