#!/usr/bin/env python3
"""A local emulator of the AgentSight API (and of an OTLP/HTTP JSON collector) for the
tests, the benchmarks and the demo. It checks the key and the request shapes, stores what
it received, and can be told to fail.

Usage:
  agentsight_emulator.py [--port N] [--key KEY] [--store FILE.jsonl]
                         [--fail-mode none|500|429|slow|drop] [--fail-count N]
                         [--fail-path PREFIX] [--slow-seconds S] [--retry-after S]
                         [--max-seconds S] [--legacy] [--no-gzip]

The first line on stdout is the port it listens on (127.0.0.1 only; --port 0 picks one).

API (today's; absent with --legacy, which makes it a 0.0.x-only server answering 404):
  GET  /api/me/               {"capabilities": ["ingest", "gzip-ingest"]} (no gzip-ingest
                              with --no-gzip)
  POST /api/ingest/           {"sdk": {"name", "version"}, "conversations": [block...]},
                              validated strictly: unknown fields of the body, of a block or
                              of a span are refused, every type is checked, tool spans must
                              carry the agentsight.* tool attributes, llm spans
                              gen_ai.system and integer gen_ai.usage.input_tokens /
                              output_tokens (status error exactly with
                              agentsight.llm.error). A refusal is a 400
                              naming each offending block: {"detail", "conversations":
                              [{"index", "conversation_id", "errors": {field: [msg]}}]};
                              the batch is then taken whole or not at all. A span named
                              "emulator_refuse" is refused. Content-Encoding: gzip is
                              taken only while gzip-ingest is offered (else 415).
0.0.x API:
  POST /api/conversations/    {"conversation_id": str, "environment": str (optional)}
                              -> {"id": int, ...} (get-or-create)
  POST /api/action_logs/      action_name (str), conversation (int, created before),
                              conversation_id (str, matching), optional track_action fields
  GET  /api/actions/?name=N   {"results": [{"id", "name", "display_name"}]}
  POST /api/actions/          {"name", "display_name"};  PATCH /api/actions/{id}/
  POST /v1/traces             OTLP/HTTP JSON export; spans stored
Control (no key):
  POST /_control  {"fail_mode": "...", "fail_count": N, "fail_path": P, "slow_seconds": S,
                   "retry_after": S, "legacy": bool, "gzip": bool}
  GET  /_received everything stored, and "llm_usage": per model that ran, the llm spans'
                  calls, errors and summed token counts; GET /_stats counts only.
Keys are never stored: /_received lists a fingerprint of each Authorization header seen
("Api-Key " + the first 8 characters of the key + "...") and "auth_matched", the number of
requests whose key was exactly --key. A request whose Content-Length is not a whole
number from 0 to 64 MiB is answered 400 and its connection closed.
Failure modes apply to /api/ and /v1/ requests: 500, 429 (with Retry-After), slow (answer
after --slow-seconds), drop (close the connection without an answer). --fail-count N fails
the next N requests only (0: until told otherwise); --fail-path PREFIX limits failures to
requests whose path starts with PREFIX (e.g. /api/action_logs/). Exits on SIGTERM or after
--max-seconds.
"""
import argparse
import datetime
import gzip
import re
import json
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.key = args.key
        self.fail_mode = args.fail_mode
        self.fail_count = args.fail_count
        self.fail_path = args.fail_path
        self.slow_seconds = args.slow_seconds
        self.retry_after = args.retry_after
        self.legacy = args.legacy
        self.gzip = not args.no_gzip
        self.ingest_spans = []     # spans taken, each with its block's conversation fields
        self.ingest_requests = []  # every /api/ingest/ request: time, size, encoding, status
        self.me_requests = 0
        self.conv_env = {}
        self.conversations = {}
        self.action_logs = []
        self.spans = []
        self.actions = {}
        self.event_ids = {}
        self.duplicates = 0
        self.rejected = []
        self.requests = 0
        self.failed = 0
        self.auth_headers = set()  # fingerprints only (see fingerprint())
        self.auth_matched = 0
        self.store = open(args.store, "a", encoding="utf-8") if args.store else None

    def save(self, kind, obj):
        if self.store:
            self.store.write(json.dumps({"kind": kind, "data": obj}) + "\n")
            self.store.flush()

    def take_failure(self, path):
        """The failure mode for this request, counting down --fail-count."""
        with self.lock:
            mode = self.fail_mode
            if mode == "none" or not path.startswith(self.fail_path):
                return "none"
            if self.fail_count > 0:
                self.fail_count -= 1
                if self.fail_count == 0:
                    self.fail_mode = "none"
            self.failed += 1
            return mode

    def count_event(self, event_id):
        if not event_id:
            return
        n = self.event_ids.get(event_id, 0)
        if n:
            self.duplicates += 1
        self.event_ids[event_id] = n + 1


