"""LLM calls in the span sinks: python3's http.client calls the local model API of
test_llm.py (both providers, JSON and streams, cache and reasoning counts, embeddings, a
404) under `agentsight run --llm`, and the spans are checked against what that server
answered. otlp: one CLIENT span per call named as the action, with the GenAI client
attributes (operation, provider, request and response models, token counts with cached
tokens counted as input, server address and port) and error.type = the HTTP status code
with status ERROR for the failed call, sent as http/json to the AgentSight emulator and as
http/protobuf to the strict collector of test_otel.py, and through the spool when no
collector listens. agentsight: one span of kind llm
per call with the attributes the AgentSight SDK gives its llm spans (model that ran,
requested model, uncached input, cache/reasoning/embedding counts, streaming, error),
validated by the emulator, which sums them per model; an old 0.0.x server gets action
logs. The API key is in no output and in nothing any server received."""
import json
import os
import urllib.request

from common import CLI, read_jsonl, run, tmpdir
from test_delivery import KEY, env_for
from test_ingest import emulator, got
from test_llm import MARKER, start_server
from test_otel import Collector, all_spans

CLIENT = r"""
import http.client, json, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx)
m = [{"role": "user", "content": "hi"}]
calls = [("/v1/chat/completions", {"model": "gpt-cache-4o", "messages": m}),
         ("/v1/chat/completions", {"model": "gpt-4o-mini", "stream": True, "messages": m,
                                   "stream_options": {"include_usage": True}}),
         ("/v1/messages", {"model": "claude-cache-haiku", "max_tokens": 9, "messages": m}),
         ("/v1/messages", {"model": "claude-3-5-haiku", "max_tokens": 9, "stream": True,
                           "messages": m}),
         ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "abc"}),
         ("/v1/nope/completions", {"model": "nope"})]
for path, body in calls:
    c.request("POST", path, body=json.dumps(body),
              headers={"Authorization": "Bearer %s", "Content-Type": "application/json"})
    r = c.getresponse()
    print(r.status, len(r.read()))
c.close()
""" % MARKER

# (operation, provider, requested model, stream) of each call of CLIENT, in order
CALLS = [("chat", "openai", "gpt-cache-4o", False),
         ("chat", "openai", "gpt-4o-mini", True),
         ("chat", "anthropic", "claude-cache-haiku", False),
         ("chat", "anthropic", "claude-3-5-haiku", True),
         ("embeddings", "openai", "text-embedding-3-small", False),
         ("text_completion", "openai", "nope", False)]


def traced(srv, crt, d, outputs, env):
    """CLIENT bare, then under `agentsight run --llm -o OUTPUTS,file:...`: same output and
    exit code; returns (run, actions of the file sink, what the server sent the traced
    run)."""
    argv = ["python3", "-c", CLIENT, str(srv.server_address[1]), crt]
    bare = run(argv)
    srv.sent.clear()
    out = os.path.join(d, "actions.jsonl")
    env = dict(env, AGENTSIGHT_SPOOL_DIR=os.path.join(d, "spool"))
    p = run([CLI, "run", "-q", "--llm", "-o", outputs + ",file:" + out, "--"] + argv, env=env)
    assert p.stdout == bare.stdout and p.returncode == bare.returncode, p.stderr
    assert MARKER not in p.stdout + p.stderr
    acts = read_jsonl(out)
    assert len(acts) == len(CALLS) == len(srv.sent), (acts, p.stderr)
    return p, acts, list(srv.sent)


