"""Start-up costs a process only what it uses (issue 11, item 3): the preload object needs
the C library alone at load time; libcurl, libdw/libelf, capstone and cJSON are loaded on
demand, only by the processes whose sinks or entries need them; a process that calls no
tracked function starts no thread and creates no file; a tree of real processes (bash with
20 children, make, python3) behaves exactly as without the interposer."""
import json
import os
import re
import shutil
import sys

from common import CLI, PRELOAD, agent, read_jsonl, run, run_preloaded, tmpdir, write
from test_delivery import KEY, Emulator, received

ON_DEMAND = ["libcurl", "libelf", "libdw", "libcapstone", "libcjson"]

# The child's report, printed as one JSON line: threads of the process, the on-demand
# libraries mapped in it, the files under the state directory, before and after one call
# of a tracked function (getppid), so each "before" figure is shown to change when the
# process does track something.
PROBE = r"""
import json, os, sys
def libs():
    with open("/proc/self/maps") as f:
        text = f.read()
    return sorted({n for n in %(names)r if "/" + n in text})
def files(top):
    out = []
    for d, _, fs in os.walk(top):
        out += [os.path.join(d, f) for f in fs]
    return sorted(out)
state, output = sys.argv[1], sys.argv[2]
before = {"threads": len(os.listdir("/proc/self/task")), "libs": libs(),
          "files": files(state), "output": os.path.exists(output)}
if len(sys.argv) > 3:
    os.getppid()
after = {"threads": len(os.listdir("/proc/self/task")), "libs": libs()}
print(json.dumps({"before": before, "after": after}))
""" % {"names": ON_DEMAND}


def probe(d, config_text, call, env=None):
    """Runs the probe in python3 under the interposer (config_text, state directory
    d/state, output d/actions.jsonl, stats file d/stats). Returns (report, process)."""
    conf = write(os.path.join(d, "agent.conf"), config_text)
    state = os.path.join(d, "state")
    out = os.path.join(d, "actions.jsonl")
    stats = write(os.path.join(d, "stats"), "")
    script = write(os.path.join(d, "probe.py"), PROBE)
    argv = [sys.executable, script, state, out] + (["call"] if call else [])
    e = {"AGENTSIGHT_SPOOL_DIR": state, "XDG_STATE_HOME": state, "AGENTSIGHT_STATS_FILE": stats}
    e.update(env or {})
    r = run_preloaded(argv, config=conf, env=e)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r


def hooked(d):
    """The largest "hooked" count of the stats lines the probe's process wrote."""
    with open(os.path.join(d, "stats")) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    assert lines, "the interposer wrote no stats line: was it active?"
    return max(x["hooked"] for x in lines)


def test_preload_object_needs_only_the_c_library():
    """Proves: ldd of the preload object lists the C library, the loader and the vdso and
    nothing else (no libcurl, libelf, libdw, capstone, cJSON, not even libpthread)."""
    r = run(["ldd", PRELOAD])
    assert r.returncode == 0, r.stderr
    names = [line.split()[0] for line in r.stdout.splitlines() if line.strip()]
    assert names, r.stdout
    for n in names:
        assert re.match(r"^(linux-vdso\.so\.1|libc\.so\.6|/.*ld-linux-x86-64\.so\.2)$", n), \
            r.stdout


def test_file_sink_and_exported_entries_load_no_library():
    """Proves: a process tracking an exported function (hook=got: the GOT path alone) into
    a file sink records its call while none of libcurl, libelf, libdw, capstone or cJSON
    is mapped in it, before or after the call (/proc/self/maps)."""
    d = tmpdir()
    config = ("[output]\nsink = file:%s\n[actions]\nint getppid(void) hook=got\n"
              % os.path.join(d, "actions.jsonl"))
    report, _ = probe(d, config, call=True)
    assert report["before"]["libs"] == [], report
    assert report["after"]["libs"] == [], report
    acts = read_jsonl(os.path.join(d, "actions.jsonl"))
    assert [a["action_name"] for a in acts] == ["getppid"], acts


def test_no_tracked_call_no_thread_no_file():
    """Proves: with hooks in place (stats say so) but no tracked call yet, the process has
    one thread, no output file and nothing under its state directory (no ring, no spool);
    its first tracked call then starts the exporter thread and the output gets the action,
    so the "before" figures are not vacuous. A process that never calls one leaves no file
    at all."""
    d = tmpdir()
    out = os.path.join(d, "actions.jsonl")
    config = ("[output]\nsink = file:%s\n[actions]\nint getppid(void) hook=got\n"
              "agentsight_test_function_nobody_has\n" % out)
    report, _ = probe(d, config, call=True)
    assert hooked(d) >= 1
    assert report["before"] == {"threads": 1, "libs": [], "files": [], "output": False}, report
    assert report["after"]["threads"] == 2, report
    assert [a["action_name"] for a in read_jsonl(out)] == ["getppid"]

    d2 = tmpdir()
    out2 = os.path.join(d2, "actions.jsonl")
    report, _ = probe(d2, config.replace(out, out2), call=False)
    assert hooked(d2) >= 1
    assert report["after"]["threads"] == 1, report
    assert not os.path.exists(out2)
    state = os.path.join(d2, "state")
    left = [os.path.join(p, f) for p, _, fs in os.walk(state) for f in fs]
    assert left == [], left


