"""LLM calls made by clients nobody here wrote, beyond test_llm.py's: the official node SDKs
(`openai`, `@anthropic-ai/sdk`, pinned, installed by scripts/npm-sdks.sh into build/npm) on
node's own fetch (undici: pooled keep-alive connections, gzip asked for by default, node's
built-in OpenSSL) against the local HTTPS server of test_llm.py. Each test proves that the
actions carry what the server answered (models, tokens, text, status, the API's error),
that the program prints what a bare run prints, and that the fake API key is in no output
file, no stderr and nothing under the run's state (spool) directory."""
import os
import shutil
import subprocess

from common import CLI, ROOT, BUILD, read_jsonl, run, tmpdir
from test_llm import MARKER, check, start_server

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


def test_openai_sdk():
    """The openai SDK: six chat completions (gzip answers: fetch asks for them; node carries
    its own zlib, which the decoder's libz must never call into: that corrupted the heap),
    a stream with stream_options.include_usage, an embedding and a 404 (baseURL with an
    unknown prefix), on one undici pool: nine actions whose models, tokens, text, status
    and error are what the server answered."""
    why = npm_sdks()
    if why:
        print("    left out: " + why)
        return
    d = tmpdir()
    srv, crt = start_server(d)
    port = srv.server_address[1]
    argv = ["node", "-e", OPENAI_CLIENT, str(port), MARKER]
    bare, got, acts = sdk_run(argv, d, sdk_env(crt))
    assert not bare.stdout.startswith("failed"), bare.stdout
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
    why = npm_sdks()
    if why:
        print("    left out: " + why)
        return
    d = tmpdir()
    srv, crt = start_server(d)
    port = srv.server_address[1]
    argv = ["node", "-e", ANTHROPIC_CLIENT, str(port), MARKER]
    bare, got, acts = sdk_run(argv, d, sdk_env(crt))
    assert not bare.stdout.startswith("failed"), bare.stdout
    sent = srv.sent[2:]
    assert len(sent) == 2 and len(acts) == 2, (acts, got.stderr)
    assert all(a == MARKER for a in srv.auth)
    check(acts[0], sent[0], "chat claude-3-5-haiku", "/v1/messages", "anthropic", False, port)
    check(acts[1], sent[1], "chat claude-sonnet-4", "/v1/messages", "anthropic", True, port)
    srv.shutdown()
