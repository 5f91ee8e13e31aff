"""LLM calls made by clients nobody here wrote, beyond test_llm.py's: the official node SDKs
(`openai`, `@anthropic-ai/sdk`, pinned, installed by scripts/npm-sdks.sh into build/npm) on
node's own fetch (undici: pooled keep-alive connections, gzip asked for by default, node's
built-in OpenSSL) against the local HTTPS server of test_llm.py; and plain HTTP to a local
model server on 127.0.0.1 (Ollama's native API and the OpenAI shape), seen on the socket
calls. Each test proves that the
actions carry what the server answered (models, tokens, text, status, the API's error),
that the program prints what a bare run prints, and that the fake API key is in no output
file, no stderr and nothing under the run's state (spool) directory."""
import json
import os
import shutil
import ssl
import subprocess
import threading

from common import CLI, ROOT, BUILD, read_jsonl, run, tmpdir, write
from test_llm import MARKER, Api, Server, check, make_cert, start_server

NPM_DIR = os.path.join(BUILD, "npm")
_npm_why = []  # the answer of npm_sdks, asked once per run


def npm_sdks():
    """Installs the pinned SDKs (scripts/npm-sdks.sh); returns None, or why they are not
    there (no node, no npm, registry unreachable): the test is then left out, not failed."""
    if not _npm_why:
        _npm_why.append(_install_sdks())
    return _npm_why[0]


def _install_sdks():
    if not shutil.which("node"):
        return "node is not installed"
    try:
        r = subprocess.run([os.path.join(ROOT, "scripts", "npm-sdks.sh")], capture_output=True,
                           text=True, timeout=330,
                           env=dict(os.environ, AGENTSIGHT_NPM_DIR=NPM_DIR))
    except subprocess.TimeoutExpired:
        return "npm install timed out"
    if r.returncode != 0:
        return r.stderr.strip() or "scripts/npm-sdks.sh failed"
    return None


def no_marker_under(*dirs):
    """Fails when the key's marker is in any file under dirs (output files, spool, rings)."""
    for top in dirs:
        for dp, _, files in os.walk(top):
            for f in files:
                p = os.path.join(dp, f)
                try:
                    with open(p, "rb") as fh:
                        data = fh.read()
                except OSError:
                    continue
                assert MARKER.encode() not in data, p


def sdk_run(argv, d, env):
    """Runs argv bare, then under `agentsight run --llm` with a state directory of its own;
    returns (bare, got, actions) after checking output, exit status and the key."""
    state = os.path.join(d, "state")
    os.makedirs(state, exist_ok=True)
    env = dict(env, XDG_STATE_HOME=state)
    bare = run(argv, env=env)
    assert bare.returncode == 0, bare.stderr
    out = os.path.join(d, "actions.jsonl")
    got = run([CLI, "run", "--llm", "-o", "file:" + out, "--"] + argv, env=env)
    assert got.stdout == bare.stdout, (bare.stdout, got.stdout, got.stderr)
    assert got.returncode == bare.returncode, (got.returncode, got.stderr)
    for where in (got.stdout, got.stderr):
        assert MARKER not in where
    no_marker_under(d)
    return bare, got, read_jsonl(out)


OPENAI_CLIENT = r"""
const { OpenAI } = require("openai");
const [port, key] = [process.argv[1], process.argv[2]];
const base = "https://127.0.0.1:" + port + "/v1";
const client = new OpenAI({ apiKey: key, baseURL: base, maxRetries: 0 });
const msgs = [{ role: "user", content: "hello sdk" }];
(async () => {
  for (let i = 0; i < 6; i++) {  // gzip answers, inflated for the actions each time
    const r = await client.chat.completions.create({ model: "gpt-4o-mini", messages: msgs });
    console.log(r.model, r.usage.prompt_tokens, r.usage.completion_tokens,
                JSON.stringify(r.choices[0].message.content));
  }
  const s = await client.chat.completions.create({ model: "gpt-4.1-nano", messages: msgs,
    stream: true, stream_options: { include_usage: true } });
  let text = "", usage = null;
  for await (const ch of s) {
    if (ch.choices.length) text += ch.choices[0].delta.content || "";
    if (ch.usage) usage = ch.usage;
  }
  console.log(JSON.stringify(text), usage.prompt_tokens, usage.completion_tokens);
  const e = await client.embeddings.create({ model: "text-embedding-3-small", input: "abc",
                                            encoding_format: "float" });
  console.log(e.model, e.usage.prompt_tokens, e.data[0].embedding.length);
  const bad = new OpenAI({ apiKey: key, baseURL: base + "/nope", maxRetries: 0 });
  try {
    await bad.chat.completions.create({ model: "gpt-missing", messages: msgs });
    console.log("no error");
  } catch (err) {
    console.log("error", err.status, err.error && err.error.message);
  }
})().catch((err) => { console.log("failed", err.message); process.exitCode = 3; });
"""

