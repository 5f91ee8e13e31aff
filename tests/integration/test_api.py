"""Integration tests of the public C API: real programs linked with libagentsight.so
(tests/agents/api_*.c, readme_examples.c) write JSONL that is read back with the json
module: the reference page's examples, every validation case, the defaults, many threads
without loss, fork, exit() from a worker thread, a full queue under both policies."""
import collections
import json
import os
import re
import subprocess
from datetime import datetime, timedelta, timezone

from common import agent, read_jsonl, run, tmpdir

UTC = timezone.utc


def ts(s):
    """ISO timestamp text -> aware datetime."""
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def each_meta(path):
    """Yields every line's metadata, parsed one line at a time so the runner stays small
    (a forked child inherits its peak RSS)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)["metadata"]


def seen_map(path, threads, per, who="worker"):
    """Marks (thread, seq) of the lines from `who` in a bytearray; returns it with the
    number of duplicates and the other lines' metadata."""
    seen = bytearray(threads * per)
    dups, other = 0, []
    for m in each_meta(path):
        if m["who"] != who:
            other.append(m)
            continue
        assert 0 <= m["t"] < threads and 0 <= m["s"] < per, m
        i = m["t"] * per + m["s"]
        dups += seen[i]
        seen[i] = 1
    return seen, dups, other


def run_agent(name, args=(), env=None, cwd=None, out="out.jsonl", parse=True):
    """Runs a test agent in a fresh directory with its actions going to out there.
    Returns (CompletedProcess, parsed JSONL lines or the file's path, directory)."""
    d = cwd or tmpdir()
    e = {"AGENTSIGHT_OUTPUT": "file:" + out}
    e.update(env or {})
    p = run([agent(name)] + list(args), env=e, cwd=d)
    path = os.path.join(d, out)
    return p, read_jsonl(path) if parse else path, d


def by_name(lines):
    return {x["action_name"]: x for x in lines}


def test_readme_examples():
    """The reference page's three examples produce three lines with its field values."""
    p, lines, _ = run_agent("readme_examples",
                            env={"AGENTSIGHT_CONVERSATION_ID": "conv_from_env"})
    assert p.returncode == 0, p.stderr
    assert len(lines) == 3, lines
    got = by_name(lines)
    c = got["calculator_multiply"]
    assert ts(c["started_at"]) == datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
    assert ts(c["ended_at"]) == datetime(2024, 1, 15, 10, 30, 0, 50000, tzinfo=UTC)
    assert c["duration_ms"] == 50
    assert c["tools_used"] == {"function": "multiply", "parameters": {"a": 12, "b": 5}}
    assert c["response"] == "60"
    assert c["conversation_id"] == "math_help_123"
    assert c["error_msg"] is None and c["metadata"] is None
    w = got["weather_lookup"]
    assert w["duration_ms"] == 800
    assert w["tools_used"] == {"api": "OpenWeatherMap", "location": "San Francisco, CA",
                               "parameters": {"units": "metric"}}
    assert w["response"] == "Temperature: 18\u00b0C, Conditions: Sunny"
    assert w["metadata"] == {"location_query": "San Francisco", "units": "celsius"}
    assert w["conversation_id"] == "conv_from_env"
    assert ts(w["ended_at"]) - ts(w["started_at"]) == timedelta(milliseconds=800)
    db = got["database_search"]
    assert ts(db["started_at"]) == datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
    assert ts(db["ended_at"]) == datetime(2024, 1, 15, 10, 30, 0, 200000, tzinfo=UTC)
    assert db["duration_ms"] == 200
    assert db["tools_used"] == {"database": "user_orders", "query_type": "SELECT",
                                "filters": {"user_id": "123", "status": "active"}}
    assert db["response"] == "Found 3 active orders"
    assert db["conversation_id"] == "order_inquiry_456"
    # The result dictionaries printed by the program.
    results = [json.loads(x) for x in p.stdout.splitlines()]
    assert [r["status"] for r in results] == ["success"] * 3
    assert [r["message"] for r in results] == ["Action tracked successfully"] * 3
    assert [r["conversation_id"] for r in results] == [
        "math_help_123", "conv_from_env", "order_inquiry_456"]
    for r in results:
        ts(r["timestamp"])


def test_generated_conversation_id():
    """Without any conversation id, one "conv_" + 12 hex id is generated per process."""
    p, lines, _ = run_agent("readme_examples")
    assert p.returncode == 0, p.stderr
    conv = by_name(lines)["weather_lookup"]["conversation_id"]
    assert re.fullmatch(r"conv_[0-9a-f]{12}", conv), conv


REFUSED = {
    "null_action": "action",
    "name_missing": "action_name",
    "name_empty": "action_name",
    "name_too_long": "action_name",
    "name_bad_utf8": "action_name",
    "started_bad": "started_at",
    "ended_bad": "ended_at",
    "duration_negative": "duration_ms",
    "duration_disagrees": "duration_ms",
    "ended_before_started": "ended_at",
    "tools_not_object": "tools_used",
    "tools_bad_json": "tools_used",
    "metadata_not_object": "metadata",
    "response_bad_utf8": "response",
    "error_bad_utf8": "error_msg",
    "conversation_too_long": "conversation_id",
}


