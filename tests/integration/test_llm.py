"""LLM calls of unmodified programs become actions (`agentsight run --llm`): a local HTTPS
server written here speaks the OpenAI and Anthropic API shapes (JSON and Server-Sent Events,
Content-Length and chunked, keep-alive, gzip, a 404 with an API error), and clients nobody
here wrote (python3's http.client and curl through OpenSSL, wget through GnuTLS) call it. Each test proves that the
models and token counts in the actions equal what the server sent, that the program's output
is the same as a bare run's, and that the Authorization header's marker is in no output."""
import gzip
import http.server
import json
import os
import shutil
import socketserver
import ssl
import subprocess
import threading

from common import CLI, read_jsonl, run, tmpdir

MARKER = "sk-MARKER-5f1e2d3c4b5a69788796a5b4c3d2e1f0"


def make_cert(d):
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    key, crt = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", crt, "-days", "1", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return key, crt


class Api(http.server.BaseHTTPRequestHandler):
    """Answers like the model APIs; every answer's model and usage is appended to
    server.sent, so a test compares the actions with what was really sent."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send_body(self, status, obj, gz=False):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if gz:
            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_sse(self, events):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for ev in events:
            data = ev.encode()
            # split each event over two chunks: framing and events do not line up
            for part in (data[:7], data[7:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        req = json.loads(self.rfile.read(n) or b"{}")
        self.server.auth.append(self.headers.get("Authorization") or
                                self.headers.get("x-api-key"))
        model = req.get("model", "")
        words = ["Hello", " from", " ", model, " \u00e9t\u00e9"]
        text = "".join(words)
        tin, tout = 7 + len(json.dumps(req)) % 50, len(words) + 2
        gz = "gzip" in (self.headers.get("Accept-Encoding") or "")
        stream = bool(req.get("stream"))
        served = model + "-2024"
        # a model named "*cache*" answers with cache and reasoning counts too
        cr, cw, rs = (3, 5, 2) if "cache" in model else (None, None, None)
        if self.path == "/v1/chat/completions":
            sent = {"model": served, "in": tin, "out": tout, "text": text, "status": 200,
                    "cr": cr, "rs": rs}
            usage = {"prompt_tokens": tin, "completion_tokens": tout}
            if cr:
                usage["prompt_tokens_details"] = {"cached_tokens": cr}
                usage["completion_tokens_details"] = {"reasoning_tokens": rs}
            if stream:
                evs = ["data: " + json.dumps({"model": served, "choices": [
                    {"delta": {"content": w}}]}) + "\n\n" for w in words]
                evs.append("data: " + json.dumps({"model": served, "choices": [],
                                                  "usage": usage}) + "\n\n")
                evs.append("data: [DONE]\n\n")
                self.send_sse(evs)
            else:
                self.send_body(200, {"model": served, "choices": [
                    {"message": {"role": "assistant", "content": text}}],
                    "usage": usage}, gz)
        elif self.path == "/v1/messages":
            sent = {"model": served, "in": tin, "out": tout, "text": text, "status": 200,
                    "cr": cr, "cw": cw}
            usage = {"input_tokens": tin, "output_tokens": tout}
            if cr:
                usage.update(cache_read_input_tokens=cr, cache_creation_input_tokens=cw)
            if stream:
                evs = ["event: message_start\ndata: " + json.dumps({"type": "message_start",
                       "message": {"model": served, "usage": dict(usage, output_tokens=1)}})
                       + "\n\n"]
                evs += ["event: content_block_delta\ndata: " + json.dumps(
                    {"type": "content_block_delta", "index": 0,
                     "delta": {"type": "text_delta", "text": w}}) + "\n\n" for w in words]
                evs.append("event: message_delta\ndata: " + json.dumps(
                    {"type": "message_delta", "usage": {"output_tokens": tout}}) + "\n\n")
                evs.append("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
                self.send_sse(evs)
            else:
                self.send_body(200, {"model": served, "type": "message", "content": [
                    {"type": "text", "text": text}],
                    "usage": usage}, gz)
        elif self.path == "/v1/embeddings":
            sent = {"model": served, "in": tin, "out": None, "text": None, "status": 200}
            self.send_body(200, {"model": served, "data": [{"embedding": [0.1, 0.2]}],
                                 "usage": {"prompt_tokens": tin, "total_tokens": tin}}, gz)
        else:
            sent = {"model": None, "in": None, "out": None, "text": None, "status": 404,
                    "error": "The model `%s` does not exist" % model}
            self.send_body(404, {"error": {"message": sent["error"],
                                           "type": "invalid_request_error"}})
        self.server.sent.append(sent)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that is not HTTP/1.1 (the HTTP/2 test) is simply dropped


def start_server(d):
    key, crt = make_cert(d)
    srv = Server(("127.0.0.1", 0), Api)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.sent, srv.auth = [], []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, crt


def llm_run(argv, d, env=None, quiet=True):
    """Runs argv bare, then under `agentsight run --llm`; returns (bare, got, actions)."""
    bare = run(argv, env=env)
    out = os.path.join(d, "actions.jsonl")
    got = run([CLI, "run"] + (["-q"] if quiet else []) + ["--llm", "-o", "file:" + out, "--"] +
              argv, env=env)
    assert got.stdout == bare.stdout, (bare.stdout, got.stdout, got.stderr)
    assert got.returncode == bare.returncode, (bare.returncode, got.returncode, got.stderr)
    acts = read_jsonl(out)
    for where in (got.stdout, got.stderr, open(out).read() if os.path.exists(out) else ""):
        assert MARKER not in where
    return bare, got, acts


def check(act, sent, name, endpoint, provider, stream, port):
    """One action against what the server sent for that exchange."""
    assert act["action_name"] == name, act
    t = act["tools_used"]
    assert t["provider"] == provider and t["endpoint"] == endpoint, t
    assert t["stream"] is stream, t
    assert t["http_status"] == sent["status"], t
    assert t["server_address"] == "127.0.0.1:%d" % port, t
    assert t.get("response_model") == sent["model"], (t, sent)
    assert t["usage"].get("input_tokens") == sent["in"], (t, sent)
    assert t["usage"].get("output_tokens") == sent["out"], (t, sent)
    assert act.get("response") == sent["text"], (act, sent)
    if sent["status"] >= 400:
        assert act["error_msg"] == "HTTP %d: %s" % (sent["status"], sent["error"]), act
    else:
        assert not act.get("error_msg"), act
    if stream:
        assert act["metadata"]["time_to_first_token_ms"] >= 0, act


PY_CLIENT = r"""
import http.client, json, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx)
calls = [("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
         ("/v1/chat/completions", {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}], "stream_options": {"include_usage": True}}),
         ("/v1/messages", {"model": "claude-3-5-haiku", "max_tokens": 9, "messages": [{"role": "user", "content": "yo"}]}),
         ("/v1/messages", {"model": "claude-3-5-haiku", "max_tokens": 9, "stream": True, "messages": [{"role": "user", "content": "yo"}]}),
         ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "abc"}),
         ("/v1/nope/completions", {"model": "nope"})]
