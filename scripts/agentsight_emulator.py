#!/usr/bin/env python3
"""A local emulator of the AgentSight API (and of an OTLP/HTTP JSON collector) for the
tests, the benchmarks and the demo. It checks the key and the request shapes, stores what
it received, and can be told to fail.

Usage:
  agentsight_emulator.py [--port N] [--key KEY] [--store FILE.jsonl]
                         [--fail-mode none|500|429|slow|drop] [--fail-count N]
                         [--fail-path PREFIX] [--slow-seconds S] [--retry-after S]
                         [--max-seconds S]

The first line on stdout is the port it listens on (127.0.0.1 only; --port 0 picks one).

API:
  POST /api/conversations/    {"conversation_id": str} -> {"id": int, ...} (get-or-create)
  POST /api/action_logs/      action_name (str), conversation (int, created before),
                              conversation_id (str, matching), optional track_action fields
  GET  /api/actions/?name=N   {"results": [{"id", "name", "display_name"}]}
  POST /api/actions/          {"name", "display_name"};  PATCH /api/actions/{id}/
  POST /v1/traces             OTLP/HTTP JSON export; spans stored
Control (no key):
  POST /_control  {"fail_mode": "...", "fail_count": N, "fail_path": P, "slow_seconds": S,
                   "retry_after": S}
  GET  /_received everything stored; GET /_stats counts only.
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
            with STATE.lock:
                created = cid not in STATE.conversations
                if created:
                    STATE.conversations[cid] = len(STATE.conversations) + 1
                    STATE.save("conversation", {"conversation_id": cid,
                                                "id": STATE.conversations[cid]})
                cid_id = STATE.conversations[cid]
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