ANTHROPIC_CLIENT = r"""
const { Anthropic } = require("@anthropic-ai/sdk");
const [port, key] = [process.argv[1], process.argv[2]];
const client = new Anthropic({ apiKey: key, baseURL: "https://127.0.0.1:" + port,
                               maxRetries: 0 });
const msgs = [{ role: "user", content: "hello claude" }];
(async () => {
  const m = await client.messages.create({ model: "claude-3-5-haiku", max_tokens: 16,
                                          messages: msgs });
  console.log(m.model, m.usage.input_tokens, m.usage.output_tokens,
              JSON.stringify(m.content[0].text));
  const s = await client.messages.create({ model: "claude-sonnet-4", max_tokens: 16,
                                          messages: msgs, stream: true });
  let text = "", n = 0;
  for await (const ev of s) {
    n++;
    if (ev.type === "content_block_delta") text += ev.delta.text;
  }
  console.log(JSON.stringify(text), n);
})().catch((err) => { console.log("failed", err.message); process.exitCode = 3; });
"""


def sdk_env(crt):
    return {"NODE_EXTRA_CA_CERTS": crt, "NODE_PATH": os.path.join(NPM_DIR, "node_modules")}


def sdk_case(client):
    """Runs the node program client (an SDK from build/npm) bare and under the interposer
    against the local server. Returns (server, port, bare, got, actions), or None (said)
    when the SDKs are not installed; the bare run must not have failed."""
    why = npm_sdks()
    if why:
        print("    left out: " + why)
        return None
    d = tmpdir()
    srv, crt = start_server(d)
    port = srv.server_address[1]
    argv = ["node", "-e", client, str(port), MARKER]
    bare, got, acts = sdk_run(argv, d, sdk_env(crt))
    assert not bare.stdout.startswith("failed"), bare.stdout
    return srv, port, bare, got, acts


def test_openai_sdk():
    """The openai SDK: six chat completions (gzip answers: fetch asks for them; node carries
    its own zlib, which the decoder's libz must never call into: that corrupted the heap),
    a stream with stream_options.include_usage, an embedding and a 404 (baseURL with an
    unknown prefix), on one undici pool: nine actions whose models, tokens, text, status
    and error are what the server answered."""
    ran = sdk_case(OPENAI_CLIENT)
    if not ran:
        return
    srv, port, bare, got, acts = ran
    assert "error 404 The model `gpt-missing` does not exist" in bare.stdout, bare.stdout
    sent = srv.sent[9:]  # the instrumented run's answers
    assert len(sent) == 9 and len(acts) == 9, (acts, got.stderr)
    assert all(a == "Bearer " + MARKER for a in srv.auth)
    for i in range(6):
        check(acts[i], sent[i], "chat gpt-4o-mini", "/v1/chat/completions", "openai", False,
              port)
    acts, sent = acts[5:], sent[5:]
    check(acts[1], sent[1], "chat gpt-4.1-nano", "/v1/chat/completions", "openai", True, port)
    check(acts[2], sent[2], "embeddings text-embedding-3-small", "/v1/embeddings", "openai",
          False, port)
    check(acts[3], sent[3], "chat gpt-missing", "/v1/nope/chat/completions", "openai", False,
          port)
    for a, m in zip(acts, ("gpt-4o-mini", "gpt-4.1-nano", "text-embedding-3-small",
                           "gpt-missing")):
        assert a["tools_used"]["request_model"] == m, a
    srv.shutdown()