for path, body in calls:
    c.request("POST", path, body=json.dumps(body), headers={"Authorization": "Bearer %s", "Content-Type": "application/json"})
    r = c.getresponse()
    print(r.status, len(r.read()))
c.close()
""" % MARKER


def test_python_http_client_keepalive():
    """python3's http.client, six exchanges on one keep-alive connection: JSON and SSE
    (chunked), both providers, embeddings and a 404; one action each, in order."""
    d = tmpdir()
    srv, crt = start_server(d)
    port = srv.server_address[1]
    argv = ["python3", "-c", PY_CLIENT, str(port), crt]
    bare, got, acts = llm_run(argv, d)
    sent = srv.sent[6:]  # the preloaded run's answers
    assert len(sent) == 6 and len(acts) == 6, (acts, got.stderr)
    assert all(a == "Bearer " + MARKER for a in srv.auth)
    check(acts[0], sent[0], "chat gpt-4o-mini", "/v1/chat/completions", "openai", False, port)
    check(acts[1], sent[1], "chat gpt-4o-mini", "/v1/chat/completions", "openai", True, port)
    check(acts[2], sent[2], "chat claude-3-5-haiku", "/v1/messages", "anthropic", False, port)
    check(acts[3], sent[3], "chat claude-3-5-haiku", "/v1/messages", "anthropic", True, port)
    check(acts[4], sent[4], "embeddings text-embedding-3-small", "/v1/embeddings", "openai",
          False, port)
    check(acts[5], sent[5], "text_completion nope", "/v1/nope/completions", "openai", False,
          port)
    srv.shutdown()


def test_curl_plain_and_compressed():
    """curl (libcurl over OpenSSL), with and without --compressed (a gzip body inflated
    for the action), and an Anthropic stream."""
    if not shutil.which("curl"):
        print("    left out: curl is not installed")
        return
    d = tmpdir()
    srv, crt = start_server(d)
    port = srv.server_address[1]
    url = "https://127.0.0.1:%d" % port
    body = json.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "q"}]})
    sbody = json.dumps({"model": "claude-sonnet-4", "stream": True, "max_tokens": 5,
                        "messages": [{"role": "user", "content": "q"}]})
    for extra in ([], ["--compressed"]):
        argv = ["curl", "-s", "--http1.1", "--cacert", crt] + extra + [
            "-H", "Authorization: Bearer " + MARKER, "-H", "Content-Type: application/json",
            "-d", body, url + "/v1/chat/completions"]
        srv.sent.clear()
        bare, got, acts = llm_run(argv, tmpdir())
        assert len(acts) == 1 and len(srv.sent) == 2, (acts, got.stderr)
        check(acts[0], srv.sent[1], "chat gpt-4.1", "/v1/chat/completions", "openai", False,
              port)
    argv = ["curl", "-s", "-N", "--http1.1", "--cacert", crt, "-H", "x-api-key: " + MARKER,
            "-d", sbody, url + "/v1/messages"]
    srv.sent.clear()
    bare, got, acts = llm_run(argv, tmpdir())
    assert len(acts) == 1, (acts, got.stderr)
    check(acts[0], srv.sent[1], "chat claude-sonnet-4", "/v1/messages", "anthropic", True, port)
    srv.shutdown()


def test_config_llm_section():
    """The [llm] section alone (no [actions], no --llm) turns the calls into actions;
    capture = none leaves the text out, capture = prompts adds the request's messages
    bounded by max_string, and the key sent in a header is in neither."""
    if not shutil.which("curl"):
        print("    left out: curl is not installed")
        return
    d = tmpdir()
    srv, crt = start_server(d)
    port = srv.server_address[1]
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user",
                                                         "content": "say " + "x" * 100}]})
    argv = ["curl", "-s", "--http1.1", "--cacert", crt, "-H", "Authorization: Bearer " + MARKER,
            "-d", body, "https://127.0.0.1:%d/v1/chat/completions" % port]
    bare = run(argv)
    for capture, want_text, want_prompt in (("none", False, False), ("prompts", True, True)):
        out = os.path.join(d, capture + ".jsonl")
        conf = os.path.join(d, capture + ".conf")
        with open(conf, "w") as f:
            f.write("[output]\nsink = file:%s\n[llm]\nenable = on\ncapture = %s\n"
                    "max_string = 40\n" % (out, capture))
        srv.sent.clear()
        got = run([CLI, "run", "-q", "-c", conf, "--"] + argv)
        assert got.stdout == bare.stdout and got.returncode == bare.returncode, got.stderr
        acts = read_jsonl(out)
        assert len(acts) == 1, (acts, got.stderr)
        a = acts[0]
        assert MARKER not in json.dumps(a)
        assert a["tools_used"]["usage"]["input_tokens"] == srv.sent[0]["in"]
        assert (a.get("response") is not None) == want_text, a
        if want_text:
            assert a["response"] == srv.sent[0]["text"][:40], a
        assert ("prompt" in a["tools_used"]) == want_prompt, a
        if want_prompt:
            p = a["tools_used"]["prompt"]
            assert p.startswith('[{"role":"user","content":"say xx') and len(p) <= 40, p
    srv.shutdown()


def test_wget_gnutls():
    """wget (GnuTLS: gnutls_record_send/recv) posting an Anthropic request: one action
    with the server's model and tokens, the key header in no output."""
    if not shutil.which("wget"):
        print("    left out: wget is not installed")
        return
    d = tmpdir()
    srv, crt = start_server(d)
    port = srv.server_address[1]
    body = json.dumps({"model": "claude-opus-4", "max_tokens": 3,
                       "messages": [{"role": "user", "content": "w"}]})
    argv = ["wget", "-q", "-O-", "--ca-certificate=" + crt, "--header=x-api-key: " + MARKER,
            "--post-data=" + body, "https://127.0.0.1:%d/v1/messages" % port]
    bare, got, acts = llm_run(argv, d)
    assert len(acts) == 1 and len(srv.sent) == 2, (acts, got.stderr)
    check(acts[0], srv.sent[1], "chat claude-opus-4", "/v1/messages", "anthropic", False, port)
    srv.shutdown()


