"""Integration tests of the otlp sink as OpenTelemetry users configure it: `-o otlp` with
the OTEL_EXPORTER_OTLP_* variables, http/protobuf (the default) and http/json, gzip,
headers, OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, OTEL_SDK_DISABLED, and spans shaped
by the GenAI execute_tool conventions in a process tree. The collector is written here
(http.server on 127.0.0.1) and decodes every body strictly with its own protobuf
wire-format reader (field numbers of opentelemetry-proto's ExportTraceServiceRequest) or
as OTLP/JSON; a field it does not expect fails the test."""
import gzip
import http.server
import json
import os
import re
import struct
import threading

from common import CLI, agent, read_jsonl, run, tmpdir

AGENT = agent("tracer_agent")
ENTRIES = ["-e", "int multiply(int a, int b)", "-e", "bool tool_is_even(int x) error_if=false"]
SECRET = "S3cr3tV4lue9"
BEARER = "tok7Qz123"


# ---- a strict protobuf reader -------------------------------------------------------------

class Bad(Exception):
    pass


def _varint(b, i):
    v, shift = 0, 0
    for n in range(10):
        if i >= len(b):
            raise Bad("truncated varint")
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if not c & 0x80:
            return v, i
        shift += 7
    raise Bad("varint longer than 10 bytes")


def fields(b):
    """Splits a message into (field, wire type, value) triples; raises Bad on anything
    malformed (truncation, wire types 3/4/5 unused by OTLP traces, field 0)."""
    out, i = [], 0
    while i < len(b):
        key, i = _varint(b, i)
        f, wt = key >> 3, key & 7
        if f == 0:
            raise Bad("field number 0")
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            if i + 8 > len(b):
                raise Bad("truncated fixed64")
            v, i = b[i:i + 8], i + 8
        elif wt == 2:
            n, i = _varint(b, i)
            if i + n > len(b):
                raise Bad("truncated length-delimited field")
            v, i = b[i:i + n], i + n
        else:
            raise Bad("unexpected wire type %d" % wt)
        out.append((f, wt, v))
    return out


def message(b, schema):
    """Decodes b by schema {field: (name, wire type, kind, repeated)}; unknown fields and
    wrong wire types raise Bad. kind: 'str', 'bytes', 'u64', 'fixed64', or a decoder."""
    res = {}
    for f, wt, v in fields(b):
        if f not in schema:
            raise Bad("unexpected field %d" % f)
        name, want, kind, rep = schema[f]
        if wt != want:
            raise Bad("field %d (%s): wire type %d, expected %d" % (f, name, wt, want))
        if kind == "str":
            v = v.decode("utf-8")
        elif kind == "bytes":
            v = bytes(v)
        elif kind == "fixed64":
            v = struct.unpack("<Q", v)[0]
        elif kind == "u64":
            pass
        else:
            v = kind(v)
        if rep:
            res.setdefault(name, []).append(v)
        elif name in res:
            raise Bad("field %s repeated" % name)
        else:
            res[name] = v
    return res


def any_value(b):
    m = message(b, {1: ("s", 2, "str", False), 2: ("b", 0, "u64", False),
                    3: ("i", 0, "u64", False), 4: ("d", 1, "bytes", False),
                    5: ("a", 2, array_value, False), 6: ("kv", 2, kv_list, False),
                    7: ("raw", 2, "bytes", False)})
    if len(m) > 1:
        raise Bad("AnyValue with %d values" % len(m))
    if not m:
        return None
    (k, v), = m.items()
    if k == "b":
        if v not in (0, 1):
            raise Bad("bool value %d" % v)
        return bool(v)
    if k == "i":
        return v - (1 << 64) if v >= 1 << 63 else v
    if k == "d":
        return struct.unpack("<d", v)[0]
    return v


def array_value(b):
    return message(b, {1: ("values", 2, any_value, True)}).get("values", [])


