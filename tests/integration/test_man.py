"""Integration tests of the man pages: scripts/man.py writes agentsight(1) and one page
per command from the Markdown references, agentsight.conf(5) from config/README.md and
libagentsight(3) from the comments of include/agentsight.h; `man -l` renders each without
a warning, each has the sections of its kind, every option the command's --help names is
documented in its page, the C API page names every function the header exports and its
example compiles and runs, and `make install` puts the pages under PREFIX/share/man where
`man` finds them by name."""
import os
import re

from common import BUILD, CLI, ROOT, TIMEOUT, read_jsonl, run, tmpdir

COMMANDS = ["run", "report", "symbols", "check", "send"]
SECTIONS = ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES"]
HEADER = os.path.join(ROOT, "include", "agentsight.h")


def render(path, cwd=None, env=None):
    """The page as `man` shows it on a wide terminal, with ASCII hyphens and quotes,
    after checking it renders without a troff warning on an 80-column one too."""
    for width in ("80", "200"):
        e = {"MANWIDTH": width, "LC_ALL": "C.UTF-8"}
        e.update(env or {})
        p = run(["man", "--warnings", "-l", path], env=e, cwd=cwd)
        assert p.returncode == 0, p.stderr
        assert p.stderr == "", (path, width, p.stderr)  # no troff warning
    return p.stdout.replace("\u2010", "-").replace("\u2212", "-").replace("\u2019", "'")


def headings(text):
    return re.findall(r"^(\S[^\n]*\S|\S)$", text, re.M)


def section(text, name):
    """The lines of one top-level section of a rendered page (up to the next one)."""
    m = re.search(r"^%s\n(.*?)(?=^\S)" % re.escape(name), text, re.M | re.S)
    assert m, (name, headings(text))
    return m.group(1)


def generate():
    d = tmpdir()
    p = run(["python3", os.path.join(ROOT, "scripts", "man.py"), d])
    assert p.returncode == 0, p.stderr
    return d


def exported_functions():
    """The functions agentsight.h exports, read from the header itself."""
    with open(HEADER) as f:
        return re.findall(r"AGENTSIGHT_API [^;(]*?\b(agentsight_\w+)\s*\(", f.read())


def test_pages_render_with_their_sections():
    """Proves every command page exists, renders cleanly, carries its title and the
    sections of a man page, and names the others (agentsight(1)) or agentsight(1) (the
    commands)."""
    d = generate()
    version = run([CLI, "--version"]).stdout.split()[1]
    for page in ["agentsight"] + ["agentsight-" + c for c in COMMANDS]:
        text = render(os.path.join(d, "man1", page + ".1"))
        assert text.startswith(page.upper() + "(1)"), text[:80]
        assert ("agentsight " + version) in text
        heads = headings(text)
        for s in (["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS"]
                  if page == "agentsight" else SECTIONS):
            assert s in heads, (page, s, heads)
        assert "SEE ALSO" in heads
        name = " ".join(section(text, "NAME").split())
        assert name.startswith(page.replace("-", " ") + " - "), (page, name)
    top = render(os.path.join(d, "man1", "agentsight.1"))
    for c in COMMANDS:
        assert "agentsight-%s(1)" % c in top
    assert "agentsight.conf(5)" in top and "libagentsight(3)" in top


def test_every_help_option_is_documented():
    """Proves the long options each command's --help lists all appear in its man page, so
    the help text and the reference cannot drift apart unnoticed."""
    d = generate()
    for c in COMMANDS:
        help_text = run([CLI, c, "--help"]).stdout
        opts = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", help_text))
        assert "--help" in opts and "--version" in opts, (c, opts)
        page = render(os.path.join(d, "man1", "agentsight-%s.1" % c))
        missing = [o for o in sorted(opts) if o not in page]
        assert not missing, (c, missing)


def test_conf_page_follows_config_reference():
    """Proves agentsight.conf(5) renders cleanly with every section of config/README.md
    except the `agentsight check` command (which has its own page), a whatis line, and
    every [output] key and [actions] option of the reference."""
    d = generate()
    text = render(os.path.join(d, "man5", "agentsight.conf.5"))
    assert text.startswith("AGENTSIGHT.CONF(5)"), text[:80]
    with open(os.path.join(ROOT, "config", "README.md"), encoding="utf-8") as f:
        ref = f.read()
    ref_nocode = re.sub(r"```.*?```", "", ref, flags=re.S)
    wanted = [h for h in re.findall(r"^## (.+)$", ref_nocode, re.M)
              if not h.startswith("agentsight")]
    heads = headings(text)
    for h in wanted:
        assert h in heads, (h, heads)
    assert "agentsight check" not in heads and "OPTIONS" not in heads
    assert " ".join(section(text, "NAME").split()).startswith("agentsight.conf - ")
    keys = re.findall(r"^\| `(\w+)` \|", re.split(r"\n##+ ", ref.split("## [output]")[1])[0], re.M)
    opts = re.findall(r"^\| `(\w+=)` \|", ref.split("### Options")[1].split("\n### ")[0], re.M)
    assert len(keys) >= 5 and len(opts) >= 5, (keys, opts)
    out = section(text, "[output]")
    act = text.split("\n[actions]\n")[1].split("\nRESPONSES\n")[0]  # with subsections
    for k in keys:
        assert re.search(r"\b%s: values " % k, out), k
    for o in opts:
        assert o in act, o
    see = section(text, "SEE ALSO")
    for ref_page in ("agentsight(1)", "agentsight-check(1)", "libagentsight(3)"):
        assert ref_page in see, see


