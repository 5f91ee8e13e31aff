"""Typed capture (issue 4) on real processes: typed_agent and its tool library run bare
and under the interposer with a config of C prototypes; stdout and exit code must match,
and every action's parameters, response and error_msg are compared field by field with
what the agent passed and got. typed_throw (C++) checks that exceptions thrown through
tracked calls behave exactly as without us."""
import os

from common import agent, read_jsonl, run, run_preloaded, tmpdir, write

CONFIG = """[actions]
int multiply(int a, int b) name=calculator_multiply
const char *weather_lookup(const char *location, const char *units) error_if=null
const char *database_search(const char *user_id, const char *status)
int tool_tag(const char *s)
int tool_open(const char *path) error_if=negative
long tool_mixed(int a, double b, long c, double d, int e, float f, int g, double h, long i, short j, unsigned char k, bool l)
double tool_div(double a, double b)
float tool_scale(float x)
bool tool_is_even(int x) error_if=false
void tool_log(const char *msg)
void *tool_ptr(void)
int8_t tool_i8(int8_t x)
uint16_t tool_u16(uint16_t x)
uint64_t tool_u64(uint64_t x)
ssize_t tool_ssize(ssize_t x)
unsigned int tool_uint(unsigned int x)
enum color tool_color(enum color c)
char *tool_upper(const char *s, char *out)
int tool_secret(const char *password) capture=none error_if=nonzero
int tool_unnamed(int, int)
size_t tool_len(const char *s) max_string=10
tool_untyped_neg
tool_untyped_int
"""


def instrumented(binary, config_text):
    """Runs binary bare and under the interposer; checks stdout and exit code match.
    Returns (instrumented result, actions)."""
    d = tmpdir()
    conf = write(os.path.join(d, "agent.conf"), config_text)
    out = os.path.join(d, "actions.jsonl")
    bare = run([agent(binary)])
    got = run_preloaded([agent(binary)], config=conf, out=out)
    assert got.stdout == bare.stdout, (bare.stdout, got.stdout, got.stderr)
    assert got.returncode == bare.returncode, (bare.returncode, got.returncode, got.stderr)
    return got, read_jsonl(out)


def by_name(actions, name):
    return [a for a in actions if a["action_name"] == name]


def one(actions, name):
    found = by_name(actions, name)
    assert len(found) == 1, (name, found)
    return found[0]


def test_reference_examples():
    # Proves the reference page's three examples come out of real calls: multiply(12, 5)
    # as calculator_multiply with parameters {"a": 12, "b": 5} and response "60"; the
    # weather lookup with its location/units and text response; the database search.
    got, actions = instrumented("typed_agent", CONFIG)
    assert got.returncode == 7
    m = one(actions, "calculator_multiply")
    assert m["tools_used"]["function"] == "multiply"
    assert m["tools_used"]["library"] == "libtyped_tools.so"
    assert m["tools_used"]["parameters"] == {"a": 12, "b": 5}
    assert m["response"] == "60" and m["error_msg"] is None
    w = [a for a in by_name(actions, "weather_lookup")
         if a["tools_used"]["parameters"]["location"] is not None]
    assert len(w) == 1
    assert w[0]["tools_used"]["parameters"] == {"location": "San Francisco, CA",
                                                "units": "metric"}
    assert w[0]["response"] == "Temperature: 18\u00b0C, Conditions: Sunny"
    d = one(actions, "database_search")
    assert d["tools_used"]["parameters"] == {"user_id": "123", "status": "active"}
    assert d["response"] == "Found 3 active orders"


def test_every_type():
    # Proves each type of issue 4 through a real call: integers of each size and
    # signedness, enums, bool, float, double, void, pointers, strings in and out, unnamed
    # parameters, more than six arguments with doubles mixed in (stack arguments), and
    # the untyped integer rule for bare symbols.
    got, actions = instrumented("typed_agent", CONFIG)
    mixed = one(actions, "tool_mixed")
    assert mixed["tools_used"]["parameters"] == {
        "a": -7, "b": 2.5, "c": 1 << 40, "d": -0.125, "e": 5, "f": 1.5, "g": 6,
        "h": 1024.5, "i": -9, "j": -300, "k": 200, "l": True}
    assert mixed["response"] == got.stdout.split("mixed ")[1].split()[0]
    div = one(actions, "tool_div")
    assert div["tools_used"]["parameters"] == {"a": 5, "b": 2} and div["response"] == "2.5"
    scale = one(actions, "tool_scale")
    assert scale["tools_used"]["parameters"] == {"x": 0.75} and scale["response"] == "1.5"
    evens = sorted((a["tools_used"]["parameters"]["x"], a["response"], a["error_msg"])
                   for a in by_name(actions, "tool_is_even"))
    assert evens == [(4, "true", None), (5, "false", "returned false")]
    log = one(actions, "tool_log")
    assert log["tools_used"]["parameters"] == {"msg": "logged"} and log["response"] is None
    ptr = one(actions, "tool_ptr")
    assert "parameters" not in ptr["tools_used"] and ptr["response"].startswith("0x")
    assert int(ptr["response"], 16) > 0
    assert one(actions, "tool_i8")["response"] == "127"
    assert one(actions, "tool_i8")["tools_used"]["parameters"] == {"x": -128}
    assert one(actions, "tool_u16")["tools_used"]["parameters"] == {"x": 65535}
    assert one(actions, "tool_u16")["response"] == "0"
    assert one(actions, "tool_u64")["tools_used"]["parameters"] == {"x": 9000000000000000000}
    assert one(actions, "tool_u64")["response"] == "18000000000000000000"
    assert one(actions, "tool_ssize")["response"] == "-42"
    assert one(actions, "tool_uint")["tools_used"]["parameters"] == {"x": 4294967295}
    assert one(actions, "tool_uint")["response"] == "4294967295"
    assert one(actions, "tool_color")["tools_used"]["parameters"] == {"c": 2}
    assert one(actions, "tool_color")["response"] == "0"
    up = one(actions, "tool_upper")
    assert up["tools_used"]["parameters"]["s"] == "shout" and up["response"] == "SHOUT"
    assert one(actions, "tool_unnamed")["tools_used"]["parameters"] == {"arg1": 9, "arg2": 4}
    assert one(actions, "tool_untyped_neg")["response"] == "-5000000000"
    assert one(actions, "tool_untyped_int")["response"] == "-1"


