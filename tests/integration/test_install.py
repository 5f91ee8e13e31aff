"""Integration tests of `make install` and `make uninstall`: the installed tree (a
versioned shared library with its links, the interposer in lib/agentsight/), its
pkg-config file, a program built from the README examples against the installed library
(shared and static), the installed `agentsight` finding the interposer through
../lib/agentsight, and uninstall removing exactly what install put."""
import os
import re
import shlex
import shutil

from common import BUILD, ROOT, TIMEOUT, read_jsonl, run, tmpdir

EXAMPLES = os.path.join(ROOT, "tests", "agents", "readme_examples.c")
# The three examples of the track_action reference, as the README shows them in C.
EXPECTED = {"calculator_multiply": 50, "weather_lookup": 800, "database_search": 200}

_installed = {}


def header_version():
    with open(os.path.join(ROOT, "include", "agentsight.h")) as f:
        return re.search(r'#define AGENTSIGHT_VERSION "([^"]+)"', f.read()).group(1)


def make(target, prefix, destdir="", *extra):
    argv = ["make", "--no-print-directory", "-C", ROOT, "BUILD=" + BUILD,
            "PREFIX=" + prefix, target] + list(extra)
    if destdir:
        argv.append("DESTDIR=" + destdir)
    p = run(argv, timeout=TIMEOUT * 10)
    assert p.returncode == 0, p.stdout + p.stderr


def install(prefix, destdir=""):
    """Runs make install once per (prefix, destdir); returns the root of the tree."""
    key = (prefix, destdir)
    if key not in _installed:
        make("install", prefix, destdir)
        _installed[key] = destdir + prefix
    return _installed[key]


def so_version():
    """The file name the shared library must have: libagentsight.so.0.MINOR.PATCH."""
    return "libagentsight.so.0." + ".".join(header_version().split(".")[1:3])


def tree(root):
    """Every file and symlink under root, as paths relative to it."""
    out = []
    for d, _, files in os.walk(root):
        out += [os.path.relpath(os.path.join(d, f), root) for f in files]
    return sorted(out)


_prefix = []


def prefix():
    """A temporary prefix holding one installation shared by the tests of this file."""
    if not _prefix:
        _prefix.append(install(os.path.join(tmpdir(), "usr")))
    return _prefix[0]


def pkgconfig(*args):
    p = run(["pkg-config"] + list(args) + ["agentsight"],
            env={"PKG_CONFIG_PATH": os.path.join(prefix(), "lib", "pkgconfig")})
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_install_tree():
    """Proves make install puts the libraries, the interposer (in lib/agentsight/, not
    among the libraries to link with), the header, the CLI and the .pc file under PREFIX,
    the shared library as libagentsight.so.0.N.M with SONAME libagentsight.so.0 and the
    .so.0 and .so links to it, and that DESTDIR stages the same tree without changing the
    prefix."""
    pre = prefix()
    lib = os.path.join(pre, "lib")
    for rel in ("lib/" + so_version(), "lib/libagentsight.a",
                "lib/agentsight/libagentsight-preload.so", "include/agentsight.h",
                "bin/agentsight", "lib/pkgconfig/agentsight.pc"):
        path = os.path.join(pre, rel)
        assert os.path.isfile(path) and not os.path.islink(path), rel
    assert not os.path.exists(os.path.join(lib, "libagentsight-preload.so"))
    for link in ("libagentsight.so.0", "libagentsight.so"):
        assert os.readlink(os.path.join(lib, link)) == so_version(), link
    p = run(["readelf", "-d", os.path.join(lib, so_version())])
    assert "Library soname: [libagentsight.so.0]" in p.stdout, p.stdout
    assert os.access(os.path.join(pre, "bin", "agentsight"), os.X_OK)
    stage = tmpdir()
    root = install("/opt/agentsight", destdir=stage)
    pc = open(os.path.join(root, "lib", "pkgconfig", "agentsight.pc")).read()
    assert "prefix=/opt/agentsight\n" in pc and stage not in pc
    # The prefix is a variable's value only, never substituted into a comment, and no
    # placeholder is left.
    assert "@" not in pc, pc
    assert not [l for l in pc.split("\n") if l.startswith("#") and "/opt/agentsight" in l]