STATE = None
MAX_BODY = 64 << 20

HEX = "0123456789abcdef"
BLOCK_FIELDS = {"conversation_id", "environment", "metadata", "customer_id",
                "customer_ip_address", "device", "source", "language", "name", "spans"}
SPAN_FIELDS = {"span_id", "trace_id", "parent_span_id", "kind", "name", "started_at",
               "ended_at", "duration_ms", "status", "attributes", "events", "otel"}
SPAN_REQUIRED = SPAN_FIELDS - {"otel"}


def is_hex(v, n):
    return isinstance(v, str) and len(v) == n and all(c in HEX for c in v) and v != "0" * n


def iso_time(v):
    """A datetime from an ISO-8601 string with a zone, or None."""
    if not isinstance(v, str):
        return None
    try:
        t = datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else None


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def span_errors(sp, block_cid):
    """Field errors of one span: {field: [message]}."""
    errs = {}

    def bad(field, msg):
        errs.setdefault(field, []).append(msg)

    if not isinstance(sp, dict):
        bad("spans", "expected an object")
        return errs
    for f in sorted(set(sp) - SPAN_FIELDS):
        bad(f, "unknown field")
    for f in sorted(SPAN_REQUIRED - set(sp)):
        bad(f, "required")
    if "span_id" in sp and not is_hex(sp["span_id"], 16):
        bad("span_id", "16 lowercase hex digits, not all zero")
    if "trace_id" in sp and not is_hex(sp["trace_id"], 32):
        bad("trace_id", "32 lowercase hex digits, not all zero")
    if sp.get("parent_span_id") is not None and not is_hex(sp["parent_span_id"], 16):
        bad("parent_span_id", "null or 16 hex digits")
    for f in ("kind", "name"):
        if f in sp and (not isinstance(sp[f], str) or not sp[f]):
            bad(f, "non-empty string")
    t0, t1 = iso_time(sp.get("started_at")), iso_time(sp.get("ended_at"))
    if "started_at" in sp and t0 is None:
        bad("started_at", "ISO-8601 time with a zone")
    if "ended_at" in sp and t1 is None:
        bad("ended_at", "ISO-8601 time with a zone")
    if t0 and t1 and t1 < t0:
        bad("ended_at", "before started_at")
    if "duration_ms" in sp and (not is_number(sp["duration_ms"]) or sp["duration_ms"] < 0):
        bad("duration_ms", "non-negative number")
    if "status" in sp and sp["status"] not in ("ok", "error", "unset"):
        bad("status", "ok, error or unset")
    if "events" in sp and not isinstance(sp["events"], list):
        bad("events", "list")
    at = sp.get("attributes")
    if "attributes" in sp and not isinstance(at, dict):
        bad("attributes", "object")
        at = None
    if at is not None:
        for k, v in at.items():
            if not isinstance(v, (str, int, float, bool)):
                bad("attributes." + k, "primitive value")
        if at.get("agentsight.span.kind") != sp.get("kind"):
            bad("attributes.agentsight.span.kind", "must equal kind")
        if at.get("agentsight.conversation.id") != block_cid:
            bad("attributes.agentsight.conversation.id", "must equal the block's id")
        if sp.get("kind") == "tool":
            if not isinstance(at.get("agentsight.tool.name"), str):
                bad("attributes.agentsight.tool.name", "required string")
            for f in ("agentsight.tool.response", "agentsight.tool.error"):
                if f in at and not isinstance(at[f], str):
                    bad("attributes." + f, "string")
            if "agentsight.tool.arguments" in at:
                try:
                    json.loads(at["agentsight.tool.arguments"])
                except (TypeError, ValueError):
                    bad("attributes.agentsight.tool.arguments", "a string holding JSON")
            if (sp.get("status") == "error") != ("agentsight.tool.error" in at):
                bad("status", "error exactly when agentsight.tool.error is set")
        if sp.get("kind") == "llm":
            llm_errors(at, sp, bad)
    if sp.get("name") == "emulator_refuse":
        bad("name", "refused by the emulator")
    return errs