def key_value(b):
    m = message(b, {1: ("key", 2, "str", False), 2: ("value", 2, any_value, False)})
    return m["key"], m.get("value")


def kv_list(b):
    return attrs(message(b, {1: ("values", 2, key_value, True)}).get("values", []))


def attrs(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise Bad("attribute %s twice" % k)
        d[k] = v
    return d


def status(b):
    m = message(b, {2: ("message", 2, "str", False), 3: ("code", 0, "u64", False)})
    return {"code": m.get("code", 0), "message": m.get("message", "")}


def span_pb(b):
    m = message(b, {1: ("trace", 2, "bytes", False), 2: ("span", 2, "bytes", False),
                    3: ("state", 2, "str", False), 4: ("parent", 2, "bytes", False),
                    5: ("name", 2, "str", False), 6: ("kind", 0, "u64", False),
                    7: ("start", 1, "fixed64", False), 8: ("end", 1, "fixed64", False),
                    9: ("attrs", 2, key_value, True), 15: ("status", 2, status, False)})
    for k, n in (("trace", 16), ("span", 8)):
        if len(m.get(k, b"")) != n:
            raise Bad("%s id of %d bytes" % (k, len(m.get(k, b""))))
    if "parent" in m and len(m["parent"]) != 8:
        raise Bad("parent id of %d bytes" % len(m["parent"]))
    return {"traceId": m["trace"].hex(), "spanId": m["span"].hex(),
            "parentSpanId": m.get("parent", b"").hex(), "name": m["name"],
            "kind": m["kind"], "start": m["start"], "end": m["end"],
            "attributes": attrs(m.get("attrs", [])),
            "status": m.get("status", {"code": 0, "message": ""})}


def decode_pb(body):
    """ExportTraceServiceRequest -> [(resource attributes, scope, [span])]."""
    def scope(b):
        return message(b, {1: ("name", 2, "str", False), 2: ("version", 2, "str", False)})

    def scope_spans(b):
        return message(b, {1: ("scope", 2, scope, False), 2: ("spans", 2, span_pb, True),
                           3: ("schema", 2, "str", False)})

    def resource(b):
        return attrs(message(b, {1: ("attrs", 2, key_value, True)}).get("attrs", []))

    def resource_spans(b):
        return message(b, {1: ("resource", 2, resource, False),
                           2: ("scope_spans", 2, scope_spans, True),
                           3: ("schema", 2, "str", False)})

    req = message(body, {1: ("rs", 2, resource_spans, True)})
    out = []
    for rs in req["rs"]:
        for ss in rs["scope_spans"]:
            out.append((rs["resource"], ss["scope"], ss.get("spans", [])))
    return out


# ---- OTLP/JSON, read as strictly --------------------------------------------------------

def any_json(v):
    if not isinstance(v, dict) or len(v) > 1:
        raise Bad("AnyValue %r" % (v,))
    if not v:
        return None
    (k, x), = v.items()
    if k == "stringValue" and isinstance(x, str):
        return x
    if k == "boolValue" and isinstance(x, bool):
        return x
    if k == "intValue" and isinstance(x, str) and re.fullmatch(r"-?\d+", x):
        return int(x)
    if k == "doubleValue" and isinstance(x, (int, float)):
        return float(x)
    if k == "arrayValue":
        return [any_json(e) for e in x.get("values", [])]
    if k == "kvlistValue":
        return attrs_json(x.get("values", []))
    raise Bad("AnyValue member %s=%r" % (k, x))


def attrs_json(lst):
    return attrs((kv["key"], any_json(kv["value"])) for kv in lst)


def decode_json(body):
    req = json.loads(body)
    if set(req) != {"resourceSpans"}:
        raise Bad("request keys %s" % sorted(req))
    out = []
    for rs in req["resourceSpans"]:
        res = attrs_json(rs["resource"]["attributes"])
        for ss in rs["scopeSpans"]:
            spans = []
            for s in ss["spans"]:
                allowed = {"traceId", "spanId", "parentSpanId", "name", "kind",
                           "startTimeUnixNano", "endTimeUnixNano", "attributes", "status"}
                if set(s) - allowed:
                    raise Bad("span keys %s" % sorted(set(s) - allowed))
                for k, n in (("traceId", 32), ("spanId", 16)):
                    if not re.fullmatch("[0-9a-f]{%d}" % n, s[k]):
                        raise Bad("%s %r" % (k, s[k]))
                st = s.get("status", {})
                spans.append({"traceId": s["traceId"], "spanId": s["spanId"],
                              "parentSpanId": s.get("parentSpanId", ""), "name": s["name"],
                              "kind": s["kind"], "start": int(s["startTimeUnixNano"]),
                              "end": int(s["endTimeUnixNano"]),
                              "attributes": attrs_json(s["attributes"]),
                              "status": {"code": st.get("code", 0),
                                         "message": st.get("message", "")}})
            out.append((res, ss["scope"], spans))
    return out


# ---- the collector ------------------------------------------------------------------------

class Collector:
    """Answers every POST with `status` and keeps (path, headers, raw body)."""

    def __init__(self, status=200, port=0):
        self.got, self.status = [], status
        owner = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                owner.got.append((self.path, dict(self.headers.items()), body))
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()

    def requests(self):
        """Every request decoded by its Content-Type (and Content-Encoding)."""
        out = []
        for path, h, body in self.got:
            h = {k.lower(): v for k, v in h.items()}
            if h.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            elif "content-encoding" in h:
                raise Bad("content-encoding %s" % h["content-encoding"])
            ct = h.get("content-type")
            if ct == "application/x-protobuf":
                dec = decode_pb(body)
            elif ct == "application/json":
                dec = decode_json(body)
            else:
                raise Bad("content-type %r" % ct)
            out.append((path, h, dec))
        return out


def traced(extra_env, argv, d, outputs="otlp", entries=ENTRIES):
    """Runs argv bare and under `agentsight run -o OUTPUTS`; checks both print the same and
    exit the same; returns the traced run."""
    bare = run(argv, cwd=d)
    env = {"AGENTSIGHT_SPOOL_DIR": os.path.join(d, "spool")}
    env.update(extra_env)
    p = run([CLI, "run", "-q", "-o", outputs] + entries + ["--"] + argv, env=env, cwd=d)
    assert p.stdout == bare.stdout and p.returncode == bare.returncode, p.stderr
    return p


def all_spans(reqs):
    return [(res, sp) for _, _, dec in reqs for res, _, spans in dec for sp in spans]


def check_tree(spans, nproc):
    """Every tool span is the child of its process's root span, in the same trace; there is
    one root per process; gen_ai.tool.call.id is unique."""
    roots = {sp["spanId"]: sp for _, sp in spans if not sp["parentSpanId"]}
    tools = [sp for _, sp in spans if sp["parentSpanId"]]
    assert len(roots) == nproc, [sp["name"] for _, sp in spans]
    for sp in roots.values():
        assert sp["name"].startswith("process "), sp
    for sp in tools:
        root = roots[sp["parentSpanId"]]
        assert sp["traceId"] == root["traceId"]
        assert root["start"] <= sp["start"] <= sp["end"] <= root["end"]
    ids = [sp["attributes"]["gen_ai.tool.call.id"] for sp in tools]
    assert len(set(ids)) == len(ids)
    return roots, tools


def secrets_nowhere(d, *texts):
    for t in texts:
        assert SECRET not in t and BEARER not in t
    for top, _, files in os.walk(d):
        for f in files:
            with open(os.path.join(top, f), "rb") as fh:
                data = fh.read()
            assert SECRET.encode() not in data and BEARER.encode() not in data, f


def test_protobuf_default_genai_tree_headers_resource():
    """Proves `-o otlp` with OTEL_EXPORTER_OTLP_ENDPOINT posts http/protobuf (the OTel
    default) to ENDPOINT/v1/traces, decoded strictly: the headers of
    OTEL_EXPORTER_OTLP_HEADERS arrive (percent-decoded) and are in no output or file;
    OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES shape the resource beside
    telemetry.sdk.* and service.instance.id; each call is an execute_tool span (tool type,
    unique call id = the action's event_id, arguments as a structured value, result only on
    success, error.type on failure) under one root span of its process; the span count
    equals the file sink's action count."""
    d = tmpdir()
    col = Collector()
    jsonl = os.path.join(d, "a.jsonl")
    try:
        p = traced({"OTEL_EXPORTER_OTLP_ENDPOINT": col.url + "/",
                    "OTEL_EXPORTER_OTLP_HEADERS":
                        "x-api-key=%s, authorization=Bearer%%20%s" % (SECRET, BEARER),
                    "OTEL_SERVICE_NAME": "svc-a",
                    "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test,team=a%2Cb",
                    "AGENTSIGHT_OTLP_CAPTURE": "1"},
                   [AGENT, "2"], d, outputs="otlp,file:" + jsonl)
        reqs = col.requests()
    finally:
        col.stop()
    assert reqs, p.stderr
    for path, h, _ in reqs:
        assert path == "/v1/traces"
        assert h["content-type"] == "application/x-protobuf"
        assert h["x-api-key"] == SECRET and h["authorization"] == "Bearer " + BEARER
    secrets_nowhere(d, p.stderr, p.stdout)
    spans = all_spans(reqs)
    for res, _ in spans:
        assert res["service.name"] == "svc-a"
        assert res["deployment.environment"] == "test" and res["team"] == "a,b"
        assert res["telemetry.sdk.name"] == "agentsight"
        assert res["telemetry.sdk.language"] and res["telemetry.sdk.version"]
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                            res["service.instance.id"])
    roots, tools = check_tree(spans, 1)
    actions = read_jsonl(jsonl)
    assert len(tools) == len(actions) == 11
    assert {sp["attributes"]["gen_ai.tool.call.id"] for sp in tools} == \
        {a["event_id"] for a in actions}
    for sp in tools:
        at = sp["attributes"]
        tool = at["gen_ai.tool.name"]
        assert sp["name"] == "execute_tool " + tool and sp["kind"] == 1
        assert at["gen_ai.operation.name"] == "execute_tool"
        assert at["gen_ai.tool.type"] == "function"
        args = at["gen_ai.tool.call.arguments"]
        if tool == "multiply":
            assert set(args) == {"a", "b"} and all(isinstance(v, int) for v in args.values())
            assert at["gen_ai.tool.call.result"] == str(args["a"] * args["b"])
            assert "error.type" not in at and sp["status"]["code"] == 0
        else:
            assert tool == "tool_is_even" and isinstance(args["x"], int)
            if args["x"] % 2:
                assert at["error.type"] == "error_return" and sp["status"]["code"] == 2
                assert "gen_ai.tool.call.result" not in at
            else:
                assert "error.type" not in at and at["gen_ai.tool.call.result"] == "true"