def test_pkg_config_fields():
    """Proves the .pc file is valid for pkg-config, gives the version the installed CLI
    reports (the header's), the prefix, libdir and includedir variables, the include and
    library flags of the prefix, and the private dependencies a static link needs (the C
    library's only: libcurl and cJSON are opened at run time)."""
    pre = prefix()
    p = run(["pkg-config", "--validate", "agentsight"],
            env={"PKG_CONFIG_PATH": os.path.join(pre, "lib", "pkgconfig")})
    assert p.returncode == 0, p.stdout + p.stderr
    cli = run([os.path.join(pre, "bin", "agentsight"), "--version"]).stdout.split()
    assert pkgconfig("--modversion") == header_version() == cli[1]
    assert pkgconfig("--variable=prefix") == pre
    assert pkgconfig("--variable=libdir") == os.path.join(pre, "lib")
    assert pkgconfig("--variable=includedir") == os.path.join(pre, "include")
    assert pkgconfig("--cflags").split()[0] == "-I" + os.path.join(pre, "include")
    libs = pkgconfig("--libs").split()
    assert libs[:2] == ["-L" + os.path.join(pre, "lib"), "-lagentsight"]
    static = pkgconfig("--static", "--libs").split()
    for flag in ("-lagentsight", "-lpthread", "-ldl"):
        assert flag in static, static
    assert "-lcurl" not in static and "-lcjson" not in static, static


def build_examples(out, static):
    """Compiles readme_examples.c with the flags pkg-config gives; returns the program."""
    assert os.path.exists(EXAMPLES), "tests/agents/readme_examples.c is missing"
    flags = shlex.split(pkgconfig("--cflags") + " " +
                        pkgconfig(*(["--static", "--libs"] if static else ["--libs"])))
    if static:  # the .a by path: the linker would otherwise prefer the .so
        flags = [os.path.join(prefix(), "lib", "libagentsight.a") if f == "-lagentsight"
                 else f for f in flags]
    p = run(["cc", "-std=c11", "-o", out, EXAMPLES] + flags)
    assert p.returncode == 0, p.stderr
    return out


def check_examples_output(exe, env):
    d = tmpdir()
    target = os.path.join(d, "actions.jsonl")
    e = {"AGENTSIGHT_OUTPUT": "file:" + target}
    e.update(env)
    p = run([exe], env=e, cwd=d)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = read_jsonl(target)
    assert len(lines) == 3, lines
    got = {a["action_name"]: a["duration_ms"] for a in lines}
    assert got == EXPECTED, got
    for a in lines:
        assert a["error_msg"] is None and a["started_at"] and a["ended_at"]


def test_readme_examples_shared():
    """Proves a program built with `cc $(pkg-config --cflags --libs agentsight)` against
    the installed shared library writes the README's three actions as JSONL."""
    d = tmpdir()
    exe = build_examples(os.path.join(d, "examples"), static=False)
    p = run(["readelf", "-d", exe])
    assert "Shared library: [libagentsight.so.0]" in p.stdout, p.stdout
    check_examples_output(exe, {"LD_LIBRARY_PATH": os.path.join(prefix(), "lib")})


def test_readme_examples_static():
    """Proves the static library links with `pkg-config --static --libs` (its private
    dependencies are complete) and writes the same three actions."""
    d = tmpdir()
    exe = build_examples(os.path.join(d, "examples"), static=True)
    check_examples_output(exe, {})