def test_http_sink_loads_libcurl_on_demand_and_delivers():
    """Proves: with the agentsight sink (the API emulator on 127.0.0.1) libcurl is not
    mapped before the first tracked call and is after it, and the action reaches the
    API."""
    d = tmpdir()
    store = os.path.join(d, "store.jsonl")
    emu = Emulator(store)
    try:
        config = "[output]\nsink = agentsight\n[actions]\nint getppid(void) hook=got\n"
        env = {"AGENTSIGHT_API_KEY": KEY, "AGENTSIGHT_API_ENDPOINT": emu.endpoint}
        report, r = probe(d, config, call=True, env=env)
        assert "libcurl" not in report["before"]["libs"], report
        assert "libcurl" in report["after"]["libs"], report
        names = [a["action_name"] for a in received(store)]
        if names != ["getppid"]:  # not delivered live: the spool must hold it
            spool_env = dict(env, AGENTSIGHT_SPOOL_DIR=os.path.join(d, "state"))
            s = run([CLI, "send", "--timeout", "60000"], env=spool_env, timeout=120)
            assert s.returncode == 0, s.stdout + s.stderr
            names = [a["action_name"] for a in received(store)]
        assert names == ["getppid"], (names, r.stderr)
    finally:
        emu.stop()


def test_dwarf_and_entry_patch_work_with_libraries_on_demand():
    """Proves: a bare name in a -g library still gets its DWARF prototype (libdw loaded on
    demand: parameter names in tools_used) and a static function of a PIE is still
    entry-patched (capstone loaded on demand), each with the program's own output."""
    d = tmpdir()
    out = os.path.join(d, "dwarf.jsonl")
    conf = write(os.path.join(d, "dwarf.conf"), "[actions]\nmultiply\n")
    bare = run([agent("typed_agent")])
    got = run_preloaded([agent("typed_agent")], config=conf, out=out)
    assert (got.stdout, got.returncode) == (bare.stdout, bare.returncode), got.stderr
    acts = [a for a in read_jsonl(out) if a["action_name"] == "multiply"]
    assert acts, got.stderr
    params = json.dumps(acts[0]["tools_used"])
    assert '"a"' in params and '"b"' in params, acts[0]

    out = os.path.join(d, "entry.jsonl")
    conf = write(os.path.join(d, "entry.conf"), "[actions]\nfact\n")
    bare = run([agent("internal_agent"), "10"])
    got = run_preloaded([agent("internal_agent"), "10"], config=conf, out=out)
    assert (got.stdout, got.returncode) == (bare.stdout, bare.returncode), got.stderr
    assert any(a["action_name"] == "fact" for a in read_jsonl(out)), got.stderr


MAKEFILE = """all: one two three
\t@echo done
one two three:
\t@echo $@; sh -c 'exit 0'
"""


def test_process_tree_same_output_and_status():
    """Proves: under `agentsight run` with a config naming a function none of them has and
    a file sink, bash starting 20 children, make running recipes through sh, and python3
    print exactly what they print bare and end with the same status; none of them tracked
    anything, so no output file was created."""
    d = tmpdir()
    out = os.path.join(d, "actions.jsonl")
    conf = write(os.path.join(d, "agent.conf"),
                 "[output]\nsink = file:%s\n[actions]\nagentsight_test_function_nobody_has\n"
                 % out)
    write(os.path.join(d, "Makefile"), MAKEFILE)
    programs = [
        ["bash", "-c", "for i in $(seq 20); do /bin/echo child $i; done; exit 7"],
        [shutil.which("make") or "make", "-s", "-C", d],
        [sys.executable, "-c", "import subprocess; print(sum(range(10)));"
         "print(subprocess.run(['/bin/echo', 'sub'], capture_output=True).stdout)"],
    ]
    env = {"AGENTSIGHT_SPOOL_DIR": os.path.join(d, "state"),
           "XDG_STATE_HOME": os.path.join(d, "state")}
    for argv in programs:
        bare = run(argv)
        got = run([CLI, "run", "-q", "-c", conf, "--"] + argv, env=env)
        assert got.stdout == bare.stdout, (argv, bare.stdout, got.stdout, got.stderr)
        assert got.returncode == bare.returncode, (argv, got.returncode, got.stderr)
    assert not os.path.exists(out)