def test_anthropic_sdk():
    """The @anthropic-ai/sdk SDK: a message and a streamed message (message_start,
    content_block_delta, message_delta): two actions with the server's model, tokens and
    reassembled text; the x-api-key header is in no output."""
    ran = sdk_case(ANTHROPIC_CLIENT)
    if not ran:
        return
    srv, port, bare, got, acts = ran
    sent = srv.sent[2:]
    assert len(sent) == 2 and len(acts) == 2, (acts, got.stderr)
    assert all(a == MARKER for a in srv.auth)
    check(acts[0], sent[0], "chat claude-3-5-haiku", "/v1/messages", "anthropic", False, port)
    check(acts[1], sent[1], "chat claude-sonnet-4", "/v1/messages", "anthropic", True, port)
    srv.shutdown()


# ---- plain HTTP to a local model server (Ollama's native API and the OpenAI shape) ----

class Ollama(Api):
    """Answers /api/chat and /api/generate as Ollama does (one JSON object, or JSON lines
    in chunks when "stream" is not false; prompt_eval_count and eval_count are the tokens;
    404 with {"error": ...} for an unknown model), and every OpenAI path as test_llm's Api.
    What each answer carried is appended to server.sent."""

    def do_POST(self):
        if not self.path.startswith("/api/"):
            return Api.do_POST(self)
        n = int(self.headers.get("Content-Length", "0"))
        req = json.loads(self.rfile.read(n) or b"{}")
        self.server.auth.append(self.headers.get("Authorization"))
        model = req.get("model", "")
        words = ["Local", " ", model, " says", " h\u00e9"]
        text = "".join(words)
        tin, tout = 11 + len(json.dumps(req)) % 40, len(words) + 3
        chat = self.path == "/api/chat"
        if model == "missing":
            err = 'model "missing" not found, try pulling it first'
            self.server.sent.append({"model": None, "in": None, "out": None, "text": None,
                                     "status": 404, "error": err})
            return self.send_body(404, {"error": err})
        served = model + ":latest"
        self.server.sent.append({"model": served, "in": tin, "out": tout, "text": text,
                                 "status": 200})

        def piece(w, done):
            o = {"model": served, "created_at": "2026-01-01T00:00:00Z", "done": done}
            if chat:
                o["message"] = {"role": "assistant", "content": w}
            else:
                o["response"] = w
            if done:
                o.update(done_reason="stop", total_duration=1234, prompt_eval_count=tin,
                         eval_count=tout)
            return o

        if req.get("stream", True) is False:
            return self.send_body(200, piece(text, True))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        lines = [json.dumps(piece(w, False)) + "\n" for w in words]
        lines.append(json.dumps(piece("", True)) + "\n")
        for ln in lines:
            data = ln.encode()
            for part in (data[:9], data[9:]):  # lines and chunks do not line up
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


def start_plain():
    srv = Server(("127.0.0.1", 0), Ollama)
    srv.sent, srv.auth = [], []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


PLAIN_PY = r"""
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
h = {"Authorization": "Bearer %s", "Content-Type": "application/json"}
msgs = [{"role": "user", "content": "why is the sky blue"}]
calls = [("/api/chat", {"model": "llama3.2", "messages": msgs, "stream": False}),
         ("/api/chat", {"model": "llama3.2", "messages": msgs}),
         ("/api/generate", {"model": "qwen2.5", "prompt": "one word", "stream": False}),
         ("/api/generate", {"model": "qwen2.5", "prompt": "one word"}),
         ("/api/chat", {"model": "missing", "messages": msgs}),
         ("/v1/chat/completions", {"model": "llama3.2", "messages": msgs}),
         ("/v1/chat/completions", {"model": "llama3.2", "messages": msgs, "stream": True,
                                   "stream_options": {"include_usage": True}})]
for path, body in calls:
    c.request("POST", path, body=json.dumps(body), headers=h)
    r = c.getresponse()
    print(r.status, len(r.read()))
c.close()
""" % MARKER


def check_ollama(act, sent, name, endpoint, stream, port):
    """One action of Ollama's native API against what the server sent."""
    assert act["action_name"] == name, act
    t = act["tools_used"]
    assert t["provider"] == "ollama" and t["endpoint"] == endpoint, t
    assert t["stream"] is stream and t["http_status"] == sent["status"], t
    assert t["server_address"] == "127.0.0.1:%d" % port, t
    assert t.get("response_model") == sent["model"], (t, sent)
    assert t["usage"].get("input_tokens") == sent["in"], (t, sent)
    assert t["usage"].get("output_tokens") == sent["out"], (t, sent)
    assert act.get("response") == sent["text"], (act, sent)
    if sent["status"] >= 400:
        assert act["error_msg"] == "HTTP %d: %s" % (sent["status"], sent["error"]), act
    else:
        assert not act.get("error_msg"), act
    if stream and sent["text"]:
        assert act["metadata"]["time_to_first_token_ms"] >= 0, act


