"""Integration tests of `agentsight symbols`: sqlite3 and the libsqlite3 it loads (--deps),
the dwarf_tools agent (DWARF prototypes, local functions, addresses checked against nm),
libc's symbol versions, and the errors for missing and non-ELF files. JSON output is read
with the json module."""
import json
import os
import shutil

from common import CLI, agent, run, tmpdir, write


def symbols(*args):
    """Runs `agentsight symbols ARGS`; returns the CompletedProcess."""
    return run([CLI, "symbols", *args])


def symbols_json(*args):
    """Runs `agentsight symbols --json ARGS`, asserts success, returns the parsed list."""
    r = symbols("--json", *args)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert isinstance(rows, list)
    return rows


def by_symbol(rows):
    return {row["symbol"]: row for row in rows}


def test_sqlite3_deps_lists_libsqlite3():
    """Proves --deps lists libsqlite3's exported functions with object, address and size,
    sorted by name, and that the program alone does not define them."""
    rows = symbols_json("--deps", "sqlite3", "sqlite3_*")
    names = [row["name"] for row in rows]
    assert names == sorted(names)
    got = by_symbol(rows)
    for name in ("sqlite3_exec", "sqlite3_step", "sqlite3_open", "sqlite3_prepare_v2"):
        row = got[name]
        assert row["object"] == "libsqlite3.so.0", row
        assert os.path.isabs(row["path"])
        assert row["exported"] is True and row["binding"] == "global"
        assert int(row["address"], 16) > 0 and row["size"] > 0
        assert row["ifunc"] is False
    alone = symbols("sqlite3", "sqlite3_exec")
    assert alone.returncode == 1
    assert "no function matches" in alone.stderr and "--deps" in alone.stderr


def test_sqlite3_text_output():
    """Proves the text form: one line per function naming symbol, object, hex address and
    binding."""
    r = symbols("--deps", "sqlite3", "sqlite3_exec")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1
    fields = lines[0].split()
    assert fields[0] == "sqlite3_exec"
    assert fields[1] == "libsqlite3.so.0"
    assert fields[2].startswith("0x") and int(fields[2], 16) > 0
    assert fields[4] == "exported"


def nm_addresses(path):
    """Function addresses from binutils nm, as {name: value}."""
    r = run(["nm", "--defined-only", path])
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwWi":
            out[parts[2]] = int(parts[0], 16)
    return out


def test_dwarf_tools_prototypes():
    """Proves prototypes come from DWARF (names, types, varargs, unnamed parameters), that
    a static function is listed as local, that a function over 16 parameters has none, and
    that every address agrees with nm."""
    path = agent("dwarf_tools")
    assert os.path.exists(path), "build the agents first (make agents)"
    rows = symbols_json(path)
    got = by_symbol(rows)
    want = {
        "calculator_multiply": "int calculator_multiply(int a, int b)",
        "dt_printf": "int dt_printf(const char *fmt, ...)",
        "dt_void": "void dt_void(void)",
        "dt_unnamed": "int dt_unnamed(int arg1, const char *label)",
        "dt_strlen": "size_t dt_strlen(const char *text)",
        "dt_many": "int64_t dt_many(int8_t a, int16_t b, int32_t c, int64_t d, uint8_t e, "
                   "uint16_t f, uint32_t g, uint64_t h)",
        "dt_structs": "int dt_structs(struct point p, struct vec2 v, struct mixed m, "
                      "struct floats f, struct float_int fi)",
        "dt_local_helper": "int dt_local_helper(int x)",
    }
    for name, proto in want.items():
        assert got[name]["prototype"] == proto, got[name]
    assert got["dt_seventeen"]["prototype"] is None
    assert got["dt_local_helper"]["exported"] is False
    assert got["dt_local_helper"]["binding"] == "local"
    assert got["calculator_multiply"]["exported"] is True
    nm = nm_addresses(path)
    for row in rows:
        assert nm[row["name"]] == int(row["address"], 16), row


def test_stripped_copy_keeps_exports_only():
    """Proves a stripped copy lists the exported functions (no prototypes) and not the
    static one."""
    d = tmpdir()
    try:
        copy = os.path.join(d, "dwarf_tools")
        r = run(["strip", "--strip-all", "-o", copy, agent("dwarf_tools")])
        assert r.returncode == 0, r.stderr
        got = by_symbol(symbols_json(copy, "*"))
        assert "calculator_multiply" in got
        assert got["calculator_multiply"]["prototype"] is None
        assert "dt_local_helper" not in got
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_libc_versions():
    """Proves versioned names: memcpy has a default GLIBC_2.14 IFUNC and an older
    GLIBC_2.2.5 one, and a name@VERSION pattern selects one of them."""
    got = by_symbol(symbols_json("libc.so.6", "memcpy"))
    new = got["memcpy@GLIBC_2.14"]
    assert new["version"] == "GLIBC_2.14" and new["default_version"] is True
    assert new["ifunc"] is True and new["exported"] is True
    assert got["memcpy@GLIBC_2.2.5"]["default_version"] is False
    only = symbols_json("libc.so.6", "memcpy@GLIBC_2.2.5")
    assert [row["symbol"] for row in only] == ["memcpy@GLIBC_2.2.5"]


def test_errors():
    """Proves a missing file and a non-ELF file exit 1 with a message naming the file, and
    usage errors exit 2."""
    r = symbols("/nonexistent/agent")
    assert r.returncode == 1 and "/nonexistent/agent" in r.stderr
    assert "no such file" in r.stderr and r.stdout == ""
    d = tmpdir()
    try:
        text = write(os.path.join(d, "notes.txt"), "not a program\n")
        r = symbols(text)
        assert r.returncode == 1 and "not an ELF file" in r.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert symbols().returncode == 2
    assert symbols("--no-such-option", "sqlite3").returncode == 2
    h = symbols("--help")
    assert h.returncode == 0 and "usage: agentsight symbols" in h.stdout
