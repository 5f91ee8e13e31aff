"""LLM calls over HTTP/2 (ALPN h2) become actions (`agentsight run --llm`): a local HTTP/2
server (node's built-in http2 module, a self-signed certificate) speaks the OpenAI and
Anthropic shapes (JSON, gzip, Server-Sent Events, a 404 with an API error), and clients
nobody here wrote call it: curl --http2 (libcurl with nghttp2 over OpenSSL) and node's own
http2 client (several streams at once on one connection, node's built-in OpenSSL). Each
test proves the models and token counts in the actions equal what the server sent, the
program's output is unchanged and the Authorization header's marker is in no output."""
import json
import os
import shutil
import subprocess

from common import tmpdir
from test_llm import MARKER, check, llm_run, make_cert

SERVER = r"""
const http2 = require("http2"), fs = require("fs"), zlib = require("zlib");
const {execFileSync} = require("child_process");
const [key, cert, log, zstd] = process.argv.slice(1);
const srv = http2.createSecureServer({key: fs.readFileSync(key), cert: fs.readFileSync(cert)});
srv.on("stream", (stream, headers) => {
  const path = headers[":path"];
  let body = "";
  stream.on("data", (c) => body += c);
  stream.on("end", () => {
    let req = {};
    try { req = JSON.parse(body || "{}"); } catch (e) {}
    const model = req.model || "", served = model + "-2024";
    const words = ["Hello", " from", " ", model, " \u00e9t\u00e9"], text = words.join("");
    const tin = 7 + JSON.stringify(req).length % 50, tout = words.length + 2;
    const ae = headers["accept-encoding"] || "";
    let sent, encoding = null;
    const json = (status, obj) => {
      let b = Buffer.from(JSON.stringify(obj));
      const h = {":status": status, "content-type": "application/json"};
      if (/zstd/.test(ae) && zstd) {
        b = execFileSync(zstd, ["-q", "-c"], {input: b}); encoding = "zstd";
      } else if (/gzip/.test(ae)) {
        b = zlib.gzipSync(b); encoding = "gzip";
      }
      if (encoding) h["content-encoding"] = encoding;
      stream.respond(h);
      stream.end(b);
    };
    if (path === "/v1/chat/completions") {
      sent = {model: served, in: tin, out: tout, text, status: 200};
      if (req.stream) {
        stream.respond({":status": 200, "content-type": "text/event-stream"});
        for (const w of words)
          stream.write("data: " + JSON.stringify({model: served, choices: [{delta: {content: w}}]}) + "\n\n");
        stream.write("data: " + JSON.stringify({model: served, choices: [], usage: {prompt_tokens: tin, completion_tokens: tout}}) + "\n\n");
        stream.end("data: [DONE]\n\n");
      } else {
        json(200, {model: served, choices: [{message: {role: "assistant", content: text}}],
                   usage: {prompt_tokens: tin, completion_tokens: tout}});
      }
    } else if (path === "/v1/messages") {
      sent = {model: served, in: tin, out: tout, text, status: 200};
      if (req.stream) {
        stream.respond({":status": 200, "content-type": "text/event-stream"});
        stream.write("event: message_start\ndata: " + JSON.stringify({type: "message_start", message: {model: served, usage: {input_tokens: tin, output_tokens: 1}}}) + "\n\n");
        for (const w of words)
          stream.write("event: content_block_delta\ndata: " + JSON.stringify({type: "content_block_delta", index: 0, delta: {type: "text_delta", text: w}}) + "\n\n");
        stream.end("event: message_delta\ndata: " + JSON.stringify({type: "message_delta", usage: {output_tokens: tout}}) + "\n\n");
      } else {
        json(200, {model: served, type: "message", content: [{type: "text", text}],
                   usage: {input_tokens: tin, output_tokens: tout}});
      }
    } else if (path.startsWith("/files/")) {
      sent = {download: true};
      stream.respond({":status": 200, "content-type": "application/octet-stream"});
      stream.end(Buffer.alloc(200000, 7));
    } else {
      sent = {model: null, in: null, out: null, text: null, status: 404,
              error: "The model `" + model + "` does not exist"};
      json(404, {error: {message: sent.error, type: "invalid_request_error"}});
    }
    sent.auth = headers["authorization"] || headers["x-api-key"] || null;
    sent.encoding = encoding;
    fs.appendFileSync(log, JSON.stringify(sent) + "\n");
  });
});
srv.listen(0, "127.0.0.1", () => console.log(srv.address().port));
"""

NODE_CLIENT = r"""
const http2 = require("http2");
const [port, key] = process.argv.slice(1);
const s = http2.connect("https://127.0.0.1:" + port);
const call = (path, body) => new Promise((ok) => {
  const r = s.request({":method": "POST", ":path": path, "content-type": "application/json",
                       "authorization": "Bearer " + key});
  let d = "";
  r.setEncoding("utf8");
  r.on("response", (h) => d += h[":status"] + " ");
  r.on("data", (c) => d += c.length + ",");
  r.on("end", () => ok(d));
  r.end(JSON.stringify(body));
});
(async () => {
  // three streams open at once on one connection, then one more after them
  const outs = await Promise.all([
    call("/v1/chat/completions", {model: "gpt-4o-mini", messages: [{role: "user", content: "a"}]}),
    call("/v1/messages", {model: "claude-h2", stream: true, max_tokens: 3, messages: []}),
    call("/v1/chat/completions", {model: "gpt-4.1", stream: true, messages: []})]);
  outs.push(await call("/v1/messages", {model: "claude-h2", max_tokens: 3, messages: []}));
  console.log(outs.map((o) => o.split(" ")[0]).join(" "));
  s.close();
})();
"""