LLM_COUNTS = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
              "agentsight.llm.cache_read_tokens", "agentsight.llm.cache_write_tokens",
              "agentsight.llm.reasoning_tokens", "agentsight.llm.audio_input_tokens",
              "agentsight.llm.audio_output_tokens", "agentsight.llm.embedding_tokens")
LLM_STRINGS = ("gen_ai.request.model", "gen_ai.response.model", "gen_ai.operation.name",
               "agentsight.llm.requested_model", "agentsight.llm.error",
               "agentsight.entity.name")
LLM_BOOLS = ("agentsight.llm.streaming", "agentsight.llm.usage_reported",
             "agentsight.llm.model_declared")


def llm_errors(at, sp, bad):
    """The rules of an llm span's attributes (as the SDK writes them): the system named,
    the two standard token counts always there, every count a non-negative integer, the
    model names strings, the flags booleans, status error exactly when
    agentsight.llm.error is set."""
    if not isinstance(at.get("gen_ai.system"), str) or not at.get("gen_ai.system"):
        bad("attributes.gen_ai.system", "required non-empty string")
    for f in LLM_COUNTS:
        if f in at and (not isinstance(at[f], int) or isinstance(at[f], bool) or at[f] < 0):
            bad("attributes." + f, "non-negative integer")
    for f in LLM_COUNTS[:2]:
        if f not in at:
            bad("attributes." + f, "required")
    for f in LLM_STRINGS:
        if f in at and not isinstance(at[f], str):
            bad("attributes." + f, "string")
    for f in LLM_BOOLS:
        if f in at and not isinstance(at[f], bool):
            bad("attributes." + f, "boolean")
    if (sp.get("status") == "error") != ("agentsight.llm.error" in at):
        bad("status", "error exactly when agentsight.llm.error is set")


def llm_usage(spans):
    """What the service makes of the llm spans it took: per model (gen_ai.request.model,
    the model that ran) the calls, failures and the billable token counts summed."""
    out = {}
    for e in spans:
        sp = e["span"]
        if sp.get("kind") != "llm":
            continue
        at = sp["attributes"]
        u = out.setdefault(at.get("gen_ai.request.model") or at["gen_ai.system"],
                           {"calls": 0, "errors": 0})
        u["calls"] += 1
        u["errors"] += sp.get("status") == "error"
        for f in LLM_COUNTS:
            if f in at:
                k = f.rsplit(".", 1)[1]
                u[k] = u.get(k, 0) + at[f]
    return out


