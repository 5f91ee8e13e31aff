"""Hostile environments and inputs: a setuid program is not steered by its caller's
environment, inspecting a program never runs its code, secrets in sink URLs are never
printed or written, JSON that leaves us is valid, odd or huge configs neither hang nor
flood a program."""
import json
import os
import shutil
import stat
import subprocess

from common import BUILD, CLI, ROOT, agent, read_jsonl, run, run_preloaded, tmpdir, write

NOBODY = 65534

SETUID_SRC = r"""
/* Tracks one action through the C API after printing whether AT_SECURE is set. */
#include <stdio.h>
#include <sys/auxv.h>
#include "agentsight.h"
int main(void) {
    printf("secure=%lu\n", getauxval(AT_SECURE));
    fflush(stdout);
    agentsight_action a = {.action_name = "setuid_probe"};
    agentsight_result r;
    int rc = agentsight_track_action(&a, &r);
    agentsight_flush(2000);
    agentsight_shutdown();
    printf("rc=%d\n", rc);
    return 0;
}
"""


def _as_nobody():
    """argv prefix running a command as nobody, or None (with a note) when this run may not
    switch users: only root may, and setpriv must exist."""
    if os.geteuid() != 0:
        print("    left out (needs root to make a setuid binary and run it as nobody)")
        return None
    setpriv = shutil.which("setpriv")
    if not setpriv:
        print("    left out (setpriv not found)")
        return None
    return [setpriv, "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups"]