def test_strings_bounded_and_escaped():
    # Proves max_string cuts a string argument (max_string=10 on the entry), invalid
    # UTF-8 is escaped (U+FFFD), never emitted raw, and a NULL string is null with the
    # error_if=null rule giving "returned NULL".
    _, actions = instrumented("typed_agent", CONFIG)
    lens = sorted(a["tools_used"]["parameters"]["s"] for a in by_name(actions, "tool_len"))
    assert lens == ["abcdefghij", "ok\ufffd\ufffd end"], lens
    null = [a for a in by_name(actions, "weather_lookup")
            if a["tools_used"]["parameters"]["location"] is None]
    assert len(null) == 1
    assert null[0]["response"] is None and null[0]["error_msg"] == "returned NULL"


def test_unreadable_pointers():
    # Proves unreadable pointer arguments never fault the agent (it ran to its normal exit
    # with the same output) and are reported as "<unreadable 0x...>": (char *)0x10 and a
    # pointer into a page the agent unmapped (address printed on its stderr).
    got, actions = instrumented("typed_agent", CONFIG)
    addr = [l.split()[1] for l in got.stderr.splitlines() if l.startswith("unmapped ")][0]
    tags = sorted(a["tools_used"]["parameters"]["s"] for a in by_name(actions, "tool_tag"))
    assert tags == sorted(["<unreadable 0x10>", "<unreadable %s>" % addr]), tags


def test_error_rule_with_errno():
    # Proves error_if=negative with errno set during the call: "returned -1: No such file
    # or directory", and the path argument captured.
    _, actions = instrumented("typed_agent", CONFIG)
    o = one(actions, "tool_open")
    assert o["response"] == "-1"
    assert o["error_msg"] == "returned -1: No such file or directory"
    assert o["tools_used"]["parameters"] == {"path": "/nonexistent/agentsight-typed"}


def test_capture_none_and_off():
    # Proves capture=none on an entry hides parameters and response (the password never
    # appears in the file) but keeps the name, timing and error rule; [output] capture =
    # off does the same for every entry.
    _, actions = instrumented("typed_agent", CONFIG)
    s = one(actions, "tool_secret")
    assert "parameters" not in s["tools_used"] and s["response"] is None
    assert s["error_msg"] == "returned 7" and s["duration_ms"] >= 0
    _, off = instrumented("typed_agent", "[output]\ncapture = off\n" + CONFIG)
    assert len(off) == len(actions)
    for a in off:
        assert "parameters" not in a["tools_used"], a
        assert a["response"] is None, a
        assert a["started_at"] and a["ended_at"]
    assert one(off, "tool_open")["error_msg"] == "returned -1: No such file or directory"


def test_cxx_exceptions_through_tracked_calls():
    # Proves a C++ exception thrown by a wrapped function unwinds through the thunk into
    # the caller's catch (same output and exit code as bare, no std::terminate), one
    # crossing two nested tracked calls too; each such call is recorded as "did not
    # return (left by an exception)", an exception caught inside a tool leaves its call
    # a normal one, and later calls are tracked with their responses.
    _, actions = instrumented("typed_throw", "[actions]\nthrow_tool\ncatch_inside_tool\n"
                                             "nested_tool\n")
    left = "did not return (left by an exception)"
    throws = by_name(actions, "throw_tool")
    assert len(throws) == 5, throws
    assert sum(1 for a in throws if a["error_msg"] == left) == 4
    assert [a["response"] for a in throws if a["error_msg"] is None] == ["1"]
    inside = one(actions, "catch_inside_tool")
    assert inside["response"] == "40" and inside["error_msg"] is None
    nested = one(actions, "nested_tool")
    assert nested["error_msg"] == left and nested["response"] is None


DWARF_NAMES = ["multiply", "weather_lookup", "database_search", "tool_div",
               "tool_scale", "tool_is_even", "tool_u64", "tool_uint", "tool_mixed"]


def test_dwarf_prototypes_match_written_ones():
    """Proves: bare names of functions in a -g tool library (libtyped_tools.so) get their
    prototypes from DWARF, so each call's tools_used (parameter names and values) and
    response equal those of a run whose config writes the prototypes out."""
    written = "[actions]\n" + "".join(
        line + "\n" for line in CONFIG.splitlines()
        if any(f" {n}(" in line or f"*{n}(" in line for n in DWARF_NAMES))
    written = written.replace(" name=calculator_multiply", "").replace(" error_if=null", "")
    written = written.replace(" error_if=false", "")
    bare = "[actions]\n" + "".join(n + "\n" for n in DWARF_NAMES)
    _, typed = instrumented("typed_agent", written)
    _, from_dwarf = instrumented("typed_agent", bare)
    assert len(typed) == len(from_dwarf) and typed, (len(typed), len(from_dwarf))
    for n in DWARF_NAMES:
        a, b = by_name(typed, n), by_name(from_dwarf, n)
        assert a and len(a) == len(b), (n, a, b)
        for x, y in zip(a, b):
            assert x["tools_used"] == y["tools_used"], (n, x["tools_used"], y["tools_used"])
            assert x["response"] == y["response"], (n, x["response"], y["response"])
