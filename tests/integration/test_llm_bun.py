"""LLM calls of programs with BoringSSL linked in and no TLS symbols (`agentsight run --llm`):
the bun runtime and Claude Code's native executable (a bun program), both installed from npm
by scripts/install-bun-agents.sh into the build tree, call the local HTTPS server of
test_llm.py. The record layer is found by code signatures (preload/hook/llm_sig.c); each test
proves that the models, tokens and text in the actions equal what the server sent, that the
program's output and exit code are those of a bare run, and that the API key is in no output.
Without npm or without the registry the tests are left out, saying why."""
import io
import json
import os
import shutil
import ssl
import subprocess
import threading

import test_llm as T
from common import BUILD, CLI, ROOT, read_jsonl, run, tmpdir

NPM_DIR = os.path.join(BUILD, "npm-bun")
_installed = None


def installed():
    """(bun, claude) executables, installing them once per test run; None where missing."""
    global _installed
    if _installed is None:
        _installed = (None, None), "npm is not installed"
        if shutil.which("npm"):
            p = subprocess.run([os.path.join(ROOT, "scripts", "install-bun-agents.sh"), NPM_DIR],
                               capture_output=True, text=True, timeout=600)
            why = "npm could not install bun and Claude Code: " + p.stderr.strip()[-200:]
            nm = os.path.join(NPM_DIR, "node_modules")

            def elf(*cands):
                for c in cands:
                    path = os.path.join(nm, *c)
                    try:
                        with open(path, "rb") as f:
                            if f.read(4) == b"\x7fELF" and os.access(path, os.X_OK):
                                return path
                    except OSError:
                        pass
                return None
            bun = elf(("bun", "bin", "bun.exe"), ("@oven", "bun-linux-x64", "bin", "bun"))
            claude = elf(("@anthropic-ai", "claude-code", "bin", "claude.exe"),
                         ("@anthropic-ai", "claude-code-linux-x64", "claude"))
            _installed = (bun, claude), (why if p.returncode else "no x86-64 Linux executable "
                                         "in the packages")
    return _installed


class BetaApi(T.Api):
    """test_llm's server, also answering the query string Claude Code adds
    (/v1/messages?beta=true) and its HEAD / connectivity probe."""

    def do_POST(self):
        self.server.paths.append(self.path)
        self.path = self.path.split("?")[0]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.streams.append(bool(json.loads(body or b"{}").get("stream")))
        if self.path.startswith("/eof/"):
            # a body that ends only with the connection (no length, no chunks), closed
            # without close_notify: the exchange ends when the client frees its SSL
            model = json.loads(body)["model"]
            text = "until the end"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(json.dumps({"model": model, "choices": [{"message": {
                "role": "assistant", "content": text}}], "usage": {
                "prompt_tokens": 3, "completion_tokens": 4}}).encode())
            self.server.sent.append({"model": model, "in": 3, "out": 4, "text": text,
                                     "status": 200})
            self.close_connection = True
            return
        conn, self.rfile = self.rfile, io.BytesIO(body)  # the base class reads the body again
        try:
            T.Api.do_POST(self)
        finally:
            self.rfile = conn

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def start_server(d):
    key, crt = T.make_cert(d)
    srv = T.Server(("127.0.0.1", 0), BetaApi)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.sent, srv.auth, srv.paths, srv.streams = [], [], [], []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, crt


def llm_run(argv, d, env):
    """Runs argv bare, then under `agentsight run --llm` (stdin empty); returns
    (bare, got, actions, exchanges the server answered during the traced run)."""
    bare = run(argv, env=env, stdin="", timeout=180)
    out = os.path.join(d, "actions.jsonl")
    got = run([CLI, "run", "--llm", "-o", "file:" + out, "--"] + argv, env=env, stdin="",
              timeout=180)
    assert got.stdout == bare.stdout, (bare.stdout, got.stdout, got.stderr)
    assert got.returncode == bare.returncode, (bare.returncode, got.returncode, got.stderr)
    acts = read_jsonl(out) if os.path.exists(out) else []
    for where in (got.stdout, got.stderr, open(out).read() if os.path.exists(out) else ""):
        assert T.MARKER not in where
    return bare, got, acts


BUN_CLIENT = r"""
const [port, key] = process.argv.slice(2);
const base = "https://127.0.0.1:" + port;
const h = {"Content-Type": "application/json", "Authorization": "Bearer " + key};
const calls = [
  ["/v1/chat/completions", {model: "gpt-4o-mini", messages: [{role: "user", content: "hi"}]}],
  ["/v1/messages", {model: "claude-n", max_tokens: 9, stream: true,
                    messages: [{role: "user", content: "hi"}]}],
  ["/v1/chat/completions", {model: "gpt-4o-mini", stream: true, stream_options: {include_usage: true},
                            messages: [{role: "user", content: "hi"}]}],
  ["/v1/nope/completions", {model: "nope"}],
  ["/eof/v1/chat/completions", {model: "gpt-eof"}],
  ["/v1/chat/completions", {model: "gpt-after"}],
];
for (const [path, body] of calls) {
  const r = await fetch(base + path, {method: "POST", headers: h, body: JSON.stringify(body)});
  console.log(r.status, (await r.text()).length);
  if (path.startsWith("/eof/"))
    await new Promise((done) => setTimeout(done, 300));  // the closed socket is freed
}
"""