def block_errors(b):
    errs = {}
    if not isinstance(b, dict):
        return {"block": ["expected an object"]}
    for f in sorted(set(b) - BLOCK_FIELDS):
        errs.setdefault(f, []).append("unknown field")
    cid = b.get("conversation_id")
    if not isinstance(cid, str) or not cid:
        errs.setdefault("conversation_id", []).append("required non-empty string")
    for f in BLOCK_FIELDS - {"conversation_id", "metadata", "spans"}:
        if f in b and not isinstance(b[f], str):
            errs.setdefault(f, []).append("string")
    if "metadata" in b and not isinstance(b["metadata"], dict):
        errs.setdefault("metadata", []).append("object")
    spans = b.get("spans")
    if not isinstance(spans, list) or not spans:
        errs.setdefault("spans", []).append("required non-empty list")
        spans = []
    for i, sp in enumerate(spans):
        for f, msgs in span_errors(sp, cid).items():
            errs.setdefault("spans[%d].%s" % (i, f), []).extend(msgs)
    return errs



def fingerprint(header):
    """An Authorization header with its secret cut to 8 characters and "...", so what the
    emulator keeps and serves can tell keys apart without holding one."""
    if not header:
        return ""
    scheme, sep, secret = header.partition(" ")
    if not sep:
        scheme, secret = "", header
    return (scheme + " " if sep else "") + secret[:8] + "..."