def check_otlp(spans, acts, sent, port):
    """The LLM spans of one otlp export against the calls and the server's answers."""
    llm = [sp for _, sp in spans if sp["kind"] == 3]
    roots = {sp["spanId"]: sp for _, sp in spans if not sp["parentSpanId"]}
    assert len(llm) == len(CALLS) and len(roots) == 1, [sp["name"] for _, sp in spans]
    by_event = {sp["attributes"]["agentsight.event_id"]: sp for sp in llm}
    for act, (op, prov, model, stream), s in zip(acts, CALLS, sent):
        sp = by_event[act["event_id"]]
        at = sp["attributes"]
        assert sp["name"] == act["action_name"] == "%s %s" % (op, model), sp
        assert sp["parentSpanId"] in roots  # a child of its process's span
        assert sp["start"] <= sp["end"]
        want = {"gen_ai.operation.name": op, "gen_ai.provider.name": prov,
                "gen_ai.request.model": model, "server.address": "127.0.0.1",
                "server.port": port, "http.response.status_code": s["status"],
                "gen_ai.conversation.id": act["conversation_id"],
                "agentsight.event_id": act["event_id"]}
        if s["model"]:
            want["gen_ai.response.model"] = s["model"]
        if s["in"] is not None:  # cached tokens are input tokens too
            want["gen_ai.usage.input_tokens"] = s["in"] + (
                (s.get("cr") or 0) + (s.get("cw") or 0) if prov == "anthropic" else 0)
        if s["out"] is not None:
            want["gen_ai.usage.output_tokens"] = s["out"]
        if s.get("cr"):
            want["gen_ai.usage.cache_read.input_tokens"] = s["cr"]
        if s.get("cw"):
            want["gen_ai.usage.cache_creation.input_tokens"] = s["cw"]
        if s.get("rs"):
            want["gen_ai.usage.reasoning.output_tokens"] = s["rs"]
        if s["status"] >= 400:
            want["error.type"] = str(s["status"])
            assert sp["status"] == {"code": 2, "message": "HTTP %d: %s" % (
                s["status"], s["error"])}, sp["status"]
        else:
            assert sp["status"]["code"] == 0, sp
        assert at == want, (at, want)
    return llm


def no_key_in(*texts):
    for t in texts:
        assert MARKER not in t