def test_run_reads_local_symbols_once_and_still_finds_them():
    """Proves: under `agentsight run`, where the processes share which files held no local
    function an entry selects (read once per run), a program whose own static function
    the entry names is still patched in every process of the tree: two runs of
    internal_agent in one bash both record `fact` (two process ids), with the output and
    status of the bare run."""
    d = tmpdir()
    out = os.path.join(d, "actions.jsonl")
    conf = write(os.path.join(d, "agent.conf"),
                 "[output]\nsink = file:%s\n[actions]\nfact\n" % out)
    prog = agent("internal_agent")
    script = "%s 10 >/dev/null; %s 10; echo status $?" % (prog, prog)
    bare = run(["bash", "-c", script])
    env = {"AGENTSIGHT_SPOOL_DIR": os.path.join(d, "state"), "TMPDIR": d}
    got = run([CLI, "run", "-q", "-c", conf, "--", "bash", "-c", script], env=env)
    assert got.stdout == bare.stdout, (bare.stdout, got.stdout, got.stderr)
    assert got.returncode == bare.returncode, got.stderr
    facts = [a for a in read_jsonl(out) if a["action_name"] == "fact"]
    pids = {a["metadata"]["pid"] for a in facts}
    assert len(pids) == 2, (pids, got.stderr)


def test_vfork_child_first_tracked_call_starts_nothing():
    """Proves: when the first tracked call of a process happens in a vfork child (execl
    between vfork and exec, 200 times), the child, which shares the parent's memory,
    starts no exporter and opens no sink (no output file appears), and the program ends
    as bare. (Its heap figure is not compared: the thunk's own per-thread state in a vfork
    child is another matter than start-up.)"""
    d = tmpdir()
    out = os.path.join(d, "actions.jsonl")
    conf = write(os.path.join(d, "agent.conf"),
                 "[output]\nsink = file:%s\n[actions]\n"
                 "int execl(const char *path, const char *arg) hook=got capture=none\n" % out)
    prog = agent("review_agent")
    bare = run([prog, "vfork"])
    env = {"AGENTSIGHT_SPOOL_DIR": os.path.join(d, "state")}
    got = run_preloaded([prog, "vfork"], config=conf, env=env, timeout=120)
    assert got.returncode == bare.returncode == 0, got.stderr
    assert got.stdout.startswith("heap grew by "), got.stdout
    assert not os.path.exists(out), read_jsonl(out)


# Loads the typed tools library (built -g) with ctypes, says whether libdw got mapped by
# then (the interposer reads DWARF when it hooks a library) and calls multiply once.
DWARF_PROBE = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
with open("/proc/self/maps") as f:
    mapped = "/libdw" in f.read()