def body_length(value):
    """Content-Length as an int in [0, MAX_BODY]; 0 when absent; None when invalid."""
    if value is None:
        return 0
    value = value.strip()
    if not re.fullmatch(r"[0-9]{1,12}", value):
        return None
    n = int(value)
    return n if n <= MAX_BODY else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms ACK stall)

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def reject(self, status, why):
        with STATE.lock:
            STATE.rejected.append({"path": self.path, "status": status, "why": why})
        self.answer(status, {"detail": why})

    def body_json(self):
        n = body_length(self.headers.get("Content-Length")) or 0  # checked in dispatch()
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw.decode("utf-8")) if raw else None, raw
        except (ValueError, UnicodeDecodeError):
            return ValueError, raw

    def failure(self):
        """Applies the failure mode; returns True when the request was answered."""
        mode = STATE.take_failure(self.path)
        if mode == "500":
            self.answer(500, {"detail": "emulated failure"})
            return True
        if mode == "429":
            self.answer(429, {"detail": "slow down"},
                        {"Retry-After": str(STATE.retry_after)})
            return True
        if mode == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return True
        if mode == "slow":
            time.sleep(STATE.slow_seconds)
        return False

    def authorized(self):
        got = self.headers.get("Authorization")
        matched = STATE.key is not None and got == "Api-Key " + STATE.key
        with STATE.lock:
            STATE.auth_headers.add(fingerprint(got))
            STATE.auth_matched += matched
        if STATE.key is None:
            return True
        if not matched:
            self.reject(401, "bad or missing Authorization header")
            return False
        return True

    def handle_api(self, method):
        path = urllib.parse.urlsplit(self.path)
        with STATE.lock:
            STATE.requests += 1
        body, raw = (None, b"") if method == "GET" else self.body_json()
        if self.failure():
            return
        if not self.authorized():
            return
        if body is ValueError:
            return self.reject(400, "body is not JSON")
        if path.path == "/api/conversations/" and method == "POST":
            cid = body.get("conversation_id") if isinstance(body, dict) else None
            if not isinstance(cid, str) or not cid:
                return self.reject(400, "conversation_id: required string")
            if set(body) - {"conversation_id", "environment"}:
                return self.reject(400, "unknown conversation field")
            env = body.get("environment")
            if env is not None and not isinstance(env, str):
                return self.reject(400, "environment: string")
            with STATE.lock:
                created = cid not in STATE.conversations
                if created:
                    STATE.conversations[cid] = len(STATE.conversations) + 1
                    STATE.save("conversation", {"conversation_id": cid,
                                                "id": STATE.conversations[cid]})
                cid_id = STATE.conversations[cid]
                if env is not None:
                    STATE.conv_env[cid] = env
            return self.answer(201 if created else 200,
                               {"id": cid_id, "conversation_id": cid})
        if path.path == "/api/action_logs/" and method == "POST":
            if not isinstance(body, dict):
                return self.reject(400, "body: expected an object")
            name, conv, cid = (body.get("action_name"), body.get("conversation"),
                               body.get("conversation_id"))
            if not isinstance(name, str) or not name:
                return self.reject(400, "action_name: required string")
            if not isinstance(conv, int) or isinstance(conv, bool):
                return self.reject(400, "conversation: required integer")
            if not isinstance(cid, str):
                return self.reject(400, "conversation_id: required string")
            for f in ("tools_used", "metadata"):
                if body.get(f) is not None and not isinstance(body[f], dict):
                    return self.reject(400, f + ": expected an object")
            if name == "emulator_refuse":
                return self.reject(400, "action_name: refused by the emulator")
            with STATE.lock:
                if STATE.conversations.get(cid) != conv:
                    pass
                else:
                    meta = body.get("metadata") or {}
                    STATE.count_event(meta.get("agentsight_event_id"))
                    STATE.action_logs.append(body)
                    STATE.save("action_log", body)
                    return self.answer(201, {"status": "success", "action_name": name,
                                             "conversation_id": cid})
            return self.reject(400, "conversation: not created before use or not matching "
                               "conversation_id")
        if path.path == "/api/actions/" and method == "GET":
            name = urllib.parse.parse_qs(path.query).get("name", [None])[0]
            with STATE.lock:
                res = [a for a in STATE.actions.values() if name is None or a["name"] == name]
            return self.answer(200, {"results": res})
        if path.path == "/api/actions/" and method == "POST":
            if not isinstance(body, dict) or not isinstance(body.get("name"), str):
                return self.reject(400, "name: required string")
            with STATE.lock:
                aid = len(STATE.actions) + 1
                STATE.actions[aid] = {"id": aid, "name": body["name"],
                                      "display_name": body.get("display_name")}
                obj = dict(STATE.actions[aid])
            return self.answer(201, obj)
        if path.path.startswith("/api/actions/") and method == "PATCH":
            try:
                aid = int(path.path.split("/")[3])
            except (ValueError, IndexError):
                return self.reject(404, "no such action")
            with STATE.lock:
                a = STATE.actions.get(aid)
                if a and isinstance(body, dict) and "display_name" in body:
                    a["display_name"] = body["display_name"]
                obj = dict(a) if a else None
            if not obj:
                return self.reject(404, "no such action")
            return self.answer(200, obj)
        return self.reject(404, "unknown endpoint")

    def handle_me(self):
        with STATE.lock:
            STATE.requests += 1
            STATE.me_requests += 1
        if self.failure():
            return
        if not self.authorized():
            return
        if STATE.legacy:
            return self.reject(404, "unknown endpoint")
        caps = ["ingest"] + (["gzip-ingest"] if STATE.gzip else [])
        return self.answer(200, {"capabilities": caps})

    def handle_ingest(self):
        n = body_length(self.headers.get("Content-Length")) or 0
        raw = self.rfile.read(n) if n else b""
        enc = self.headers.get("Content-Encoding", "identity").strip().lower()
        rec = {"t": time.monotonic(), "bytes": len(raw), "decoded_bytes": None,
               "encoding": enc, "status": None}
        with STATE.lock:
            STATE.requests += 1
            STATE.ingest_requests.append(rec)

        def done(status, obj, why=None, headers=None):
            rec["status"] = status
            if why is not None:
                with STATE.lock:
                    STATE.rejected.append({"path": self.path, "status": status, "why": why})
            return self.answer(status, obj, headers)

        mode = STATE.take_failure(self.path)
        if mode == "500":
            return done(500, {"detail": "emulated failure"})
        if mode == "429":
            return done(429, {"detail": "slow down"}, None,
                        {"Retry-After": str(STATE.retry_after)})
        if mode == "drop":
            rec["status"] = 0
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        if mode == "slow":
            time.sleep(STATE.slow_seconds)
        if not self.authorized():
            rec["status"] = 401
            return
        if STATE.legacy:
            return done(404, {"detail": "unknown endpoint"}, "unknown endpoint")
        if enc == "gzip":
            if not STATE.gzip:
                return done(415, {"detail": "gzip bodies are not taken"}, "gzip not offered")
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError):
                return done(400, {"detail": "body is not gzip"}, "bad gzip")
        elif enc != "identity":
            return done(415, {"detail": "unknown Content-Encoding"}, "encoding " + enc)
        rec["decoded_bytes"] = len(raw)
        if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
            return done(415, {"detail": "expected application/json"}, "content type")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return done(400, {"detail": "body is not JSON"}, "body is not JSON")
        if not isinstance(body, dict) or set(body) != {"sdk", "conversations"}:
            return done(400, {"detail": "body: exactly sdk and conversations"}, "body keys")
        sdk = body["sdk"]
        if not isinstance(sdk, dict) or set(sdk) != {"name", "version"} or \
                not all(isinstance(sdk[k], str) and sdk[k] for k in ("name", "version")):
            return done(400, {"detail": "sdk: {name, version} strings"}, "sdk")
        blocks = body["conversations"]
        if not isinstance(blocks, list) or not blocks:
            return done(400, {"detail": "conversations: non-empty list"}, "conversations")
        bad = []
        for i, b in enumerate(blocks):
            errs = block_errors(b)
            if errs:
                cid = b.get("conversation_id") if isinstance(b, dict) else None
                bad.append({"index": i, "conversation_id": cid, "errors": errs})
        if bad:
            return done(400, {"detail": "ingest rejected the batch.",
                              "conversations": bad[:20], "truncated": len(bad) > 20},
                        "blocks " + ",".join(str(b["index"]) for b in bad))
        with STATE.lock:
            for b in blocks:
                fields = {k: v for k, v in b.items() if k != "spans"}
                for sp in b["spans"]:
                    STATE.count_event(sp["attributes"].get("agentsight.event_id"))
                    entry = dict(fields, span=sp)
                    STATE.ingest_spans.append(entry)
                    STATE.save("ingest_span", entry)
        return done(202, {"accepted": sum(len(b["spans"]) for b in blocks)})

    def handle_otlp(self):
        with STATE.lock:
            STATE.requests += 1
        body, raw = self.body_json()
        if self.failure():
            return
        if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
            return self.reject(415, "expected application/json")
        if not isinstance(body, dict) or not isinstance(body.get("resourceSpans"), list):
            return self.reject(400, "resourceSpans: required list")
        spans = []
        for rs in body["resourceSpans"]:
            res = rs.get("resource", {})
            for ss in rs.get("scopeSpans", []):
                for sp in ss.get("spans", []):
                    spans.append({"resource": res, "scope": ss.get("scope"), "span": sp})
        with STATE.lock:
            for s in spans:
                ev = None
                for a in s["span"].get("attributes", []):
                    if a.get("key") == "agentsight.event_id":
                        ev = a.get("value", {}).get("stringValue")
                STATE.count_event(ev)
                STATE.spans.append(s)
                STATE.save("span", s)
        return self.answer(200, {"partialSuccess": {}})

    def handle_control(self, method):
        if method == "GET" and self.path.startswith("/_received"):
            with STATE.lock:
                obj = {"action_logs": STATE.action_logs, "spans": STATE.spans,
                       "ingest_spans": STATE.ingest_spans,
                       "ingest_requests": STATE.ingest_requests,
                       "llm_usage": llm_usage(STATE.ingest_spans),
                       "me_requests": STATE.me_requests,
                       "conversation_environments": STATE.conv_env,
                       "conversations": STATE.conversations,
                       "actions": list(STATE.actions.values()),
                       "duplicates": STATE.duplicates, "unique": len(STATE.event_ids),
                       "rejected": STATE.rejected, "requests": STATE.requests,
                       "failed": STATE.failed,
                       "auth_headers": sorted(STATE.auth_headers),
                       "auth_matched": STATE.auth_matched}
                return self.answer(200, obj)
        if method == "GET" and self.path.startswith("/_stats"):
            with STATE.lock:
                return self.answer(200, {
                    "action_logs": len(STATE.action_logs), "spans": len(STATE.spans),
                    "ingest_spans": len(STATE.ingest_spans),
                    "ingest_llm_spans": sum(e["span"].get("kind") == "llm"
                                            for e in STATE.ingest_spans),
                    "duplicates": STATE.duplicates, "unique": len(STATE.event_ids),
                    "rejected": len(STATE.rejected), "requests": STATE.requests,
                    "failed": STATE.failed, "fail_mode": STATE.fail_mode})
        if method == "POST" and self.path.startswith("/_control"):
            body, _ = self.body_json()
            if not isinstance(body, dict):
                return self.answer(400, {"detail": "expected an object"})
            with STATE.lock:
                if body.get("fail_mode") in ("none", "500", "429", "slow", "drop"):
                    STATE.fail_mode = body["fail_mode"]
                    STATE.fail_count = int(body.get("fail_count", 0))
                    STATE.fail_path = str(body.get("fail_path", ""))
                if "slow_seconds" in body:
                    STATE.slow_seconds = float(body["slow_seconds"])
                if "retry_after" in body:
                    STATE.retry_after = int(body["retry_after"])
                if "legacy" in body:
                    STATE.legacy = bool(body["legacy"])
                if "gzip" in body:
                    STATE.gzip = bool(body["gzip"])
                mode = STATE.fail_mode
            return self.answer(200, {"fail_mode": mode})
        return self.answer(404, {"detail": "unknown control endpoint"})

    def dispatch(self, method):
        try:
            if len(self.headers.get_all("Content-Length") or []) > 1 or \
                    body_length(self.headers.get("Content-Length")) is None:
                # Never read a body of unknown size: a negative length would read until
                # the client closes, a huge one would hold the memory.
                self.close_connection = True
                return self.reject(400, "bad Content-Length")
            if self.path.startswith("/_"):
                return self.handle_control(method)
            if self.path.startswith("/v1/traces") and method == "POST":
                return self.handle_otlp()
            if self.path.split("?")[0] == "/api/me/" and method == "GET":
                return self.handle_me()
            if self.path.split("?")[0] == "/api/ingest/" and method == "POST":
                return self.handle_ingest()
            return self.handle_api(method)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PATCH(self):
        self.dispatch("PATCH")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A client dropping its connection is normal here (tests kill processes).
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def main():
    global STATE
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--key", default=None, help="expected API key (default: any)")
    p.add_argument("--store", default=None)
    p.add_argument("--fail-mode", default="none",
                   choices=["none", "500", "429", "slow", "drop"])
    p.add_argument("--fail-count", type=int, default=0)
    p.add_argument("--fail-path", default="")
    p.add_argument("--slow-seconds", type=float, default=5.0)
    p.add_argument("--retry-after", type=int, default=1)
    p.add_argument("--max-seconds", type=float, default=600.0)
    p.add_argument("--legacy", action="store_true",
                   help="behave as a 0.0.x-only server (no /api/me/, no /api/ingest/)")
    p.add_argument("--no-gzip", action="store_true",
                   help="do not list the gzip-ingest capability")
    args = p.parse_args()
    STATE = State(args)
    srv = Server(("127.0.0.1", args.port), Handler)
    print(srv.server_address[1], flush=True)

    def stop(*_):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    timer = threading.Timer(args.max_seconds, stop)
    timer.daemon = True
    timer.start()
    srv.serve_forever(poll_interval=0.2)
    srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