def test_bun_fetch():
    """bun's fetch() (BoringSSL inside bun, no TLS symbol, no unwind table: the functions'
    ends are found by decoding) on one keep-alive connection: JSON, both SSE shapes and a
    404 each become one action equal to what the server sent; a response whose body ends
    with the connection (closed without close_notify) becomes its action when bun frees
    the SSL, before the next exchange's."""
    (bun, _), why = installed()
    if not bun:
        print("    left out: " + why)
        return
    d = tmpdir()
    srv, crt = start_server(d)
    port = srv.server_address[1]
    js = os.path.join(d, "client.mjs")
    with open(js, "w") as f:
        f.write(BUN_CLIENT)
    bare, got, acts = llm_run([bun, js, str(port), T.MARKER], d, {"NODE_EXTRA_CA_CERTS": crt})
    assert bare.returncode == 0, bare.stderr
    assert "not decoded" not in got.stderr, got.stderr
    n = len(srv.sent) // 2  # the bare run's exchanges come first
    assert len(acts) == n == 6, (acts, srv.sent, got.stderr)
    sent = srv.sent[n:]
    T.check(acts[0], sent[0], "chat gpt-4o-mini", "/v1/chat/completions", "openai", False, port)
    T.check(acts[1], sent[1], "chat claude-n", "/v1/messages", "anthropic", True, port)
    T.check(acts[2], sent[2], "chat gpt-4o-mini", "/v1/chat/completions", "openai", True, port)
    T.check(acts[3], sent[3], "text_completion nope", "/v1/nope/completions", "openai", False, port)
    # ended by ssl_free, before the next exchange: not left open until the process exits
    T.check(acts[4], sent[4], "chat gpt-eof", "/eof/v1/chat/completions", "openai", False, port)
    T.check(acts[5], sent[5], "chat gpt-after", "/v1/chat/completions", "openai", False, port)
    srv.shutdown()


def test_claude_code_print():
    """Claude Code's own executable (`claude -p`, pointed at the local server with
    ANTHROPIC_BASE_URL and NODE_EXTRA_CA_CERTS, a fresh HOME, nonessential traffic off):
    every /v1/messages exchange it makes becomes one action whose model, tokens and text
    are what the server answered, and its printed answer is unchanged."""
    (_, claude), why = installed()
    if not claude:
        print("    left out: " + why)
        return
    d = tmpdir()
    srv, crt = start_server(d)
    port = srv.server_address[1]
    home = os.path.join(d, "home")
    os.makedirs(home)
    env = {"NODE_EXTRA_CA_CERTS": crt, "HOME": home, "XDG_CONFIG_HOME": home,
           "ANTHROPIC_BASE_URL": "https://127.0.0.1:%d" % port, "ANTHROPIC_API_KEY": T.MARKER,
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
           "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1"}
    bare, got, acts = llm_run([claude, "-p", "hi"], d, env)
    assert bare.returncode == 0 and "Hello from" in bare.stdout, (bare.stdout, bare.stderr)
    assert "not decoded" not in got.stderr, got.stderr
    n = len(srv.sent) // 2
    assert n >= 1 and len(srv.sent) == 2 * n, srv.sent
    assert len(acts) == n, (acts, srv.sent, got.stderr)
    assert all(p.startswith("/v1/messages") for p in srv.paths), srv.paths
    for act, sent, stream in zip(acts, srv.sent[n:], srv.streams[n:]):
        model = sent["model"][:-len("-2024")]
        T.check(act, sent, "chat " + model, "/v1/messages", "anthropic", stream, port)
    srv.shutdown()


DECOY = r"""
#include <stdio.h>
#include <string.h>
/* the file name the signatures start from, without BoringSSL around it */
static const char name[] = "../../third_party/boringssl/ssl/s3_pkt.cc";
int main(void) {
    const char *volatile p = name;
    printf("%zu\n", strlen(p));
    return 3;
}
"""


def test_file_name_without_boringssl():
    """A program that holds BoringSSL's file name but no BoringSSL: the run says once that
    its calls are not decoded, and the program's output and exit code are unchanged."""
    cc = shutil.which("cc")
    if not cc:
        print("    left out: no C compiler")
        return
    d = tmpdir()
    src, exe = os.path.join(d, "decoy.c"), os.path.join(d, "decoy")
    with open(src, "w") as f:
        f.write(DECOY)
    subprocess.run([cc, "-O2", "-o", exe, src], check=True, timeout=60)
    bare = run([exe])
    got = run([CLI, "run", "--llm", "-o", "file:" + os.path.join(d, "a.jsonl"), "--", exe])
    assert (got.stdout, got.returncode) == (bare.stdout, bare.returncode) == ("41\n", 3)
    assert got.stderr.count("BoringSSL built in without symbols") == 1, got.stderr