def test_setuid_program_ignores_environment():
    """Proves a setuid-root program linked with libagentsight.a, started by nobody with
    AGENTSIGHT_OUTPUT, AGENTSIGHT_SPOOL_DIR, AGENTSIGHT_STATS_FILE, HOME and
    XDG_STATE_HOME pointing into a root-owned directory, creates nothing there nor in its
    working directory: under AT_SECURE the library reads none of them."""
    prefix = _as_nobody()
    if prefix is None:
        return
    d = tmpdir()
    os.chmod(d, 0o755)  # root-owned: nobody may not write here, root may
    src = write(os.path.join(d, "probe.c"), SETUID_SRC)
    exe = os.path.join(d, "probe")
    r = subprocess.run(["cc", "-o", exe, src, "-I" + os.path.join(ROOT, "include"),
                        os.path.join(BUILD, "libagentsight.a"), "-lcurl", "-lcjson",
                        "-lpthread", "-ldl"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    os.chmod(exe, 0o4755)
    pwn = os.path.join(d, "pwn")
    os.mkdir(pwn)
    os.chmod(pwn, 0o755)
    env = {"AGENTSIGHT_OUTPUT": "file:" + os.path.join(pwn, "out.jsonl"),
           "AGENTSIGHT_SPOOL_DIR": os.path.join(pwn, "spool"),
           "AGENTSIGHT_STATS_FILE": os.path.join(pwn, "stats"),
           "AGENTSIGHT_CRASH_SAFE": "1",
           "HOME": os.path.join(pwn, "home"),
           "XDG_STATE_HOME": os.path.join(pwn, "state")}
    r = run(prefix + [exe], env=env, cwd=pwn)
    assert r.returncode == 0, r.stderr
    if "secure=1" not in r.stdout:
        print("    left out (the setuid bit took no effect here: nosuid mount?)")
        return
    assert "rc=0" in r.stdout, r.stdout + r.stderr
    assert os.listdir(pwn) == [], os.listdir(pwn)
    # The same binary without the setuid bit does follow the environment (the test can fail).
    os.chmod(exe, 0o755)
    r = run([exe], env=env, cwd=pwn)
    assert r.returncode == 0 and "secure=0" in r.stdout, r.stdout + r.stderr
    assert [a["action_name"] for a in read_jsonl(os.path.join(pwn, "out.jsonl"))] == \
        ["setuid_probe"]


def _dead_port():
    """A 127.0.0.1 port nothing listens on (bound, then closed)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _files_holding(top, needle):
    found = []
    for dirpath, _, names in os.walk(top):
        for n in names:
            p = os.path.join(dirpath, n)
            try:
                with open(p, "rb") as f:
                    if needle.encode() in f.read():
                        found.append(p)
            except OSError:
                pass
    return found


def test_sink_url_secrets_never_shown():
    """Proves a password and a query token in an OTLP sink URL (dead port) appear neither
    in the failure warning, nor in the run summary, nor in the stats file (made 0600),
    nor the password in any file under the state directory; the program's output and
    exit status are those of a bare run."""
    d = tmpdir()
    conf = write(os.path.join(d, "c.conf"), "[actions]\nlabs\n")
    url = "otlp:http://alice:S3cretPW@127.0.0.1:%d/?token=T0kenXYZ" % _dead_port()
    argv = [agent("crash_agent"), "clean", "3"]
    bare = run(argv)
    r = run([CLI, "run", "-c", conf, "-o", url, "--"] + argv, cwd=d)
    assert r.returncode == bare.returncode and r.stdout == bare.stdout, r.stderr
    assert "alice:***@127.0.0.1" in r.stderr and "token=***" in r.stderr, r.stderr
    assert "S3cretPW" not in r.stderr and "T0kenXYZ" not in r.stderr, r.stderr
    stats = os.path.join(d, "stats")
    r = run_preloaded(argv, config=conf, env={"AGENTSIGHT_OUTPUT": url,
                                              "AGENTSIGHT_STATS_FILE": stats}, cwd=d)
    assert r.returncode == bare.returncode and r.stdout == bare.stdout, r.stderr
    assert "S3cretPW" not in r.stderr and "T0kenXYZ" not in r.stderr, r.stderr
    text = open(stats).read()
    assert json.loads(text.splitlines()[0])["output"].startswith("otlp:http://alice:***@")
    assert "S3cretPW" not in text and "T0kenXYZ" not in text, text
    assert stat.S_IMODE(os.stat(stats).st_mode) == 0o600
    state = os.environ.get("XDG_STATE_HOME")
    if state:
        assert _files_holding(state, "S3cretPW") == []


API_JSON_SRC = r"""
/* Tracks one action with a bad \u escape in tools_used and one good one; prints results. */
#include <stdio.h>
#include "agentsight.h"
int main(void) {
    agentsight_result r;
    agentsight_action bad = {.action_name = "bad", .tools_used = "{\"a\":\"\\u00zz\"}"};
    int rc = agentsight_track_action(&bad, &r);
    printf("bad rc=%d msg=%s\n", rc, r.message);
    agentsight_action good = {.action_name = "good", .tools_used = "{\"a\":\"\\u00e9\"}"};
    rc = agentsight_track_action(&good, &r);
    printf("good rc=%d\n", rc);
    agentsight_shutdown();
    return 0;
}
"""


def _cc(d, name, src, *libs):
    exe = os.path.join(d, name)
    r = subprocess.run(["cc", "-o", exe, write(exe + ".c", src),
                        "-I" + os.path.join(ROOT, "include")] + list(libs),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return exe


def test_bad_unicode_escape_refused():
    """Proves tools_used = {"a":"\\u00zz"} given to agentsight_track_action() is refused
    with a message naming the field and the escape, while a good escape is written, and
    every line of the output file parses with a strict JSON reader."""
    d = tmpdir()
    exe = _cc(d, "api_json", API_JSON_SRC, "-L" + BUILD, "-Wl,-rpath," + BUILD, "-lagentsight")
    out = os.path.join(d, "a.jsonl")
    r = run([exe], env={"AGENTSIGHT_OUTPUT": "file:" + out})
    assert r.returncode == 0, r.stderr
    assert "bad rc=-1" in r.stdout and "tools_used" in r.stdout and "\\u00zz" in r.stdout, \
        r.stdout
    assert "good rc=0" in r.stdout
    with open(out, "rb") as f:
        lines = [json.loads(line.decode("utf-8", errors="strict")) for line in f]
    assert [a["action_name"] for a in lines] == ["good"]
    assert lines[0]["tools_used"] == {"a": "\u00e9"}


def test_report_json_is_valid_utf8():
    """Proves `report --json` over input with invalid UTF-8 bytes in an action name prints
    valid UTF-8 (the bad bytes as U+FFFD, the line still counted) and counts a line with a
    bad \\u escape as a bad line instead of reading it as U+0000."""
    d = tmpdir()
    path = os.path.join(d, "in.jsonl")
    with open(path, "wb") as f:
        f.write(b'{"action_name":"ok\xff\xc0name","duration_ms":5}\n')
        f.write(b'{"action_name":"esc\\u00zz","duration_ms":5}\n')
        f.write(b'{"action_name":"plain","duration_ms":7}\n')
    p = subprocess.run([CLI, "report", "--json", path], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout.decode("utf-8", errors="strict"))
    names = sorted(r["action_name"] for r in rows)
    assert names == ["ok\ufffd\ufffdname", "plain"], names
    assert b"1 bad line" in p.stderr, p.stderr


def test_duplicate_entry_named_as_duplicate():
    """Proves an entry repeated in a config is reported as a duplicate of its first line,
    not as matching no function, and each call is still recorded once."""
    d = tmpdir()
    conf = write(os.path.join(d, "c.conf"), "[actions]\nlabs\n# again\nlabs\n")
    out = os.path.join(d, "a.jsonl")
    argv = [agent("crash_agent"), "clean", "2"]
    bare = run(argv)
    r = run_preloaded(argv, config=conf, out=out)
    assert r.returncode == bare.returncode and r.stdout == bare.stdout, r.stderr
    assert "c.conf:4:1: 'labs' duplicates line 2" in r.stderr, r.stderr
    assert "matches no function" not in r.stderr, r.stderr
    names = [a["action_name"] for a in read_jsonl(out)]
    assert names.count("labs") == 2, names


def test_huge_config_warnings_capped():
    """Proves a config of 100,000 entries that match nothing starts the program with its
    bare output and exit status and prints 20 of those warnings, then one line counting
    the rest; 100,000 unknown option lines are capped the same way."""
    d = tmpdir()
    conf = write(os.path.join(d, "big.conf"),
                 "[actions]\n" + "".join("nothing_%d\n" % i for i in range(100000)))
    argv = [agent("crash_agent"), "clean", "1"]
    bare = run(argv)
    r = run_preloaded(argv, config=conf, out=os.path.join(d, "a.jsonl"))
    assert r.returncode == bare.returncode and r.stdout == bare.stdout, r.stderr
    assert r.stderr.count("' matched no function") == 20, r.stderr[-2000:]
    assert "and 99980 more entries matched no function" in r.stderr, r.stderr[-2000:]
    assert len(r.stderr.splitlines()) < 40, r.stderr[-2000:]
    bad = write(os.path.join(d, "bad.conf"),
                "[actions]\n" + "".join("f%d bogus=1\n" % i for i in range(100000)))
    r = run_preloaded(argv, config=bad, out=os.path.join(d, "b.jsonl"))
    assert r.returncode == bare.returncode and r.stdout == bare.stdout, r.stderr
    assert len(r.stderr.splitlines()) < 40, r.stderr[-2000:]
    assert "and 99980 more messages about this config" in r.stderr, r.stderr[-2000:]


def test_config_fifo_device_directory_refused():
    """Proves AGENTSIGHT_CONFIG naming a FIFO (with no writer), a directory or a character
    device gets one clear error and the program runs as it would without us, at once (a
    FIFO used to block the program before main: the run's timeout would fail the test)."""
    d = tmpdir()
    fifo = os.path.join(d, "fifo.conf")
    os.mkfifo(fifo)
    argv = ["/bin/echo", "hello"]
    bare = run(argv)
    for path, kind in ((fifo, "a FIFO"), (d, "a directory"), ("/dev/zero", "a character device")):
        r = run_preloaded(argv, config=path, out=os.path.join(d, "a.jsonl"), timeout=20)
        assert r.returncode == bare.returncode and r.stdout == bare.stdout, r.stderr
        assert "%s: cannot read: not a regular file (%s)" % (path, kind) in r.stderr, r.stderr
    r = run([CLI, "check", fifo], timeout=20)
    assert r.returncode == 1 and "not a regular file (a FIFO)" in r.stderr, r.stderr


EVIL_SRC = r"""
/* A program interpreter (no libc: it runs before any) that leaves a mark when run. */
static long sys3(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}
void _start(void) {
    static const char mark[] = MARK;
    long fd = sys3(2, (long)mark, 0101, 0644); /* open(O_WRONLY | O_CREAT) */
    if (fd >= 0)
        sys3(3, fd, 0, 0);
    sys3(60, 0, 0, 0); /* exit(0) */
    for (;;)
        ;
}
"""

DEP_LIB_SRC = "int %s(int x) { return x + 1; }\n"

DEP_PROG_SRC = r"""
int hx_lib(int), hx_plat(int), hx_llp(int);
int main(void) { return hx_lib(0) + hx_plat(0) + hx_llp(0) == 3 ? 0 : 1; }
"""


def _ldd_set(prog, env=None):
    """Real paths of the objects ldd lists for prog (the vdso left out)."""
    r = run(["ldd", prog], env=env)
    assert r.returncode == 0, r.stderr
    found = set()
    for line in r.stdout.splitlines():
        line = line.strip()
        target = line.split("=>", 1)[1].strip() if "=>" in line else line
        target = target.split(" (")[0]
        if target.startswith("/"):
            found.add(os.path.realpath(target))
    return found


def _deps_set(prog, env=None):
    """Real paths of the objects `symbols --deps --json` lists for prog, prog left out."""
    r = run([CLI, "symbols", "--deps", "--json", prog], env=env)
    assert r.returncode == 0, r.stderr
    got = {os.path.realpath(x["path"]) for x in json.loads(r.stdout)}
    got.discard(os.path.realpath(prog))
    return got


def test_deps_found_like_the_linker_without_running_anything():
    """Proves `symbols --deps` lists the libraries ldd lists for real programs and for one
    whose libraries are found through $ORIGIN/$LIB and $ORIGIN/$PLATFORM in its RUNPATH and
    through LD_LIBRARY_PATH; and that for a program whose PT_INTERP is a program leaving
    a mark, neither `symbols --deps` nor `check` runs it (the same program run directly
    does leave the mark, so the test can see it) while they still list its libraries."""
    d = tmpdir()
    os.makedirs(os.path.join(d, "sub", "lib", "x86_64-linux-gnu"))
    # $PLATFORM is the kernel's AT_PLATFORM unless the C library replaces it by the CPU's
    # ("haswell", "xeon_phi" on Intel CPUs): a copy in each, the loader takes one of them.
    plats = sorted({os.uname().machine, "haswell", "xeon_phi"})
    os.makedirs(os.path.join(d, "llp"))
    for sub, name in ([("sub/lib/x86_64-linux-gnu", "hx_lib"), ("llp", "hx_llp")] +
                      [("plat/" + p, "hx_plat") for p in plats]):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
        src = write(os.path.join(d, name + ".c"), DEP_LIB_SRC % name)
        r = subprocess.run(["cc", "-shared", "-fPIC", "-o",
                            os.path.join(d, sub, "lib%s.so" % name), src],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    prog_src = write(os.path.join(d, "prog.c"), DEP_PROG_SRC)
    prog = os.path.join(d, "prog")
    libs = ["-L" + os.path.join(d, "sub/lib/x86_64-linux-gnu"), "-lhx_lib",
            "-L" + os.path.join(d, "plat", plats[0]), "-lhx_plat", "-L" + os.path.join(d, "llp"),
            "-lhx_llp", "-Wl,--enable-new-dtags",
            "-Wl,-rpath,$ORIGIN/sub/$LIB:$ORIGIN/plat/$PLATFORM"]
    r = subprocess.run(["cc", "-o", prog, prog_src] + libs, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    env = {"LD_LIBRARY_PATH": os.path.join(d, "llp")}
    want = _ldd_set(prog, env)
    assert len(want) >= 5, want  # libc, the loader and the three libraries
    assert _deps_set(prog, env) == want
    for p in ("/bin/bash", shutil.which("python3"), shutil.which("curl"), agent("hook_agent"),
              agent("fix_agent"), agent("hookable_agent")):
        if p:
            assert _deps_set(p) == _ldd_set(p), p

    mark = os.path.join(d, "MARK")
    evil_src = write(os.path.join(d, "evil.c"), EVIL_SRC)
    evil = os.path.join(d, "evil")
    r = subprocess.run(["cc", "-nostdlib", "-static-pie", "-fPIE", "-fno-stack-protector",
                        "-DMARK=\"%s\"" % mark, "-o", evil, evil_src],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    bad = os.path.join(d, "bad")
    r = subprocess.run(["cc", "-o", bad, prog_src, "-Wl,--dynamic-linker=" + evil] + libs,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    run([bad], env=env)
    assert os.path.exists(mark), "the interpreter did not run: the test proves nothing"
    os.unlink(mark)
    got = _deps_set(bad, env)
    assert not os.path.exists(mark)
    # its own interpreter is listed (read as an object, never run), then what ldd lists
    # for the same program with the system's interpreter
    assert got == want | {os.path.realpath(evil)}, (got, want)
    conf = write(os.path.join(d, "c.conf"), "[actions]\nhx_lib\n")
    r = run([CLI, "check", conf, bad], env=env)
    assert not os.path.exists(mark)
    assert r.returncode == 0 and "libhx_lib.so" in r.stdout, r.stdout + r.stderr


def test_api_key_never_shown():
    """Proves the API key given for the agentsight sink (endpoint on a dead port, with a
    password in its URL) appears neither on stderr nor in the stats file nor in any file
    under the state directory, and the password neither."""
    d = tmpdir()
    conf = write(os.path.join(d, "c.conf"), "[actions]\nlabs\n")
    key = "ags_" + "0123456789abcdef" * 2 + "_abc123"
    stats = os.path.join(d, "stats")
    argv = [agent("crash_agent"), "clean", "2"]
    bare = run(argv)
    r = run_preloaded(argv, config=conf, env={
        "AGENTSIGHT_OUTPUT": "agentsight", "AGENTSIGHT_API_KEY": key,
        "AGENTSIGHT_API_ENDPOINT": "http://bob:Pa55word@127.0.0.1:%d" % _dead_port(),
        "AGENTSIGHT_STATS_FILE": stats}, cwd=d)
    assert r.returncode == bare.returncode and r.stdout == bare.stdout, r.stderr
    state = os.environ.get("XDG_STATE_HOME")
    if state:  # the actions were spooled there: the secrets had a chance to be written
        assert _files_holding(state, "labs"), "nothing spooled: the test proves nothing"
    for secret in (key, "Pa55word"):
        assert secret not in r.stderr, r.stderr
        assert secret not in open(stats).read()
        if state:
            assert _files_holding(state, secret) == [], secret