def test_plain_http_python_ollama_and_openai():
    """python3's http.client over plain HTTP to 127.0.0.1 (a local model server, watched
    by default): Ollama's /api/chat and /api/generate, whole and streamed as JSON lines,
    a 404 for an unknown model, and the OpenAI shape on the same keep-alive connection:
    seven actions, field by field as the server answered; output unchanged."""
    d = tmpdir()
    srv = start_plain()
    port = srv.server_address[1]
    bare, got, acts = sdk_run(["python3", "-c", PLAIN_PY, str(port)], d, {})
    sent = srv.sent[7:]
    assert len(sent) == 7 and len(acts) == 7, (acts, got.stderr)
    check_ollama(acts[0], sent[0], "chat llama3.2", "/api/chat", False, port)
    check_ollama(acts[1], sent[1], "chat llama3.2", "/api/chat", True, port)
    check_ollama(acts[2], sent[2], "text_completion qwen2.5", "/api/generate", False, port)
    check_ollama(acts[3], sent[3], "text_completion qwen2.5", "/api/generate", True, port)
    check_ollama(acts[4], sent[4], "chat missing", "/api/chat", True, port)
    check(acts[5], sent[5], "chat llama3.2", "/v1/chat/completions", "openai", False, port)
    check(acts[6], sent[6], "chat llama3.2", "/v1/chat/completions", "openai", True, port)
    srv.shutdown()


def test_plain_http_curl_and_config():
    """curl over plain HTTP: a streamed /api/generate is one action; the [llm] plain_http
    key decides which servers are watched: an explicit 127.0.0.1:PORT is, another port
    alone is not, off is not; a bad value is refused naming the key."""
    if not shutil.which("curl"):
        print("    left out: curl is not installed")
        return
    d = tmpdir()
    srv = start_plain()
    port = srv.server_address[1]
    body = json.dumps({"model": "phi4", "prompt": "hi"})
    argv = ["curl", "-s", "-N", "-H", "Authorization: Bearer " + MARKER, "-d", body,
            "http://127.0.0.1:%d/api/generate" % port]
    bare, got, acts = sdk_run(argv, d, {})
    assert len(acts) == 1, (acts, got.stderr)
    check_ollama(acts[0], srv.sent[1], "text_completion phi4", "/api/generate", True, port)
    for value, want in (("127.0.0.1:%d" % port, 1), ("127.0.0.1:%d" % (port ^ 1), 0),
                        ("off", 0), ("10.1.2.3, loopback", 1)):
        out = os.path.join(d, "c.jsonl")
        if os.path.exists(out):
            os.unlink(out)
        conf = write(os.path.join(d, "c.conf"), "[output]\nsink = file:%s\n[llm]\nenable = on\n"
                     "plain_http = %s\n" % (out, value))
        got = run([CLI, "run", "-q", "-c", conf, "--"] + argv)
        assert got.stdout == bare.stdout and got.returncode == 0, got.stderr
        assert len(read_jsonl(out)) == want, (value, got.stderr)
    conf = write(os.path.join(d, "bad.conf"), "[llm]\nenable = on\nplain_http = 127.0.0.1:0\n")
    got = run([CLI, "run", "-c", conf, "--"] + argv)
    assert got.stdout == bare.stdout, got.stderr
    assert "bad.conf:3:" in got.stderr and "plain_http" in got.stderr, got.stderr
    srv.shutdown()


PLAIN_NODE = r"""
const port = process.argv[1];
(async () => {
  const r = await fetch("http://127.0.0.1:" + port + "/api/chat", {method: "POST",
    headers: {"content-type": "application/json", "authorization": "Bearer " + process.argv[2]},
    body: JSON.stringify({model: "mistral", messages: [{role: "user", content: "n"}]})});
  const lines = (await r.text()).trim().split("\n").map((l) => JSON.parse(l));
  console.log(r.status, lines.length, lines[lines.length - 1].eval_count);
})();
"""