def test_json_gzip_traces_endpoint_errno_no_capture():
    """Proves http/json with gzip to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT used as it is (no
    /v1/traces added): the body is a gzip member holding OTLP/JSON; service.name comes from
    OTEL_RESOURCE_ATTRIBUTES when OTEL_SERVICE_NAME is unset; a call failing with errno
    names it in error.type (ENOENT); without capture no arguments or result are sent; the
    tree holds for a program that fails (cat exits 1 under the interposer as bare)."""
    d = tmpdir()
    col = Collector()
    try:
        traced({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": col.url + "/custom/traces",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
                "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
                "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-res"},
               ["cat", os.path.join(d, "missing")], d,
               entries=["-e", "int open(const char *path, int flags) error_if=negative"])
        reqs = col.requests()
    finally:
        col.stop()
    assert reqs
    for path, h, _ in reqs:
        assert path == "/custom/traces"
        assert h["content-type"] == "application/json" and h["content-encoding"] == "gzip"
    spans = all_spans(reqs)
    assert all(res["service.name"] == "from-res" for res, _ in spans)
    _, tools = check_tree(spans, 1)
    failed = [sp for sp in tools if "error.type" in sp["attributes"]]
    assert failed and all(sp["attributes"]["error.type"] == "ENOENT" for sp in failed)
    for sp in tools:
        assert "gen_ai.tool.call.arguments" not in sp["attributes"]
        assert "gen_ai.tool.call.result" not in sp["attributes"]