def start_h2_server(d):
    """node's http2 server on a free port; returns (process, port, crt, log path)."""
    key, crt = make_cert(d)
    log = os.path.join(d, "sent.jsonl")
    p = subprocess.Popen(["node", "-e", SERVER, key, crt, log, shutil.which("zstd") or ""],
                         stdout=subprocess.PIPE, text=True)
    port = int(p.stdout.readline())
    return p, port, crt, log


def sent_records(log):
    if not os.path.exists(log):
        return []
    return [json.loads(l) for l in open(log)]


def have_tools():
    if not shutil.which("node"):
        print("    left out: node is not installed")
        return False
    return True


def test_curl_http2():
    """curl --http2 over one connection: a JSON chat, an SSE chat, an Anthropic stream, a
    compressed answer (--compressed: zstd where curl and the zstd command have it, else
    gzip), a 404 and a download, in sequence (streams 1, 3, 5, ...): one action per LLM
    call with the server's models and tokens, none for the download."""
    if not have_tools() or not shutil.which("curl"):
        return
    out = subprocess.run(["curl", "-V"], capture_output=True, text=True).stdout
    if "HTTP2" not in out:
        print("    left out: curl has no HTTP/2")
        return
    d = tmpdir()
    srv, port, crt, log = start_h2_server(d)
    try:
        url = "https://127.0.0.1:%d" % port
        bodies = [("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": []}, []),
                  ("/v1/chat/completions", {"model": "gpt-4o-mini", "stream": True,
                                            "messages": []}, ["-N"]),
                  ("/v1/messages", {"model": "claude-3-5-haiku", "stream": True,
                                    "max_tokens": 5, "messages": []}, []),
                  ("/v1/chat/completions", {"model": "gpt-gz", "messages": []},
                   ["--compressed"]),
                  ("/v2/chat/completions", {"model": "nope"}, []),
                  ("/files/blob", None, [])]
        argv = ["curl"]
        for i, (path, body, extra) in enumerate(bodies):
            argv += ["-s", "--http2", "--cacert", crt, "-o", os.path.join(d, "o%d" % i)]
            argv += extra + ["-H", "Authorization: Bearer " + MARKER]
            if body is not None:
                argv += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
            argv += [url + path, "--next"]
        argv = argv[:-1] + ["-w", "%{http_version}\n"]
        bare, got, acts = llm_run(argv, d)
        assert "2" in bare.stdout, bare.stdout
        sent = sent_records(log)[len(bodies):]  # the preloaded run's answers
        assert len(sent) == len(bodies), sent
        assert all(s["auth"] == "Bearer " + MARKER for s in sent)
        assert len(acts) == 5, (acts, got.stderr)
        check(acts[0], sent[0], "chat gpt-4o-mini", "/v1/chat/completions", "openai", False,
              port)
        check(acts[1], sent[1], "chat gpt-4o-mini", "/v1/chat/completions", "openai", True,
              port)
        check(acts[2], sent[2], "chat claude-3-5-haiku", "/v1/messages", "anthropic", True,
              port)
        check(acts[3], sent[3], "chat gpt-gz", "/v1/chat/completions", "openai", False, port)
        want = "zstd" if "zstd" in out.split("Features:")[-1] and shutil.which("zstd") else "gzip"
        assert sent[3]["encoding"] == want, sent[3]
        check(acts[4], sent[4], "chat nope", "/v2/chat/completions", "openai", False, port)
        assert "not decoded" not in got.stderr, got.stderr
    finally:
        srv.kill()
        srv.wait()


def test_node_http2_concurrent_streams():
    """node's http2 client (node's built-in OpenSSL, entry-patched): three requests in
    flight at once on one connection, then a fourth; four actions, each matched to its
    own stream's answer by model, tokens and text."""
    if not have_tools():
        return
    d = tmpdir()
    srv, port, crt, log = start_h2_server(d)
    try:
        argv = ["node", "-e", NODE_CLIENT, str(port), MARKER]
        bare, got, acts = llm_run(argv, d, env={"NODE_EXTRA_CA_CERTS": crt}, quiet=False)
        if not acts and "not decoded" in got.stderr:
            print("    left out: node's OpenSSL could not be patched here")
            return
        sent = sent_records(log)[4:]
        assert len(sent) == 4 and len(acts) == 4, (acts, sent, got.stderr)
        by_model = {}
        for s in sent:
            by_model.setdefault(s["model"], []).append(s)
        seen = set()
        for a in acts:
            t = a["tools_used"]
            cands = [s for s in by_model[t["response_model"]] if id(s) not in seen and
                     (s["text"] == a.get("response"))]
            assert cands, (a, sent)
            s = cands[0]
            seen.add(id(s))
            name = a["action_name"]
            check(a, s, name, t["endpoint"], t["provider"], t["stream"], port)
        names = sorted(a["action_name"] for a in acts)
        assert names == ["chat claude-h2", "chat claude-h2", "chat gpt-4.1", "chat gpt-4o-mini"]
        assert sorted(a["tools_used"]["stream"] for a in acts) == [False, False, True, True]
    finally:
        srv.kill()
        srv.wait()