H2_CLIENT = r"""
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
for i in range(2):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))),
                        server_hostname="127.0.0.1")
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    s.close()
print("sent")
"""


def test_http2_preface_only():
    """Two connections that start with the HTTP/2 preface and close (an HTTP/1.1 server
    drops them) make no action, the program's output is unchanged, and nothing is said
    about them: HTTP/2 is decoded (test_llm_h2.py), and the message for a process without
    libnghttp2 is proved said once by the unit test test_h2_without_nghttp2_said_once."""
    d = tmpdir()
    srv, crt = start_server(d)
    argv = ["python3", "-c", H2_CLIENT, str(srv.server_address[1]), crt]
    bare, got, acts = llm_run(argv, d, quiet=False)
    assert acts == [], acts
    assert "HTTP/2" not in got.stderr, got.stderr
    srv.shutdown()


NODE_CLIENT = r"""
const https = require("https");
const port = +process.argv[1], key = process.argv[2];
const body = JSON.stringify({model: "gpt-4o-mini", messages: [{role: "user", content: "n"}]});
const req = https.request({host: "127.0.0.1", port, method: "POST",
  path: "/v1/chat/completions", headers: {"Content-Type": "application/json",
  "Content-Length": Buffer.byteLength(body), "Authorization": "Bearer " + key}}, (res) => {
  let d = "";
  res.on("data", (c) => d += c);
  res.on("end", async () => {
    console.log(res.statusCode, d);
    // fetch (undici): an Anthropic stream
    const r = await fetch("https://127.0.0.1:" + port + "/v1/messages", {method: "POST",
      headers: {"x-api-key": key, "content-type": "application/json"},
      body: JSON.stringify({model: "claude-n", stream: true, max_tokens: 3, messages: []})});
    console.log(r.status, (await r.text()).split("data:").length);
  });
});
req.end(body);
"""


