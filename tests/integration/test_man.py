"""Integration tests of the man pages: scripts/man.py writes agentsight(1) and one page
per command from the Markdown references, `man -l` renders each without a warning, each
has the man-page sections, every option the command's --help names is documented in its
page, and `make install` puts the pages under PREFIX/share/man/man1."""
import os
import re

from common import BUILD, CLI, ROOT, TIMEOUT, run, tmpdir

COMMANDS = ["run", "report", "symbols", "check", "send"]
SECTIONS = ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES"]


def render(path):
    """The page as `man` shows it on a wide terminal, with ASCII hyphens."""
    p = run(["man", "--warnings", "-l", path], env={"MANWIDTH": "200", "LC_ALL": "C.UTF-8"})
    assert p.returncode == 0, p.stderr
    assert p.stderr == "", (path, p.stderr)  # no troff warning
    return p.stdout.replace("\u2010", "-").replace("\u2212", "-")


def generate():
    d = tmpdir()
    p = run(["python3", os.path.join(ROOT, "scripts", "man.py"), d])
    assert p.returncode == 0, p.stderr
    return d


def test_pages_render_with_their_sections():
    """Proves every page exists, renders cleanly, carries its title and the sections of a
    man page, and names the others (agentsight(1)) or agentsight(1) (the commands)."""
    d = generate()
    version = run([CLI, "--version"]).stdout.split()[1]
    for page in ["agentsight"] + ["agentsight-" + c for c in COMMANDS]:
        text = render(os.path.join(d, page + ".1"))
        assert text.startswith(page.upper() + "(1)"), text[:80]
        assert ("agentsight " + version) in text
        heads = re.findall(r"^([A-Z][A-Z ]+)$", text, re.M)
        for s in (["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS"]
                  if page == "agentsight" else SECTIONS):
            assert s in heads, (page, s, heads)
        assert "SEE ALSO" in heads
        name = text.split("NAME", 1)[1].split("SYNOPSIS", 1)[0]
        assert page.replace("-", " ") in " ".join(name.split()), (page, name)
    top = render(os.path.join(d, "agentsight.1"))
    for c in COMMANDS:
        assert "agentsight-%s(1)" % c in top


def test_every_help_option_is_documented():
    """Proves the long options each command's --help lists all appear in its man page, so
    the help text and the reference cannot drift apart unnoticed."""
    d = generate()
    for c in COMMANDS:
        help_text = run([CLI, c, "--help"]).stdout
        opts = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", help_text))
        assert "--help" in opts and "--version" in opts, (c, opts)
        page = render(os.path.join(d, "agentsight-%s.1" % c))
        missing = [o for o in sorted(opts) if o not in page]
        assert not missing, (c, missing)


def test_make_install_installs_the_pages():
    """Proves `make install` puts every page under PREFIX/share/man/man1, readable by man."""
    dest = tmpdir()
    p = run(["make", "--no-print-directory", "-C", ROOT, "BUILD=" + BUILD, "PREFIX=/usr/local",
             "DESTDIR=" + dest, "install"], timeout=TIMEOUT * 10)
    assert p.returncode == 0, p.stdout + p.stderr
    man1 = os.path.join(dest, "usr", "local", "share", "man", "man1")
    pages = sorted(os.listdir(man1))
    assert pages == sorted(["agentsight.1"] + ["agentsight-%s.1" % c for c in COMMANDS])
    assert "agentsight run" in " ".join(render(os.path.join(man1, "agentsight-run.1")).split())
