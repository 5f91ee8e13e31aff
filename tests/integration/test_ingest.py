"""The agentsight sink against today's ingest API (POST /api/ingest/) of the emulator
(scripts/agentsight_emulator.py, which validates every body strictly): actions arrive as
tool spans grouped by conversation, field by field equal to the JSONL the same run wrote;
an old 0.0.x-only server gets action logs instead; gzip only for bodies over 8 KiB and
only when the server lists gzip-ingest; Retry-After is waited out; a 400 names the
refused blocks, which go to the dead letters while the rest arrive; AGENTSIGHT_ENVIRONMENT
reaches both APIs."""
import datetime
import json
import os
import urllib.request

from common import CLI, PRELOAD, ROOT, agent, read_jsonl, run, tmpdir, write
from test_delivery import KEY, Emulator, env_for

ENV_NAME = "staging-7"


def emulator(d, **kw):
    return Emulator(os.path.join(d, "store.jsonl"), **kw)


def got(emu):
    with urllib.request.urlopen(emu.endpoint + "/_received", timeout=10) as r:
        return json.loads(r.read())


def control(emu, **settings):
    req = urllib.request.Request(emu.endpoint + "/_control", data=json.dumps(settings).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def iso(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def run_example(emu, d, extra_env=None):
    """The demo agent under the interposer with example.conf, actions to a JSONL file and
    to the API. Returns (bare run, instrumented run, actions of the JSONL file)."""
    out = os.path.join(d, "actions.jsonl")
    with open(os.path.join(ROOT, "config", "example.conf"), encoding="utf-8") as f:
        conf = write(os.path.join(d, "example.conf"), f.read())
    env = env_for(emu.endpoint, os.path.join(d, "spool"))
    env.update({"AGENTSIGHT_CONFIG": conf, "LD_PRELOAD": PRELOAD,
                "AGENTSIGHT_OUTPUT": "agentsight,file:" + out})
    env.update(extra_env or {})
    bare = run([agent("example_agent")])
    inst = run([agent("example_agent")], env=env)
    return bare, inst, read_jsonl(out)


def send_file(emu, d, lines, extra_env=None):
    """`agentsight send -o agentsight FILE` of the given action objects."""
    rec = write(os.path.join(d, "recorded.jsonl"), "".join(json.dumps(x) + "\n" for x in lines))
    env = env_for(emu.endpoint, os.path.join(d, "spool"))
    env.update(extra_env or {})
    return run([CLI, "send", "-o", "agentsight", rec], env=env, timeout=90)


def test_actions_arrive_as_tool_spans_field_by_field():
    """Proves every action of a real agent reaches the ingest API as one tool span whose
    fields equal the action the same run wrote to its JSONL file (ids derived from the
    event id, times, duration, status, tool attributes), in a block of its conversation
    carrying AGENTSIGHT_ENVIRONMENT; the server was asked once which API it speaks, and
    the agent's output is unchanged."""
    d = tmpdir()
    emu = emulator(d, legacy=False)
    try:
        bare, inst, actions = run_example(emu, d, {"AGENTSIGHT_ENVIRONMENT": ENV_NAME})
        assert inst.returncode == bare.returncode == 0, inst.stderr
        assert inst.stdout == bare.stdout
        r = got(emu)
    finally:
        emu.stop()
    assert len(actions) == 8, actions
    assert r["rejected"] == [] and r["action_logs"] == []
    assert r["me_requests"] == 1
    spans = {e["span"]["attributes"]["agentsight.event_id"]: e for e in r["ingest_spans"]}
    assert len(spans) == len(r["ingest_spans"]) == len(actions)
    span_ids = set()
    for a in actions:
        e = spans[a["event_id"]]
        sp, at = e["span"], e["span"]["attributes"]
        assert e["conversation_id"] == a["conversation_id"] == "demo-conversation"
        assert e["environment"] == ENV_NAME
        assert sp["trace_id"] == a["event_id"] and sp["parent_span_id"] is None
        assert len(sp["span_id"]) == 16 and sp["span_id"] not in span_ids
        span_ids.add(sp["span_id"])
        assert sp["kind"] == at["agentsight.span.kind"] == "tool"
        assert sp["name"] == at["agentsight.tool.name"] == a["action_name"]
        assert iso(sp["started_at"]) == iso(a["started_at"])
        assert iso(sp["ended_at"]) == iso(a["ended_at"])
        exact = (iso(a["ended_at"]) - iso(a["started_at"])) / datetime.timedelta(milliseconds=1)
        # The JSONL times have microseconds, the span's duration nanoseconds.
        assert abs(sp["duration_ms"] - exact) < 0.0021
        assert abs(sp["duration_ms"] - a["duration_ms"]) < 1
        assert at["agentsight.conversation.id"] == a["conversation_id"]
        assert json.loads(at["agentsight.tool.arguments"]) == a["tools_used"]["parameters"]
        assert at.get("agentsight.tool.response") == a["response"]
        assert at.get("agentsight.tool.error") == a["error_msg"]
        assert sp["status"] == ("error" if a["error_msg"] else "ok")
        meta = json.loads(at["agentsight.metadata"])  # tagged with the event id
        assert meta.pop("agentsight_event_id") == a["event_id"]
        assert meta == (a["metadata"] or {})
        assert sp["events"] == []
    assert sorted(sp["span"]["attributes"].get("agentsight.tool.error", "") for sp in
                  r["ingest_spans"])[-2:] == ["returned -1", "returned NULL"]


def test_old_server_gets_action_logs_with_environment():
    """Proves a 0.0.x-only server (no /api/me/, no /api/ingest/) gets the same actions
    through the action_logs API, its conversation created with the environment, and no
    ingest body is ever sent to it."""
    d = tmpdir()
    emu = emulator(d, legacy=True)
    try:
        bare, inst, actions = run_example(emu, d, {"AGENTSIGHT_ENVIRONMENT": ENV_NAME})
        assert inst.returncode == bare.returncode == 0 and inst.stdout == bare.stdout
        r = got(emu)
    finally:
        emu.stop()
    assert r["me_requests"] == 1 and r["ingest_requests"] == [] and r["ingest_spans"] == []
    assert sorted(x["path"] for x in r["rejected"]) == ["/api/me/"]
    logs = {x["metadata"]["agentsight_event_id"]: x for x in r["action_logs"]}
    assert set(logs) == {a["event_id"] for a in actions}
    for a in actions:
        assert logs[a["event_id"]]["action_name"] == a["action_name"]
    assert r["conversation_environments"] == {"demo-conversation": ENV_NAME}


def many(n, conv="conv_gz", size=120):
    return [{"action_name": "tool_%d" % i, "conversation_id": conv, "duration_ms": 1,
             "response": "r" * size, "tools_used": {"parameters": {"i": i}}} for i in range(n)]


def test_gzip_only_above_8k_and_only_when_offered():
    """Proves bodies over 8 KiB are gzipped when /api/me/ lists gzip-ingest and bodies of
    8 KiB or less are not, and that nothing is gzipped for a server that does not list
    it (each run is a new process, so each asks the server afresh)."""
    for offered in (True, False):
        d = tmpdir()
        emu = emulator(d, legacy=False)
        try:
            control(emu, gzip=offered)
            small = send_file(emu, d, many(2, "conv_small"))
            assert small.returncode == 0, small.stderr
            big = send_file(emu, d, many(300))
            assert big.returncode == 0, big.stderr
            r = got(emu)
        finally:
            emu.stop()
        assert r["rejected"] == [] and len(r["ingest_spans"]) == 302
        reqs = r["ingest_requests"]
        assert all(q["status"] == 202 for q in reqs)
        large = [q for q in reqs if q["decoded_bytes"] > 8192]
        small = [q for q in reqs if q["decoded_bytes"] <= 8192]
        assert large and small, reqs
        assert all(q["encoding"] == "identity" for q in small)
        want = "gzip" if offered else "identity"
        assert all(q["encoding"] == want for q in large), reqs
        if offered:
            assert all(q["bytes"] < q["decoded_bytes"] for q in large)


def test_retry_after_is_waited_out():
    """Proves a 429 with Retry-After: 2 on the ingest endpoint is retried no sooner than
    two seconds later, and the action then arrives once."""
    d = tmpdir()
    emu = emulator(d, legacy=False)
    try:
        control(emu, fail_mode="429", fail_count=1, fail_path="/api/ingest/", retry_after=2)
        s = send_file(emu, d, many(1, "conv_ra"))
        assert s.returncode == 0, s.stderr
        r = got(emu)
    finally:
        emu.stop()
    reqs = r["ingest_requests"]
    assert [q["status"] for q in reqs] == [429, 202]
    assert reqs[1]["t"] - reqs[0]["t"] >= 1.95
    assert len(r["ingest_spans"]) == 1 and r["duplicates"] == 0


def test_400_names_blocks_dead_letters_them_and_delivers_the_rest():
    """Proves a 400 from ingest is reported naming the refused conversation block, the
    span its errors name goes to the dead letters with the server's answer, and every
    other action of the same batch (of that block and of the others) is delivered."""
    d = tmpdir()
    emu = emulator(d, legacy=False)
    try:
        lines = many(2, "conv_a") + [{"action_name": "emulator_refuse",
                                      "conversation_id": "conv_bad"}] + many(2, "conv_b")
        lines += many(3, "conv_bad")
        s = send_file(emu, d, lines)
        r = got(emu)
    finally:
        emu.stop()
    assert s.returncode == 1, s.stderr  # one action was not delivered
    assert "conv_bad" in s.stderr and "refused by the emulator" in s.stderr
    assert sorted(e["conversation_id"] for e in r["ingest_spans"]) == [
        "conv_a", "conv_a", "conv_b", "conv_b", "conv_bad", "conv_bad", "conv_bad"]
    dead = read_jsonl(os.path.join(d, "spool", "dead-letter.jsonl"))
    assert [x["action"]["action_name"] for x in dead] == ["emulator_refuse"]
    assert dead[0]["status"] == 400 and "conv_bad" in dead[0]["answer"]
    assert KEY not in s.stderr


def test_failures_then_replay_deliver_every_action_once_by_identity():
    """Proves the write-ahead and spool rules hold for the ingest API: with the first 4
    ingest requests failing (HTTP 500: spooled, each failure pausing the sink), 4,000 actions from 2 threads
    all arrive as spans after `agentsight send`, each with one event id, and a span that
    arrives twice (a retried batch) carries the same span id."""
    d = tmpdir()
    emu = emulator(d, legacy=False)
    try:
        control(emu, fail_mode="500", fail_count=4, fail_path="/api/ingest/")
        env = env_for(emu.endpoint, os.path.join(d, "spool"))
        r = run([agent("api_stress"), "threads", "2", "2000"], env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        outs = []
        for _ in range(8):  # bounded: until the spool is empty
            s = run([CLI, "send", "--timeout", "60000"], env=env, timeout=120)
            outs.append(s.stderr)
            if s.returncode == 0:
                break
        assert s.returncode == 0, outs
        got_ = got(emu)
    finally:
        emu.stop()
    assert got_["failed"] == 4 and got_["rejected"] == []
    seen, span_of = {}, {}
    for e in got_["ingest_spans"]:
        at = e["span"]["attributes"]
        m = json.loads(at["agentsight.metadata"])
        seen.setdefault((m["t"], m["s"]), set()).add(at["agentsight.event_id"])
        span_of.setdefault(at["agentsight.event_id"], set()).add(e["span"]["span_id"])
    assert set(seen) == {(t, s) for t in range(2) for s in range(2000)}
    assert all(len(ids) == 1 for ids in seen.values())
    assert all(len(ids) == 1 for ids in span_of.values())