def test_node_https():
    """node's https and fetch (NODE_EXTRA_CA_CERTS): node carries its own OpenSSL and calls
    it directly, so its entries are patched; both calls become actions with the server's
    models and tokens, output unchanged, no key anywhere. Where the patch cannot be made
    the run must say so instead of staying silent."""
    if not shutil.which("node"):
        print("    left out: node is not installed")
        return
    d = tmpdir()
    srv, crt = start_server(d)
    port = srv.server_address[1]
    argv = ["node", "-e", NODE_CLIENT, str(port), MARKER]
    bare, got, acts = llm_run(argv, d, env={"NODE_EXTRA_CA_CERTS": crt}, quiet=False)
    if not acts:
        assert got.stderr.count("not decoded") == 1, got.stderr
        return
    assert len(acts) == 2, (acts, got.stderr)
    check(acts[0], srv.sent[2], "chat gpt-4o-mini", "/v1/chat/completions", "openai", False,
          port)
    check(acts[1], srv.sent[3], "chat claude-n", "/v1/messages", "anthropic", True, port)
    srv.shutdown()


def test_children_and_no_follow():
    """The calls of a child (python3 started by sh) count under --llm; with --no-follow the
    child runs as without us and AGENTSIGHT_LLM is not in its environment."""
    d = tmpdir()
    srv, crt = start_server(d)
    args = [PY_CLIENT, str(srv.server_address[1]), crt]
    argv = ["sh", "-c", 'python3 -c "$0" "$@"'] + args
    bare, got, acts = llm_run(argv, d)
    assert len(acts) == 6, (acts, got.stderr)
    assert [a["tools_used"]["usage"].get("input_tokens") for a in acts] == \
        [s["in"] for s in srv.sent[6:]]
    argv = ["sh", "-c", 'env | grep -c "^AGENTSIGHT_LLM="; python3 -c "$0" "$@"'] + args
    bare = run(argv)
    out = os.path.join(d, "nf.jsonl")
    nf = run([CLI, "run", "-q", "--no-follow", "--llm", "-o", "file:" + out, "--"] + argv)
    assert nf.stdout == bare.stdout and nf.stdout.startswith("0\n"), nf.stdout
    assert read_jsonl(out) == []
    srv.shutdown()


REQUESTS_CLIENT = r"""
import json, sys, requests
s = requests.Session()  # keep-alive; asks for gzip, deflate
ca = sys.argv[2]  # per request: a CA bundle named in the environment would win over s.verify
u = "https://127.0.0.1:" + sys.argv[1]
h = {"Authorization": "Bearer MARKER"}
r = s.post(u + "/v1/chat/completions", json={"model": "gpt-4o", "messages": []}, headers=h,
           verify=ca)
print(r.status_code, r.json()["usage"])
with s.post(u + "/v1/messages", json={"model": "claude-h", "stream": True, "max_tokens": 2,
            "messages": []}, headers=h, stream=True, verify=ca) as r:
    print(sum(1 for line in r.iter_lines() if line.startswith(b"data:")))
""".replace("MARKER", MARKER)


def test_python_requests_gzip_and_stream():
    """requests (urllib3 over python3's ssl, gzip asked for by default): a gzip JSON answer
    and an Anthropic stream read line by line on one keep-alive session."""
    try:
        import requests  # noqa: F401  (only to know whether the client exists)
    except ImportError:
        print("    left out: python3 requests is not installed")
        return
    d = tmpdir()
    srv, crt = start_server(d)
    port = srv.server_address[1]
    bare, got, acts = llm_run(["python3", "-c", REQUESTS_CLIENT, str(port), crt], d)
    assert len(acts) == 2, (acts, got.stderr)
    check(acts[0], srv.sent[2], "chat gpt-4o", "/v1/chat/completions", "openai", False, port)
    check(acts[1], srv.sent[3], "chat claude-h", "/v1/messages", "anthropic", True, port)
    srv.shutdown()
