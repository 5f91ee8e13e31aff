"""README.md stays true: its C example (between the readme-example markers) compiles
against the built library, runs, and writes the reference page's three actions; every
environment variable and sink scheme the README names appears in the sources."""
import os
import re
import subprocess

from common import BUILD, ROOT, read_jsonl, run, tmpdir

README = os.path.join(ROOT, "README.md")


def _example_source():
    text = open(README, encoding="utf-8").read()
    m = re.search(r"<!-- readme-example:begin -->\s*```c\n(.*?)```\s*<!-- readme-example:end -->",
                  text, re.S)
    assert m, "README.md has no readme-example block"
    return m.group(1)


def test_readme_example_compiles_and_tracks_three_actions():
    """The README's C example, compiled as written, produces the page's three actions."""
    d = tmpdir()
    src = os.path.join(d, "example.c")
    with open(src, "w", encoding="utf-8") as f:
        f.write(_example_source())
    exe = os.path.join(d, "example")
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-I",
                    os.path.join(ROOT, "include"), "-o", exe, src, "-L", BUILD,
                    "-lagentsight", "-Wl,-rpath," + os.path.abspath(BUILD)],
                   check=True, timeout=120)
    out = os.path.join(d, "a.jsonl")
    p = run([exe], env={"AGENTSIGHT_OUTPUT": "file:" + out}, cwd=d)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("success: Action tracked successfully (conversation "
                               "order_inquiry_456 at "), p.stdout
    rows = read_jsonl(out)
    assert [r["action_name"] for r in rows] == [
        "calculator_multiply", "weather_lookup", "database_search"]
    calc, weather, db = rows
    assert calc["duration_ms"] == 50 and calc["response"] == "60"
    assert calc["started_at"] == "2024-01-15T10:30:00.000000Z"
    assert calc["ended_at"] == "2024-01-15T10:30:00.050000Z"
    assert calc["tools_used"] == {"function": "multiply", "parameters": {"a": 12, "b": 5}}
    assert calc["conversation_id"] == "math_help_123"
    assert weather["duration_ms"] == 800
    assert weather["response"] == "Temperature: 18\u00b0C, Conditions: Sunny"
    assert weather["metadata"] == {"location_query": "San Francisco", "units": "celsius"}
    assert weather["conversation_id"].startswith("conv_")
    assert db["tools_used"]["filters"] == {"user_id": "123", "status": "active"}
    assert db["response"] == "Found 3 active orders" and db["duration_ms"] == 200


def test_readme_names_only_what_exists():
    """Every AGENTSIGHT_* variable the README documents is read somewhere in preload/."""
    text = open(README, encoding="utf-8").read()
    names = set(re.findall(r"`(AGENTSIGHT_[A-Z_]+)`", text))
    assert len(names) >= 10
    src = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "preload")):
        for f in files:
            if f.endswith((".c", ".h")):
                src.append(open(os.path.join(dirpath, f), encoding="utf-8").read())
    blob = "\n".join(src)
    missing = sorted(n for n in names if n not in blob)
    assert not missing, f"README names variables the code never reads: {missing}"
