#!/usr/bin/env python3
"""Generates the man pages from the references they document, so each text is written
once; go-md2man (Debian package go-md2man) writes the roff.

- agentsight(1) and agentsight-COMMAND(1): the `## agentsight ...` sections of
  preload/cli/README.md and config/README.md (`agentsight check`); each section's
  `### NAME`, `### SYNOPSIS`, ... become the page's sections.
- agentsight.conf(5): every other `## ` section of config/README.md.
- libagentsight(3): the comments of include/agentsight.h (the file's opening comment,
  each type's and each function's), with the README's C example (the block between the
  readme-example markers, compiled by the tests); agentsight_FUNCTION(3) pages are
  `.so` links to it.

Tables become lists (man tables do not wrap), links keep their text.
Usage: man.py OUTDIR [GO_MD2MAN]  writes OUTDIR/man1, man3, man5
       man.py --list              prints the pages (man1/agentsight.1 ...), one a line"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI_README = os.path.join(ROOT, "preload", "cli", "README.md")
CONF_README = os.path.join(ROOT, "config", "README.md")
HEADER = os.path.join(ROOT, "include", "agentsight.h")
README = os.path.join(ROOT, "README.md")
HEADING = re.compile(r"^## (agentsight(?: [a-z]+)?)\s*$")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def version():
    return re.search(r'#define AGENTSIGHT_VERSION "([^"]+)"', read(HEADER)).group(1)


def split_sections(path):
    """Yields (heading, lines) for every `## ` section of a Markdown file: its lines up
    to the next `## ` heading or `---` rule (lines inside code blocks are never
    headings)."""
    head, body, in_code = None, [], False
    for line in read(path).split("\n") + ["## end"]:
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and (line.startswith("## ") or line.strip() == "---"):
            if head:
                yield head, body
            head, body = (line[3:].strip() if line.startswith("## ") else None), []
        elif head:
            body.append(line)


def command_sections():
    """(command, lines) for every `## agentsight[ CMD]` section, in file order."""
    for path in (CLI_README, CONF_README):
        for head, body in split_sections(path):
            if HEADING.match("## " + head):
                yield head, body


def cells(row):
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def to_man_markdown(lines, shift):
    """Rewrites Markdown for go-md2man: headings raised by `shift` levels (`### X` to
    `# X` for shift 2), tables to lists, links to their text."""
    out, in_code, i = [], False, 0
    sep = re.compile(r"^\|[-| :]+\|$")
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
        if line.startswith("|") and i + 1 < len(lines) and sep.match(lines[i + 1].strip()):
            head = cells(line)
            i += 2  # the header row and the separator
            out.append("")
            while i < len(lines) and lines[i].startswith("|"):
                c = cells(lines[i])
                if len(c) <= 2:  # "name: meaning"
                    item = c[0] + (": " + c[1] if len(c) > 1 else "")
                else:  # "name: column value; column value; ..."
                    item = c[0] + ": " + "; ".join(
                        "%s %s" % (h, v) for h, v in zip(head[1:], c[1:])
                        if v not in ("", "-", "\u2014"))
                out.append("- " + item.replace("\\|", "|"))
                i += 1
            out.append("")
            continue
        if re.match(r"^(\d+\.|-) ", line) and out and out[-1].strip() and \
                not re.match(r"^(\d+\.|-) ", out[-1]) and not out[-1].startswith("  "):
            out.append("")  # a list right after a paragraph line: Markdown needs a blank
        m = re.match(r"^(#{2,6}) ", line)
        if m:
            line = "#" * max(1, len(m.group(1)) - shift) + line[len(m.group(1)):]
        line = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", line)
        out.append(line)
        i += 1
    return "\n".join(out).strip() + "\n"


def fix_roff(roff):
    """go-md2man leaves a code line starting with '.' or "'" (such as "...") as it is,
    which roff would read as a request: such lines inside .nf/.fi get a leading \\&.
    In filled text, a comma directly followed by a quote, a letter or a bracket (inline
    JSON such as {"pid":N,"actions":N}) gets a break point (\\:), so a long code span
    can wrap on a narrow terminal instead of overflowing the line."""
    out, literal = [], False
    for line in roff.split("\n"):
        if line == ".nf":
            literal = True
        elif line == ".fi":
            literal = False
        elif literal and line[:1] in (".", "'"):
            line = "\\&" + line
        elif not literal and line[:1] not in (".", "'"):
            line = re.sub(r",(?=[\"A-Za-z_\[{])", r",\\:", line)
        out.append(line)
    return "\n".join(out)


def whatis(markdown):
    """The NAME section's line as mandb reads it (`name - summary`): code marks dropped,
    the dash an ASCII one."""
    def fix(m):
        return m.group(1) + m.group(2).replace("`", "").replace(" \u2014 ", " - ")
    return re.sub(r"(^# NAME\n+)([^\n]+)", fix, markdown, count=1, flags=re.M)


def title(page, section):
    return '%% %s %s "" "agentsight %s" "agentsight manual"\n\n' % (
        page.upper(), section, version())


# ---- agentsight(1), agentsight-COMMAND(1)

def command_pages():
    """(file name, Markdown) of agentsight(1) and each agentsight-COMMAND(1)."""
    cmds = [c for c, _ in command_sections()]
    for cmd, body in command_sections():
        page = cmd.replace(" ", "-")
        text = title(page, 1) + whatis(to_man_markdown(body, 2))
        if page == "agentsight":
            see = [c.replace(" ", "-") + "(1)" for c in cmds if c != "agentsight"]
            see += ["agentsight.conf(5)", "libagentsight(3)"]
        else:
            see = ["agentsight(1)", "agentsight.conf(5)"]
        yield "man1/%s.1" % page, text + "\n# SEE ALSO\n" + ", ".join(see) + "\n"


# ---- agentsight.conf(5)

def conf_page():
    """agentsight.conf(5): the sections of config/README.md that are not a command's."""
    parts, see = [], None
    for head, body in split_sections(CONF_README):
        if HEADING.match("## " + head):
            continue
        if head == "SEE ALSO":
            see = body
            continue
        parts.append("# " + head + "\n" + to_man_markdown(body, 1))
    text = title("agentsight.conf", 5) + whatis("\n".join(parts))
    text += "\n# SEE ALSO\nagentsight(1), agentsight-run(1), agentsight-check(1), " \
            "libagentsight(3)"
    if see:
        text += "; " + to_man_markdown(see, 1)
    return "man5/agentsight.conf.5", text + "\n"