def test_plain_http_node_fetch():
    """node's fetch over plain HTTP (libuv: writev and read on a non-blocking socket whose
    connect returns EINPROGRESS): a streamed /api/chat is one action as the server sent it."""
    if not shutil.which("node"):
        print("    left out: node is not installed")
        return
    d = tmpdir()
    srv = start_plain()
    port = srv.server_address[1]
    bare, got, acts = sdk_run(["node", "-e", PLAIN_NODE, str(port), MARKER], d, {})
    assert len(acts) == 1, (acts, got.stderr)
    check_ollama(acts[0], srv.sent[1], "chat mistral", "/api/chat", True, port)
    srv.shutdown()


class BrotliApi(Api):
    """test_llm's Api, but a chat completion asked for with Accept-Encoding: br is answered
    brotli-compressed (by node's zlib: python has no brotli encoder)."""

    def send_body(self, status, obj, gz=False):
        if "br" not in (self.headers.get("Accept-Encoding") or ""):
            return Api.send_body(self, status, obj, gz)
        body = subprocess.run(["node", "-e", "process.stdout.write(require('zlib')"
                               ".brotliCompressSync(Buffer.from(process.argv[1])))",
                               json.dumps(obj)], capture_output=True, check=True,
                              timeout=60).stdout
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "br")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


BROTLI_NODE = r"""
const https = require("https"), zlib = require("zlib");
const [port, key] = [process.argv[1], process.argv[2]];
const agent = new https.Agent({keepAlive: true});
function call(i) {
  const body = JSON.stringify({model: "gpt-br", messages: [{role: "user", content: "b" + i}]});
  return new Promise((ok) => {
    const req = https.request({host: "127.0.0.1", port, method: "POST", agent,
      path: "/v1/chat/completions", headers: {"content-type": "application/json",
      "content-length": Buffer.byteLength(body), "accept-encoding": "br",
      "authorization": "Bearer " + key}}, (res) => {
      const parts = [];
      res.on("data", (c) => parts.push(c));
      res.on("end", () => {
        const j = JSON.parse(zlib.brotliDecompressSync(Buffer.concat(parts)));
        console.log(res.headers["content-encoding"], j.model, j.usage.prompt_tokens);
        ok();
      });
    });
    req.end(body);
  });
}
(async () => { for (let i = 0; i < 4; i++) await call(i); agent.destroy(); })();
"""


def test_node_brotli():
    """node's https asking for brotli on a keep-alive agent: the answers are decoded with
    libbrotlidec inside a process that carries (and exports) its own brotli; four actions
    with the server's model and tokens, output unchanged, no key anywhere."""
    if not shutil.which("node"):
        print("    left out: node is not installed")
        return
    d = tmpdir()
    key, crt = make_cert(d)
    srv = Server(("127.0.0.1", 0), BrotliApi)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.sent, srv.auth = [], []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    bare, got, acts = sdk_run(["node", "-e", BROTLI_NODE, str(port), MARKER], d,
                              {"NODE_EXTRA_CA_CERTS": crt})
    assert bare.stdout.startswith("br gpt-br-2024"), bare.stdout
    assert len(acts) == 4 and len(srv.sent) == 8, (acts, got.stderr)
    for a, s in zip(acts, srv.sent[4:]):
        check(a, s, "chat gpt-br", "/v1/chat/completions", "openai", False, port)
    srv.shutdown()


def test_program_with_its_own_zlib():
    """A program exporting a zlib function of its own (zcopy_agent: inflateReset2, as node
    exports its built-in zlib) gets a gzip answer over plain HTTP: the libz opened to
    decode it keeps to its own functions (RTLD_DEEPBIND), so the program's copy is never
    called and the action has the server's model and tokens."""
    d = tmpdir()
    srv = start_plain()
    port = srv.server_address[1]
    bare, got, acts = sdk_run([os.path.join(BUILD, "agents", "zcopy_agent"), str(port)], d, {})
    assert "own inflateReset2" not in got.stderr, got.stderr
    assert len(acts) == 1, (acts, got.stderr)
    check(acts[0], srv.sent[1], "chat zmodel", "/v1/chat/completions", "openai", False, port)
    srv.shutdown()