def test_validation_and_init():
    """Every invalid action is refused with a message naming the field and never
    written; agentsight_init refuses a bad output and a second call."""
    p, lines, _ = run_agent("api_validate", env={"AGENTSIGHT_CONVERSATION_ID": "conv_env"})
    assert p.returncode == 0, p.stderr
    cases = {c["case"]: c for c in (json.loads(x) for x in p.stdout.splitlines())}
    assert cases["init_bad_output"]["rc"] == -1
    assert "unknown sink URI 'ftp://nowhere'" in p.stderr
    assert cases["init"]["rc"] == 0
    assert cases["init_again"]["rc"] == -1
    for name, field in REFUSED.items():
        c = cases[name]
        assert c["rc"] == -1 and c["status"] == "error", c
        assert c["message"].startswith(field + ":"), c
        ts(c["timestamp"])
    assert len(cases["name_too_long"]["action_name"]) == 256
    assert cases["started_bad"]["conversation_id"] == "conv_env"
    written = by_name(lines)
    assert "v" not in written and len(lines) == 6, lines
    for name in ("only_name", "start_and_duration", "end_and_duration", "start_and_end",
                 "duration_only", "with_error"):
        assert cases[name]["rc"] == 0 and cases[name]["status"] == "success"
        assert cases[name]["message"] == "Action tracked successfully"
        assert cases[name]["action_name"] == name


def test_defaults():
    """Missing fields are filled as agentsight.h says."""
    p, lines, _ = run_agent("api_validate", env={"AGENTSIGHT_CONVERSATION_ID": "conv_env"})
    assert p.returncode == 0, p.stderr
    a = by_name(lines)
    for x in lines:
        assert list(x) == ["action_name", "started_at", "ended_at", "duration_ms", "tools_used",
                           "response", "error_msg", "conversation_id", "metadata", "timestamp",
                           "event_id"]
    x = a["only_name"]
    assert x["started_at"] == x["ended_at"] == x["timestamp"] and x["duration_ms"] == 0
    assert x["conversation_id"] == "conv_env"
    x = a["start_and_duration"]
    assert ts(x["ended_at"]) == datetime(2024, 1, 15, 10, 30, 0, 250000, tzinfo=UTC)
    x = a["end_and_duration"]
    assert ts(x["ended_at"]) == datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
    assert ts(x["started_at"]) == datetime(2024, 1, 15, 10, 29, 58, 500000, tzinfo=UTC)
    x = a["start_and_end"]
    assert x["duration_ms"] == 2500
    x = a["duration_only"]
    assert ts(x["ended_at"]) == ts(x["timestamp"])
    assert ts(x["ended_at"]) - ts(x["started_at"]) == timedelta(milliseconds=42)
    x = a["with_error"]
    assert x["error_msg"] == "connection refused" and x["conversation_id"] == "conv_given"


def keys(lines, who=None):
    out = [(x["metadata"]["who"], x["metadata"]["t"], x["metadata"]["s"]) for x in lines
           if who is None or x["metadata"]["who"] == who]
    return out