print("libdw" if mapped else "no-libdw", lib.multiply(6, 7))
"""


def test_dwarf_prototypes_read_once_not_per_process():
    """Proves: a bare name whose prototype comes from DWARF (multiply, in a -g library a
    python3 process dlopens) costs the DWARF read (libdw loaded, the debug information
    decompressed) to the first process only: it leaves the prototype in the cache
    (AGENTSIGHT_CACHE_DIR), and the next processes of the tree, and of a later run, find
    it there and never load libdw; every process records the same typed action (parameter
    names a and b, response 42) and prints what it prints bare. With the cache off, every
    process reads DWARF again (so the figures above are not vacuous)."""
    d = tmpdir()
    out = os.path.join(d, "actions.jsonl")
    conf = write(os.path.join(d, "agent.conf"),
                 "[output]\nsink = file:%s\n[actions]\nmultiply\n" % out)
    script = write(os.path.join(d, "probe.py"), DWARF_PROBE)
    lib = os.path.join(os.path.dirname(agent("typed_agent")), "libtyped_tools.so")
    one = "%s %s %s" % (sys.executable, script, lib)
    tree = "%s; %s; %s" % (one, one, one)
    bare = run(["sh", "-c", one])
    assert bare.stdout == "no-libdw 42\n", bare.stdout + bare.stderr
    env = {"AGENTSIGHT_SPOOL_DIR": os.path.join(d, "state"),
           "AGENTSIGHT_CACHE_DIR": os.path.join(d, "cache")}
    got = run([CLI, "run", "-q", "-c", conf, "--", "sh", "-c", tree], env=env)
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines() == ["libdw 42", "no-libdw 42", "no-libdw 42"], got.stdout
    again = run([CLI, "run", "-q", "-c", conf, "--", "sh", "-c", one], env=env)
    assert again.stdout == "no-libdw 42\n", again.stdout + again.stderr
    acts = [a for a in read_jsonl(out) if a["action_name"] == "multiply"]
    assert len(acts) == 4, acts
    shapes = {(json.dumps(a["tools_used"], sort_keys=True), json.dumps(a["response"]))
              for a in acts}
    assert len(shapes) == 1, shapes
    params = json.dumps(acts[0]["tools_used"])
    assert '"a"' in params and '"b"' in params and "42" in json.dumps(acts[0]["response"]), \
        acts[0]
    off = dict(env, AGENTSIGHT_CACHE_DIR="off")
    cold = run([CLI, "run", "-q", "-c", conf, "--", "sh", "-c", "%s; %s" % (one, one)], env=off)
    assert cold.stdout.splitlines() == ["libdw 42", "libdw 42"], cold.stdout + cold.stderr


def test_local_symbols_read_once_without_run():
    """Proves: under plain LD_PRELOAD (no `agentsight run` sharing a file), a process that
    found no local function an entry selects in an object leaves that answer in the cache
    (AGENTSIGHT_CACHE_DIR/symbols): the next process opens no debug file of libc (strace
    shows it; checked when libc's debug package is installed), while a program whose own
    static function the entry names (fact) is still patched in every process, with the
    output and status of the bare run."""
    d = tmpdir()
    out = os.path.join(d, "actions.jsonl")
    conf = write(os.path.join(d, "agent.conf"),
                 "[output]\nsink = file:%s\n[actions]\nfact\n"
                 "agentsight_test_function_nobody_has\n" % out)
    env = {"AGENTSIGHT_SPOOL_DIR": os.path.join(d, "state"),
           "AGENTSIGHT_CACHE_DIR": os.path.join(d, "cache")}
    prog = [agent("internal_agent"), "10"]
    bare = run(prog)
    for _ in range(2):
        got = run_preloaded(prog, config=conf, env=env)
        assert (got.stdout, got.returncode) == (bare.stdout, bare.returncode), got.stderr
    with open(os.path.join(d, "cache", "symbols")) as f:
        lines = f.read().splitlines()
    assert lines and all(len(x.split()) == 6 for x in lines), lines
    facts = [a for a in read_jsonl(out) if a["action_name"] == "fact"]
    assert len({a["metadata"]["pid"] for a in facts}) == 2, facts
    strace = shutil.which("strace")
    debug = any(x.split()[5] != "-" for x in lines)  # some object had a debug file
    if strace and debug:
        trace = os.path.join(d, "trace")
        got = run_preloaded([strace, "-f", "-o", trace, "-e", "trace=openat,open"] + prog,
                            config=conf, env=env)
        assert got.returncode == bare.returncode, got.stderr
        with open(trace) as f:
            opened = [x for x in f if "/usr/lib/debug/" in x]
        assert opened == [], opened


def _python3_shim():
    """A python3 on PATH that is a script (a pyenv shim: bash exporting variables and
    running command substitutions before it execs python3), else this python3."""
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = os.path.join(d, "python3")
        try:
            with open(p, "rb") as f:
                if f.read(2) == b"#!":
                    return p
        except OSError:
            continue
    return sys.executable


def test_settings_read_from_the_environment_the_process_started_with():
    """Proves: the interposer reads its settings from the environment as the process image
    started, never from environ at the moment of a tracked call. bash rebuilds its export
    array with realloc and frees the old one before it points environ at the new one; a
    fork child of bash (command substitution) whose first tracked call is that realloc
    started the pipeline inside it, read environ and died (SIGSEGV, as through a pyenv
    shim). With realloc tracked, bash exporting 300 variables and running `env` in 20
    command substitutions prints what it prints bare, exits as bare, and records realloc
    calls; so does python3 as found on PATH (a pyenv shim here)."""
    d = tmpdir()
    out = os.path.join(d, "actions.jsonl")
    conf = write(os.path.join(d, "agent.conf"),
                 "[output]\nsink = file:%s\n[actions]\nrealloc\n" % out)
    script = ("for i in $(seq 300); do export V$i=$i; done; "
              "for j in $(seq 20); do x=$(env | grep -c '^V'); export W$j=$x; echo $x; done")
    env = {"AGENTSIGHT_SPOOL_DIR": os.path.join(d, "state")}
    # python3 as found on PATH: where it is a pyenv shim (bash scripts exporting and
    # running command substitutions), the old code died here every time.
    for argv in (["bash", "-c", script], [_python3_shim(), "-c", "print(1 + 2)"]):
        bare = run(argv)
        got = run([CLI, "run", "-q", "-c", conf, "--"] + argv, env=env, timeout=120)
        assert (got.stdout, got.returncode) == (bare.stdout, bare.returncode), \
            (argv, got.returncode, got.stderr)
        assert got.stderr == "", got.stderr
    assert any(a["action_name"] == "realloc" for a in read_jsonl(out))