def test_otlp_json_to_emulator():
    """Proves `-o otlp` with OTEL_EXPORTER_OTLP_PROTOCOL=http/json delivers one CLIENT
    span per LLM call to the emulator's /v1/traces, each attribute equal to what the
    server answered (models, tokens with cache counts, address, port), the 404 with
    error.type "404" and status ERROR carrying the API's message."""
    d = tmpdir()
    srv, crt = start_server(d)
    emu = emulator(d, legacy=False)
    try:
        p, acts, sent = traced(srv, crt, d, "otlp", {
            "OTEL_EXPORTER_OTLP_ENDPOINT": emu.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
        r = got(emu)
    finally:
        emu.stop()
        srv.shutdown()
    spans = []
    for e in r["spans"]:
        sp = e["span"]
        at = {}
        for kv in sp["attributes"]:
            v = kv["value"]
            (k, x), = v.items()
            at[kv["key"]] = int(x) if k == "intValue" else x
        spans.append((None, {"name": sp["name"], "kind": sp["kind"], "spanId": sp["spanId"],
                             "parentSpanId": sp.get("parentSpanId", ""),
                             "start": int(sp["startTimeUnixNano"]),
                             "end": int(sp["endTimeUnixNano"]), "attributes": at,
                             "status": {"code": sp.get("status", {}).get("code", 0),
                                        "message": sp.get("status", {}).get("message", "")}}))
    check_otlp(spans, acts, sent, srv.server_address[1])
    no_key_in(json.dumps(r), p.stderr)


def test_otlp_protobuf_strict_collector():
    """Proves the default http/protobuf export carries the same LLM spans (kind CLIENT =
    3, integer token counts, error.type and status code 2 for the 404), decoded field by
    field by test_otel.py's strict protobuf reader, which refuses any unexpected field."""
    d = tmpdir()
    srv, crt = start_server(d)
    col = Collector()
    try:
        p, acts, sent = traced(srv, crt, d, "otlp", {"OTEL_EXPORTER_OTLP_ENDPOINT": col.url})
        reqs = col.requests()
        raw = b"".join(body for _, _, body in col.got)
    finally:
        col.stop()
        srv.shutdown()
    assert reqs and all(h["content-type"] == "application/x-protobuf" for _, h, _ in reqs)
    check_otlp(all_spans(reqs), acts, sent, srv.server_address[1])
    assert MARKER.encode() not in raw


def test_agentsight_ingest_llm_spans():
    """Proves `-o agentsight` sends each LLM call to today's ingest API as a span of kind
    llm, accepted by the emulator's strict validation, named by the model that ran, with
    the SDK's attributes: gen_ai.system, gen_ai.request.model = the model the server
    answered with and agentsight.llm.requested_model = the one asked for, uncached input
    tokens (OpenAI's cached ones subtracted), cache/reasoning counts, embedding tokens for
    embeddings, streaming for streams, and for the 404 status error with
    agentsight.llm.error and usage_reported false; the emulator's per-model sums equal the
    server's counts. A 0.0.x server (--legacy) gets the same calls as action logs."""
    d = tmpdir()
    srv, crt = start_server(d)
    port = srv.server_address[1]
    emu = emulator(d, legacy=False)
    try:
        p, acts, sent = traced(srv, crt, d, "agentsight", env_for(emu.endpoint, ""))
        r = got(emu)
    finally:
        emu.stop()
    assert r["rejected"] == [] and r["action_logs"] == [], r["rejected"]
    spans = {e["span"]["attributes"]["agentsight.event_id"]: e["span"] for e in r["ingest_spans"]}
    assert len(spans) == len(CALLS), spans
    usage = {}
    for act, (op, prov, model, stream), s in zip(acts, CALLS, sent):
        sp = spans[act["event_id"]]
        at = sp["attributes"]
        ran = s["model"] or model
        assert sp["kind"] == "llm" and sp["name"] == ran, sp
        inp = s["in"] or 0
        if prov == "openai" and s.get("cr"):
            inp -= s["cr"]
        want = {"agentsight.span.kind": "llm",
                "agentsight.conversation.id": act["conversation_id"],
                "agentsight.entity.name": ran, "gen_ai.system": prov,
                "gen_ai.provider.name": prov, "gen_ai.operation.name": op,
                "gen_ai.request.model": ran,
                "gen_ai.usage.input_tokens": 0 if op == "embeddings" else inp,
                "gen_ai.usage.output_tokens": s["out"] or 0,
                "server.address": "127.0.0.1", "server.port": port,
                "http.response.status_code": s["status"],
                "agentsight.metadata": at.get("agentsight.metadata"),
                "agentsight.event_id": act["event_id"]}
        assert json.loads(at["agentsight.metadata"])["source"] == "llm"
        if ran != model:
            want["agentsight.llm.requested_model"] = model
        if s["model"]:
            want["gen_ai.response.model"] = s["model"]
        if op == "embeddings":
            want["agentsight.llm.embedding_tokens"] = s["in"]
        for k, f in (("cr", "cache_read_tokens"), ("cw", "cache_write_tokens"),
                     ("rs", "reasoning_tokens")):
            if s.get(k):
                want["agentsight.llm." + f] = s[k]
        if stream:
            want["agentsight.llm.streaming"] = True
        if s["status"] >= 400:
            want["agentsight.llm.error"] = "HTTP %d: %s" % (s["status"], s["error"])
            want["agentsight.llm.usage_reported"] = False
            assert sp["status"] == "error"
        else:
            assert sp["status"] == "ok"
        assert at == want, (at, want)
        u = usage.setdefault(ran, {"calls": 0, "errors": 0})
        u["calls"] += 1
        u["errors"] += s["status"] >= 400
        for k, v in at.items():
            if k.endswith("_tokens"):
                u[k.rsplit(".", 1)[1]] = u.get(k.rsplit(".", 1)[1], 0) + v
    assert r["llm_usage"] == usage, (r["llm_usage"], usage)
    no_key_in(json.dumps(r), p.stderr)

    emu = emulator(d, legacy=True)
    try:
        p, acts, sent = traced(srv, crt, tmpdir(), "agentsight", env_for(emu.endpoint, ""))
        r = got(emu)
    finally:
        emu.stop()
        srv.shutdown()
    assert sorted(a["action_name"] for a in r["action_logs"]) == \
        sorted(a["action_name"] for a in acts), r["action_logs"]
    no_key_in(json.dumps(r), p.stderr)


def test_otlp_spooled_llm_spans_replayed_intact():
    """Proves an LLM span survives the spool: with no collector listening the calls are
    spooled, and `agentsight send` later delivers them (protobuf) as the same CLIENT spans
    with every gen_ai.* value equal to what the server answered, each exactly once."""
    d = tmpdir()
    srv, crt = start_server(d)
    col = Collector()
    url = col.url
    col.stop()  # the port is closed now: nothing listens
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": url, "AGENTSIGHT_FLUSH_TIMEOUT_MS": "500"}
    try:
        p, acts, sent = traced(srv, crt, d, "otlp", env)
    finally:
        srv.shutdown()
    col = Collector(port=int(url.rsplit(":", 1)[1]))
    try:
        r = run([CLI, "send", "--timeout", "20000"],
                env=dict(env, AGENTSIGHT_SPOOL_DIR=os.path.join(d, "spool")), cwd=d)
        assert r.returncode == 0, r.stderr
        reqs = col.requests()
    finally:
        col.stop()
    check_otlp(all_spans(reqs), acts, sent, srv.server_address[1])