# ---- libagentsight(3)

COMMENT = re.compile(r"/\*(.*?)\*/", re.S)


def comment_text(raw):
    """The text of a /* ... */ comment: leading ' * ' removed, blank edges dropped."""
    lines = [re.sub(r"^\s*\* ?", "", l) for l in raw.split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def header_items():
    """The header's opening comment, and (kind, name, comment lines, declaration) for
    each documented type and function, in header order."""
    src = read(HEADER)
    first = COMMENT.search(src)
    intro = comment_text(first.group(1))
    items = []
    decl = re.compile(r"/\*((?:(?!\*/).)*)\*/\s*\n"
                      r"((?:typedef (?:struct|enum) (\w+) \{.*?\} \3;)"
                      r"|(?:AGENTSIGHT_API [^;]*?\b(agentsight_\w+)\s*\([^;]*\);))", re.S)
    for m in decl.finditer(src, first.end()):
        kind = "type" if m.group(3) else "function"
        name = m.group(3) or m.group(4)
        code = re.sub(r"^AGENTSIGHT_API ", "", m.group(2))
        code = re.sub(r"\s*\n\s+", " ", code) if kind == "function" else code
        items.append((kind, name, comment_text(m.group(1)), code))
    return intro, items


def paragraphs(lines):
    """Comment lines as Markdown: indented or aligned lines (tables, code) kept verbatim
    in code blocks, prose joined."""
    out, block = [], []

    def literal(l):
        return l.startswith("  ") or re.search(r"\S {2,}\S", l)

    for l in lines + [""]:
        if literal(l):
            block.append(l)
            continue
        if block:
            out += ["", "```"] + block + ["```", ""]
            block = []
        out.append(l)
    return "\n".join(out).strip() + "\n"


def readme_example():
    m = re.search(r"<!-- readme-example:begin -->\s*```c\n(.*?)```\s*<!-- readme-example:end -->",
                  read(README), re.S)
    return m.group(1) if m else None


def function_summary(comment):
    """'agentsight_init - configure ...' -> ('configure ...', the rest of the comment): the
    summary is the first paragraph."""
    m = re.match(r"^agentsight_\w+ - (.*)$", comment[0]) if comment else None
    if not m:
        sys.exit("man.py: %s: a function's comment must start with 'NAME - summary'" % HEADER)
    n = comment.index("") if "" in comment else len(comment)
    return " ".join([m.group(1)] + [l.strip() for l in comment[1:n]]), comment[n:]


def returns(name, code, body):
    """The sentences of a function's comment that say what it returns."""
    text = " ".join(" ".join(body).split())
    said = re.findall(r"(?:^|(?<=\. ))((?:Returns|This function can't fail)[^.]*"
                      r"(?:\([^)]*\)[^.]*)*\.)", text)
    if code.startswith("void "):
        return ["Returns no value."] + said
    if not said:
        sys.exit("man.py: %s: the comment of %s must say what it returns ('Returns ...')"
                 % (HEADER, name))
    return said


def api_page():
    """libagentsight(3) from the header, plus the names of its functions."""
    intro, items = header_items()
    funcs = [i for i in items if i[0] == "function"]
    types = [i for i in items if i[0] == "type"]
    summary = re.sub(r"^\s*agentsight\.h - ", "", intro[0])
    text = title("libagentsight", 3)
    text += "# NAME\nlibagentsight, %s \\- %s\n\n" % (
        ", ".join(f[1] for f in funcs), summary.rstrip("."))
    text += "# SYNOPSIS\n```\n#include <agentsight.h>\n\n"
    text += "\n".join(f[3] for f in funcs)
    text += "\n```\n\nLink with `-lagentsight`: `cc app.c $(pkg-config --cflags --libs " \
            "agentsight)`.\n\n"
    text += "# DESCRIPTION\n" + paragraphs(intro[1:]) + "\n"
    text += "# FUNCTIONS\n"
    for _, name, comment, code in funcs:
        what, body = function_summary(comment)
        text += "## %s()\n```\n%s\n```\n\n%s.\n\n%s\n" % (
            name, code, what[:1].upper() + what[1:].rstrip("."), paragraphs(body))
    text += "# TYPES\n"
    for _, name, comment, code in types:
        text += "## %s\n%s\n```\n%s\n```\n\n" % (name, paragraphs(comment), code)
    text += "# RETURN VALUE\n"
    for _, name, comment, code in funcs:
        _, body = function_summary(comment)
        text += "- %s(): %s\n" % (name, " ".join(returns(name, code, body)))
    opts = "\n".join(t[3] for t in types if t[1] == "agentsight_options")
    env = re.findall(r"(\w+);\s*/\* (AGENTSIGHT_[A-Z_]+)(?:;\s*|=)?(.*?)\s*\*/", opts)
    if env:
        text += "\n# ENVIRONMENT\nRead when the member of `agentsight_options` that sets " \
                "it is zero or NULL:\n\n" + "".join(
                    "- `%s`: `%s`%s\n" % (var, member, "; " + rest if rest else "")
                    for member, var, rest in env) + \
                "\nThe other variables of the library are described in agentsight.conf(5) " \
                "and agentsight-run(1).\n\n"
    example = readme_example()
    if example:
        text += "# EXAMPLE\n```\n" + example + "```\n\n"
    text += "# SEE ALSO\nagentsight(1), agentsight-run(1), agentsight.conf(5), " \
            "pkg-config(1)\n"
    return "man3/libagentsight.3", text, [f[1] for f in funcs]


# ---- output

def pages():
    """Every page: (file name, Markdown or None for a link, link target or None)."""
    out = [(name, text, None) for name, text in command_pages()]
    if not out:
        sys.exit("man.py: no '## agentsight' section found")
    out.append(conf_page() + (None,))
    name, text, funcs = api_page()
    out.append((name, text, None))
    out += [("man3/%s.3" % f, None, "man3/libagentsight.3") for f in funcs]
    return out


def main():
    if sys.argv[1:] == ["--list"]:
        print("\n".join(p[0] for p in pages()))
        return
    if len(sys.argv) < 2:
        sys.exit("usage: man.py OUTDIR [GO_MD2MAN] | man.py --list")
    outdir = sys.argv[1]
    tool = sys.argv[2] if len(sys.argv) > 2 else "go-md2man"
    done = []
    for name, text, link in pages():
        path = os.path.join(outdir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if link:
            roff = ".so %s\n" % link
        else:
            p = subprocess.run([tool], input=text, capture_output=True, text=True, check=True)
            roff = fix_roff(p.stdout)
        with open(path, "w", encoding="utf-8") as f:
            f.write(roff)
        done.append(name)
    print("man.py: " + " ".join(done))


if __name__ == "__main__":
    main()