def test_sdk_disabled():
    """Proves OTEL_SDK_DISABLED=true turns the otlp sink off: nothing reaches the collector
    and nothing is spooled for it, while the file sink beside it still gets every action and
    the program behaves as bare."""
    d = tmpdir()
    col = Collector()
    jsonl = os.path.join(d, "a.jsonl")
    try:
        traced({"OTEL_EXPORTER_OTLP_ENDPOINT": col.url, "OTEL_SDK_DISABLED": "true"},
               [AGENT, "1"], d, outputs="otlp,file:" + jsonl)
    finally:
        col.stop()
    assert col.got == []
    assert len(read_jsonl(jsonl)) == 7
    spooled = [f for _, _, fs in os.walk(os.path.join(d, "spool")) for f in fs
               if f.endswith(".jsonl") or ".claim-" in f]
    assert spooled == []


def test_refused_export_keeps_headers_secret():
    """Proves a collector refusing the export (HTTP 400) puts the spans into the dead-letter
    file, and the header values of OTEL_EXPORTER_OTLP_TRACES_HEADERS (which wins over the
    general variable) are sent but appear neither in that file, nor the spool, nor stderr."""
    d = tmpdir()
    col = Collector(status=400)
    try:
        p = traced({"OTEL_EXPORTER_OTLP_ENDPOINT": col.url,
                    "OTEL_EXPORTER_OTLP_HEADERS": "x-general=1",
                    "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-api-key=" + SECRET},
                   [AGENT, "0"], d)
        reqs = col.requests()
    finally:
        col.stop()
    assert reqs and all(h["x-api-key"] == SECRET and "x-general" not in h for _, h, _ in reqs)
    dead = os.path.join(d, "spool", "dead-letter.jsonl")
    assert len(read_jsonl(dead)) >= 3, p.stderr
    secrets_nowhere(d, p.stderr, p.stdout)


def test_spooled_then_sent_keeps_tree():
    """Proves the durable hand-off keeps the trace tree: with no collector listening, every
    tool span and the process span are spooled (nothing lost); `agentsight send` later
    delivers them (protobuf) to a collector, the tool spans still children of the process
    span of the program that made them, each exactly once."""
    d = tmpdir()
    col = Collector()
    url = col.url
    col.stop()  # the port is closed now: nothing listens
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": url, "AGENTSIGHT_FLUSH_TIMEOUT_MS": "500"}
    traced(env, [AGENT, "1"], d)
    # the spool is kept per collector URL: the collector comes up on that same port
    col = Collector(port=int(url.rsplit(":", 1)[1]))
    try:
        sent = dict(env, AGENTSIGHT_SPOOL_DIR=os.path.join(d, "spool"))
        r = run([CLI, "send", "--timeout", "20000"], env=sent, cwd=d)
        assert r.returncode == 0, r.stderr
        reqs = col.requests()
    finally:
        col.stop()
    spans = all_spans(reqs)
    roots, tools = check_tree(spans, 1)
    assert len(tools) == 7
    assert list(roots.values())[0]["name"] == "process tracer_agent"

