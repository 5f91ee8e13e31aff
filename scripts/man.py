#!/usr/bin/env python3
"""Generates the man pages of the `agentsight` command from its Markdown references, so
they are written once: agentsight(1) and agentsight-COMMAND(1) from the `## agentsight
...` sections of preload/cli/README.md and config/README.md (`agentsight check`).

Each section's `### NAME`, `### SYNOPSIS`, ... become the page's sections; tables become
lists (man tables do not wrap), links keep their text; go-md2man (Debian package
go-md2man) writes the roff. Usage: man.py OUTDIR [GO_MD2MAN]"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = [os.path.join(ROOT, "preload", "cli", "README.md"),
           os.path.join(ROOT, "config", "README.md")]
HEADING = re.compile(r"^## (agentsight(?: [a-z]+)?)\s*$")


def version():
    with open(os.path.join(ROOT, "include", "agentsight.h")) as f:
        return re.search(r'#define AGENTSIGHT_VERSION "([^"]+)"', f.read()).group(1)


def sections():
    """Yields (command, lines) for every `## agentsight[ CMD]` section: its lines up to the
    next `## ` heading or `---` rule."""
    for path in SOURCES:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        cmd, body = None, []
        for line in lines + ["## end"]:
            m = HEADING.match(line)
            if cmd and (line.startswith("## ") or line.strip() == "---"):
                yield cmd, body
                cmd, body = None, []
            if m:
                cmd = m.group(1)
            elif cmd:
                body.append(line)


def cells(row):
    return [c.strip() for c in row.strip().strip("|").split("|")]


def to_man_markdown(lines):
    """Rewrites a section for go-md2man: `### X` to `# X`, tables to lists, links to
    their text."""
    out, in_code, i = [], False, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            in_code = not in_code
            out.append("```")
            i += 1
            continue
        if in_code:
            out.append(line)
            i += 1
            continue
        if line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|[-| :]+\|$",
                                                                       lines[i + 1].strip()):
            i += 2  # the header row and the separator
            out.append("")
            while i < len(lines) and lines[i].startswith("|"):
                c = cells(lines[i])
                out.append("- " + c[0] + (": " + " ".join(c[1:]) if len(c) > 1 else ""))
                i += 1
            out.append("")
            continue
        if re.match(r"^(\d+\.|-) ", line) and out and out[-1].strip() and \
                not re.match(r"^(\d+\.|-) ", out[-1]):
            out.append("")  # a list right after a paragraph line: Markdown needs a blank
        line = re.sub(r"^### ", "# ", line)
        line = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", line)
        out.append(line)
        i += 1
    return "\n".join(out).strip() + "\n"


def escape_literal_dots(roff):
    """go-md2man leaves a code line starting with '.' or "'" (such as "...") as it is,
    which roff would read as a request: such lines inside .nf/.fi get a leading \\&."""
    out, literal = [], False
    for line in roff.split("\n"):
        if line == ".nf":
            literal = True
        elif line == ".fi":
            literal = False
        elif literal and line[:1] in (".", "'"):
            line = "\\&" + line
        out.append(line)
    return "\n".join(out)


def main():
    outdir = sys.argv[1]
    tool = sys.argv[2] if len(sys.argv) > 2 else "go-md2man"
    os.makedirs(outdir, exist_ok=True)
    ver = version()
    done = []
    for cmd, body in sections():
        page = cmd.replace(" ", "-")
        text = '%% %s 1 "" "agentsight %s" "agentsight manual"\n\n' % (page.upper(), ver)
        text += to_man_markdown(body)
        if page != "agentsight":
            text += "\n# SEE ALSO\nagentsight(1)\n"
        else:
            subs = [c.replace(" ", "-") + "(1)" for c, _ in sections() if c != "agentsight"]
            text += "\n# SEE ALSO\n" + ", ".join(subs) + "\n"
        roff = subprocess.run([tool], input=text, capture_output=True, text=True, check=True)
        with open(os.path.join(outdir, page + ".1"), "w", encoding="utf-8") as f:
            f.write(escape_literal_dots(roff.stdout))
        done.append(page + ".1")
    if not done:
        sys.exit("man.py: no '## agentsight' section found")
    print("man.py: " + " ".join(done))


if __name__ == "__main__":
    main()