def test_api_page_documents_the_header():
    """Proves libagentsight(3) renders cleanly, names every function agentsight.h exports
    (NAME, SYNOPSIS with its prototype, a subsection, a RETURN VALUE line), documents the
    option variables, and that its EXAMPLE, as man shows it, compiles against the built
    library and writes its three actions."""
    d = generate()
    text = render(os.path.join(d, "man3", "libagentsight.3"))
    assert text.startswith("LIBAGENTSIGHT(3)"), text[:80]
    for s in ("NAME", "SYNOPSIS", "DESCRIPTION", "FUNCTIONS", "TYPES", "RETURN VALUE",
              "ENVIRONMENT", "EXAMPLE", "SEE ALSO"):
        assert s in headings(text), (s, headings(text))
    funcs = exported_functions()
    assert len(funcs) >= 5, funcs
    name = " ".join(section(text, "NAME").split())
    synopsis = section(text, "SYNOPSIS")
    ret = " ".join(section(text, "RETURN VALUE").split())
    assert "#include <agentsight.h>" in synopsis and "-lagentsight" in synopsis
    for fn in funcs:
        assert fn in name, (fn, name)
        assert re.search(r"\b%s\(" % fn, synopsis), fn
        assert re.search(r"^%s\(\)$" % fn, text, re.M), fn
        assert "%s(): Returns" % fn in ret, (fn, ret)
    env = section(text, "ENVIRONMENT")
    for var in ("AGENTSIGHT_OUTPUT", "AGENTSIGHT_FLUSH_TIMEOUT_MS", "AGENTSIGHT_QUEUE_BYTES"):
        assert var in env, env
    code = "\n".join(l[14:] if l.startswith(" " * 14) else l.strip()
                     for l in section(text, "EXAMPLE").split("\n"))
    assert "agentsight_track_action(" in code
    w = tmpdir()
    src = os.path.join(w, "example.c")
    with open(src, "w", encoding="utf-8") as f:
        f.write(code)
    exe = os.path.join(w, "example")
    p = run(["cc", "-std=c11", "-Wall", "-Werror", "-I" + os.path.join(ROOT, "include"),
             "-o", exe, src, "-L" + BUILD, "-lagentsight", "-Wl,-rpath," + BUILD])
    assert p.returncode == 0, p.stderr
    out = os.path.join(w, "a.jsonl")
    p = run([exe], env={"AGENTSIGHT_OUTPUT": "file:" + out}, cwd=w)
    assert p.returncode == 0 and p.stdout.startswith("success: "), p.stdout + p.stderr
    names = sorted(a["action_name"] for a in read_jsonl(out))
    assert names == ["calculator_multiply", "database_search", "weather_lookup"], names


def test_function_pages_link_to_api_page():
    """Proves each exported function has a page of its own name (agentsight_flush(3))
    that renders as libagentsight(3), so `man agentsight_flush` works."""
    d = generate()
    for fn in exported_functions():
        path = os.path.join("man3", fn + ".3")
        text = render(path, cwd=d)
        assert text.startswith("LIBAGENTSIGHT(3)"), (fn, text[:80])


def installed_pages():
    """What `make install` must put under share/man: derived from the sources (the
    command list, the header's functions), not from man.py."""
    return sorted(["man1/agentsight.1"] + ["man1/agentsight-%s.1" % c for c in COMMANDS] +
                  ["man5/agentsight.conf.5", "man3/libagentsight.3"] +
                  ["man3/%s.3" % fn for fn in exported_functions()])


def test_make_install_installs_the_pages():
    """Proves `make install` puts every page under PREFIX/share/man/man{1,3,5}, and that
    `man` finds each by name there (section 3 through the link pages)."""
    dest = tmpdir()
    p = run(["make", "--no-print-directory", "-C", ROOT, "BUILD=" + BUILD, "PREFIX=/usr/local",
             "DESTDIR=" + dest, "install"], timeout=TIMEOUT * 10)
    assert p.returncode == 0, p.stdout + p.stderr
    mandir = os.path.join(dest, "usr", "local", "share", "man")
    pages = sorted(os.path.join(s, f) for s in os.listdir(mandir)
                   for f in os.listdir(os.path.join(mandir, s)))
    assert pages == installed_pages(), pages
    env = {"MANPATH": mandir}
    for sec, page, title in (("1", "agentsight-run", "AGENTSIGHT-RUN(1)"),
                             ("5", "agentsight.conf", "AGENTSIGHT.CONF(5)"),
                             ("3", "libagentsight", "LIBAGENTSIGHT(3)"),
                             ("3", "agentsight_track_action", "LIBAGENTSIGHT(3)")):
        p = run(["man", "--warnings", sec, page], env=dict(env, MANWIDTH="200",
                                                            LC_ALL="C.UTF-8"))
        assert p.returncode == 0 and p.stderr == "", (page, p.stderr)
        assert p.stdout.startswith(title), (page, p.stdout[:80])