def test_threads_no_loss():
    """4 threads x 25,000 actions, no explicit flush: every one delivered exactly once."""
    p, path, _ = run_agent("api_stress", ["threads", "4", "25000"], parse=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "refused 0"
    seen, dups, other = seen_map(path, 4, 25000)
    assert dups == 0 and not other
    assert seen.count(1) == 100000


def test_exit_from_worker_thread():
    """exit() from a worker while three others track: exit status kept, everything the
    exiting thread queued is delivered, nothing is duplicated or torn."""
    p, path, _ = run_agent("api_stress", ["exit-thread", "3", "20000"], parse=False)
    assert p.returncode == 3, (p.returncode, p.stderr)
    seen, dups, other = seen_map(path, 3, 20000)
    assert dups == 0
    exiter = sorted(m["s"] for m in other if m["who"] == "exiter" and m["t"] == 3)
    assert len(other) == len(exiter)
    assert exiter == list(range(20000))


def test_fork():
    """After fork the child delivers only its own actions, the parent only its own, and
    the parent's actions pending at fork time are delivered once (by the parent)."""
    p, lines, _ = run_agent("api_stress", ["fork", "2000"])
    assert p.returncode == 0, p.stderr
    child = int(p.stdout.split()[1])
    by = collections.defaultdict(list)
    for x in lines:
        m = x["metadata"]
        by[(m["who"], m["pid"])].append(m["s"])
    parents = [k for k in by if k[0] == "parent"]
    assert len(parents) == 1 and parents[0][1] != child, list(by)
    assert set(by) == {parents[0], ("child", child)}
    assert sorted(by[parents[0]]) == list(range(4000))
    assert sorted(by[("child", child)]) == list(range(2000))


def test_queue_full_drop():
    """Policy drop, a tiny queue and a slow sink: drops happen at once, are counted the
    same way by the caller, agentsight_dropped() and the exit message, and ride on the
    metadata of later actions."""
    n = 20000
    p, lines, _ = run_agent("api_stress", ["queue", str(n)], env={
        "AGENTSIGHT_QUEUE_POLICY": "drop", "AGENTSIGHT_QUEUE_BYTES": "64K",
        "AGENTSIGHT_OUTPUT": "file:out.jsonl,null:delay_ms=20"})
    assert p.returncode == 0, p.stderr
    m = re.fullmatch(r"refused (\d+) dropped (\d+)", p.stdout.strip())
    refused, dropped = int(m.group(1)), int(m.group(2))
    assert refused == dropped > 0
    assert f"agentsight: {dropped} actions dropped (queue full)" in p.stderr
    assert len(lines) + dropped == n
    k = keys(lines)
    assert len(set(k)) == len(k)
    reported = sum(x["metadata"].get("agentsight_dropped", 0) for x in lines)
    assert 0 < reported <= dropped
    for x in lines:
        if "agentsight_dropped" in x["metadata"]:
            assert x["metadata"]["who"] == "queue"  # merged with the action's own keys


def test_queue_full_wait():
    """Policy wait with the same tiny queue and slow sink: nothing is dropped."""
    n = 3000
    p, lines, _ = run_agent("api_stress", ["queue", str(n)], env={
        "AGENTSIGHT_QUEUE_POLICY": "wait", "AGENTSIGHT_QUEUE_BYTES": "64K",
        "AGENTSIGHT_OUTPUT": "file:out.jsonl,null:delay_ms=20"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "refused 0 dropped 0"
    assert "dropped" not in p.stderr
    assert sorted(x[2] for x in keys(lines)) == list(range(n))


def test_stderr_sink_and_stats():
    """The stderr sink prints one readable line per action; AGENTSIGHT_STATS_FILE gets
    one JSON line at exit."""
    d = tmpdir()
    stats = os.path.join(d, "stats.jsonl")
    p = run([agent("readme_examples")], cwd=d,
            env={"AGENTSIGHT_OUTPUT": "stderr", "AGENTSIGHT_STATS_FILE": stats})
    assert p.returncode == 0, p.stderr
    assert "[agentsight] 10:30:00.050 calculator_multiply(a=12, b=5) = 60 <50.000 ms>\n" in p.stderr
    assert "[agentsight] 10:30:00.200 database_search = Found 3 active orders <200.000 ms>\n" \
        in p.stderr
    assert re.search(r"\[agentsight\] \d\d:\d\d:\d\d\.\d{3} weather_lookup\(units=\"metric\"\) = "
                     "Temperature: 18\u00b0C, Conditions: Sunny <800.000 ms>\n", p.stderr)
    st = read_jsonl(stats)
    assert len(st) == 1
    assert st[0]["actions"] == 3 and st[0]["dropped"] == 0 and st[0]["output"] == "stderr"
    assert st[0]["pid"] > 0


def test_two_processes_one_file():
    """Two processes appending to one file at once never interleave lines."""
    d = tmpdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AGENTSIGHT_") and k != "LD_PRELOAD"}
    env["AGENTSIGHT_OUTPUT"] = "file:shared.jsonl"
    procs = [subprocess.Popen([agent("api_stress"), "threads", "2", "10000"], cwd=d, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(2)]
    for pr in procs:
        assert pr.wait(timeout=60) == 0
    per_pid = collections.Counter()
    with open(os.path.join(d, "shared.jsonl"), encoding="utf-8") as f:
        for line in f:
            per_pid[json.loads(line)["metadata"]["pid"]] += 1
    assert sorted(per_pid.values()) == [20000, 20000]


def test_disable_kill_switch():
    """Proves AGENTSIGHT_DISABLE=1 turns track_action into a no-op that still answers
    success with the documented message: no output file, no ring file, nothing queued."""
    d = tmpdir()
    out = os.path.join(d, "a.jsonl")
    spool = os.path.join(d, "spool")
    r = run([agent("api_disable")], cwd=d,
            env={"AGENTSIGHT_DISABLE": "1", "AGENTSIGHT_OUTPUT": "file:" + out,
                 "AGENTSIGHT_SPOOL_DIR": spool})
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()[:2]
    assert first == ("0|success|conv_kill_switch|weather_lookup|"
                     "AgentSight disabled (AGENTSIGHT_DISABLE=1)"), first
    assert second == "flush 0 dropped 0", second
    assert not os.path.exists(out)
    assert not os.path.exists(spool)
    # Without the switch the same program tracks the action.
    r = run([agent("api_disable")], cwd=d,
            env={"AGENTSIGHT_OUTPUT": "file:" + out, "AGENTSIGHT_SPOOL_DIR": spool})
    assert r.stdout.startswith("0|success|conv_kill_switch|weather_lookup|Action tracked"), r.stdout
    assert [a["action_name"] for a in read_jsonl(out)] == ["weather_lookup"]