def test_installed_cli_finds_preload_via_lib():
    """Proves the installed agentsight runs, reports the header's version, and finds the
    interposer in ../lib/agentsight (nothing beside the binary); a copy with no library
    nearby fails with a clear message instead of running the program."""
    pre = prefix()
    cli = os.path.join(pre, "bin", "agentsight")
    p = run([cli, "--version"])
    assert p.returncode == 0 and p.stdout.strip() == "agentsight " + header_version()
    d = tmpdir()
    show = 'printf "%s" "$LD_PRELOAD"'
    p = run([cli, "run", "-q", "-o", "file:" + os.path.join(d, "a.jsonl"), "--", "/bin/sh",
             "-c", show], cwd=d)
    assert p.returncode == 0, p.stderr
    assert p.stdout == os.path.realpath(
        os.path.join(pre, "lib", "agentsight", "libagentsight-preload.so"))
    p = run([cli, "run", "-q", "--", "/bin/true"], cwd=d)
    assert p.returncode == 0, p.stderr
    lonely = os.path.join(tmpdir(), "agentsight")
    shutil.copy(cli, lonely)
    p = run([lonely, "run", "--", "/bin/sh", "-c", "echo ran"], cwd=d)
    assert p.returncode == 2 and "libagentsight-preload.so not found" in p.stderr
    assert "ran" not in p.stdout


def test_installed_cli_finds_preload_in_multiarch_libdir():
    """Proves an installation with Debian's multiarch libdir (PREFIX/lib/TRIPLET, the
    interposer in PREFIX/lib/TRIPLET/agentsight/) or a lib64 libdir runs programs under the
    installed agentsight: it finds the interposer there (it looked in ../lib/agentsight
    only and refused to run)."""
    triplet = run(["cc", "-print-multiarch"]).stdout.strip()
    for sub in (os.path.join("lib", triplet), "lib64"):
        pre = os.path.join(tmpdir(), "usr")
        make("install", pre, "", "libdir=" + os.path.join(pre, sub))
        want = os.path.join(pre, sub, "agentsight", "libagentsight-preload.so")
        assert os.path.isfile(want), sub
        d = tmpdir()
        p = run([os.path.join(pre, "bin", "agentsight"), "run", "-q", "-o",
                 "file:" + os.path.join(d, "a.jsonl"), "--", "/bin/sh", "-c",
                 'printf "%s" "$LD_PRELOAD"'], cwd=d)
        assert p.returncode == 0, p.stderr
        assert p.stdout == os.path.realpath(want), (sub, p.stdout)


def test_uninstall_removes_what_install_put():
    """Proves make uninstall (same PREFIX and DESTDIR) removes every file and link make
    install created, the interposer's folder too, and nothing else: files of others in
    the same folders stay."""
    stage = tmpdir()
    root = install("/usr/local", destdir=stage)
    files = tree(stage)
    assert "usr/local/lib/" + so_version() in files and len(files) >= 15, files
    others = ["usr/local/lib/libother.so.1", "usr/local/share/man/man1/other.1",
              "usr/local/include/other.h", "usr/local/bin/other"]
    for rel in others:
        with open(os.path.join(stage, rel), "w") as f:
            f.write("not ours\n")
    make("uninstall", "/usr/local", stage)
    assert tree(stage) == sorted(others), tree(stage)
    assert not os.path.exists(os.path.join(root, "lib", "agentsight"))
    del _installed[("/usr/local", stage)]


def test_build_tree_links_by_soname():
    """Proves the build tree has the versioned library with its links, and the test
    programs linked with -lagentsight record libagentsight.so.0 (not the unversioned
    name) and load it from the build tree."""
    real = os.path.join(BUILD, so_version())
    assert os.path.isfile(real) and not os.path.islink(real)
    for link in ("libagentsight.so.0", "libagentsight.so"):
        assert os.readlink(os.path.join(BUILD, link)) == so_version(), link
    agents = os.path.join(BUILD, "agents")
    linked = []
    for name in sorted(os.listdir(agents)):
        path = os.path.join(agents, name)
        if not os.path.isfile(path):
            continue
        needed = re.findall(r"Shared library: \[(libagentsight[^\]]*)\]",
                            run(["readelf", "-d", path]).stdout)
        if needed:
            assert needed == ["libagentsight.so.0"], (name, needed)
            p = run(["ldd", path])
            assert "libagentsight.so.0 => " + os.path.join(BUILD, "libagentsight.so.0") \
                in p.stdout, (name, p.stdout)
            linked.append(name)
    assert "api_validate" in linked and "readme_examples" in linked, linked
