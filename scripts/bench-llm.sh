#!/usr/bin/env bash
# bench-llm.sh - what watching TLS for LLM calls costs a program (the budget: the TLS hooks
# add at most 5% to a 1 MB HTTPS download, and a bounded amount of memory per connection).
#
# Time: HTTPS downloads from a local server (1 MB and 10 MB bodies, keep-alive, several per
# process) by curl and by python3's http.client, the same over HTTP/2 (curl --http2 against
# node's http2 server, when node is there: HTTP/2 is decoded frame by frame, never passed
# through), and an LLM-shaped exchange (a streamed chat completion of 2,000 Server-Sent
# Events), each run bare, under the interposer with LLM
# watching off ("idle") and with it on ("llm"). The figure is the CPU time of the client
# process (user + system: the server's pace does not enter); the cases are interleaved in a
# rotating order, REPS times, and the medians compared: llm / idle is what the TLS hooks
# cost, idle / bare what the interposer costs without them.
#
# Where perf works, the share of each client's CPU samples spent in the interposer's own
# code and the cJSON it reads bodies with (idle and llm): a direct view of what the hooks cost, steadier than CPU times on a
# shared machine.
#
# Memory: a python3 client holding N keep-alive connections open, after one exchange on
# each (a download, or a chat completion), reports its resident set; (llm - idle) / N is
# what one watched connection keeps.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
REPS=${BENCH_LLM_REPS:-9}
exec python3 - "$BUILD" "$REPS" <<'PY'
import http.server, json, os, shutil, socketserver, ssl, statistics, subprocess, sys
import tempfile, threading

build, reps = sys.argv[1], int(sys.argv[2])
d = tempfile.mkdtemp(prefix="bench-llm-")
key, crt = os.path.join(d, "k.pem"), os.path.join(d, "c.pem")
subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                "-out", crt, "-days", "1", "-subj", "/CN=localhost", "-addext",
                "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
BODIES = {"/64k": os.urandom(64 << 10), "/1m": os.urandom(1 << 20),
          "/10m": os.urandom(10 << 20)}
CHAT = json.dumps({"id": "c1", "object": "chat.completion", "model": "m-1",
                   "choices": [{"index": 0, "message": {"role": "assistant",
                                                        "content": "x" * 200}}],
                   "usage": {"prompt_tokens": 3, "completion_tokens": 4}}).encode()
EVENTS = [b"data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "model": "m-1",
                                  "choices": [{"index": 0, "delta": {"content": "tok%d " % i}}]
                                  }).encode() + b"\n\n" for i in range(2000)]
EVENTS.append(b"data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk",
                                      "model": "m-1", "choices": [],
                                      "usage": {"prompt_tokens": 5, "completion_tokens": 2000}
                                      }).encode() + b"\n\ndata: [DONE]\n\n")
STREAM = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in EVENTS) + b"0\r\n\r\n"


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        body = BODIES.get(self.path.split("?")[0], b"")
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        self.send_response(200)
        if req.get("stream"):
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(STREAM)
            return
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(CHAT)))
        self.end_headers()
        self.wfile.write(CHAT)


class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 256


srv = S(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(crt, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
threading.Thread(target=srv.serve_forever, daemon=True).start()
port = srv.server_address[1]
url = "https://127.0.0.1:%d" % port

base = {k: v for k, v in os.environ.items()
        if not k.startswith("AGENTSIGHT_") and k != "LD_PRELOAD"}
idle = dict(base, LD_PRELOAD=os.path.abspath(os.path.join(build, "libagentsight-preload.so")),
            AGENTSIGHT_OUTPUT="file:" + os.path.join(d, "a.jsonl"))
llm = dict(idle, AGENTSIGHT_LLM="1")
CASES = [("bare", base), ("idle", idle), ("llm", llm)]


def cpu(argv, env):
    """CPU seconds (user + system) of the process."""
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, argv
    return ru.ru_utime + ru.ru_stime


curl = ["curl", "-s", "--http1.1", "--cacert", crt]
H2 = r"""
const http2 = require("http2"), fs = require("fs");
const big = Buffer.alloc(1 << 20, 7);
const s = http2.createSecureServer({key: fs.readFileSync(process.argv[1]),
                                    cert: fs.readFileSync(process.argv[2])});
s.on("stream", (st) => { st.respond({":status": 200, "content-type": "application/octet-stream"});
                         st.end(big); });
s.listen(0, "127.0.0.1", () => console.log(s.address().port));
"""
h2srv = None
if shutil.which("node"):
    h2srv = subprocess.Popen(["node", "-e", H2, key, crt], stdout=subprocess.PIPE, text=True)
    h2url = "https://127.0.0.1:%s/1m" % h2srv.stdout.readline().strip()
PYGET = r"""
import http.client, ssl, sys
c = http.client.HTTPSConnection("127.0.0.1", %d,
                                context=ssl.create_default_context(cafile=%r))
for _ in range(int(sys.argv[2])):
    c.request("GET", sys.argv[1]); r = c.getresponse()
    while r.read(1 << 16): pass
""" % (port, crt)
stream_req = '{"model":"m-1","stream":true,"messages":[{"role":"user","content":"hi"}]}'
rows = [
    ("curl 1 MB x10", curl + ["%s/1m" % url] * 10),
    ("curl 10 MB x3", curl + ["%s/10m" % url] * 3),
    ("python 1 MB x10", [sys.executable, "-c", PYGET, "/1m", "10"]),
    ("python 10 MB x3", [sys.executable, "-c", PYGET, "/10m", "3"]),
] + ([("curl h2 1 MB x10", ["curl", "-s", "--http2", "--cacert", crt] + [h2url] * 10)]
      if h2srv else []) + [
    ("curl SSE chat x5", sum([curl[1:] + ["-d", stream_req, "%s/v1/chat/completions" % url,
                                          "--next"] for _ in range(5)], ["curl"])[:-1]),
]
times = {(r, c): [] for r, _ in rows for c, _ in CASES}
for i in range(reps):  # interleaved, the order rotating: no case always runs first
    for rname, argv in rows:
        for cname, env in CASES[i % 3:] + CASES[:i % 3]:
            times[(rname, cname)].append(cpu(argv, env))
print("HTTPS client CPU time (user+sys), median of %d interleaved runs" % reps)
print("  %-18s %9s %9s %9s   %10s %10s" % ("", "bare ms", "idle ms", "llm ms", "idle/bare",
                                            "llm/idle"))
for rname, _ in rows:
    m = {c: statistics.median(times[(rname, c)]) for c, _ in CASES}
    print("  %-18s %9.1f %9.1f %9.1f   %10.3f %10.3f" % (
        rname, m["bare"] * 1e3, m["idle"] * 1e3, m["llm"] * 1e3, m["idle"] / m["bare"],
        m["llm"] / m["idle"]))
print("  budget: llm/idle at most 1.05 on the downloads; the SSE row is an LLM call decoded")


def preload_share(argv, env):
    """Percent of the process's cpu-clock samples in libagentsight-preload.so and the cJSON
    it opens to read bodies, or None."""
    data = os.path.join(d, "perf.data")
    r = subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "5000", "-o", data,
                        "--"] + argv, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300)
    if r.returncode != 0:
        return None
    out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", "dso"],
                         capture_output=True, text=True, timeout=300).stdout
    share = 0.0
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0].endswith("%") and ("libagentsight-preload" in f[-1] or
                                                   "libcjson" in f[-1]):
            share += float(f[0][:-1])
    return share


if shutil.which("perf") and preload_share(["true"], base) is not None:
    print("share of the client's CPU samples in the interposer's code and cJSON (perf, "
          "cpu-clock)")
    for rname, argv in rows:
        sh = {c: preload_share(argv, env) for c, env in CASES[1:]}
        print("  %-18s idle %5.2f%%   llm %5.2f%%" % (rname, sh["idle"], sh["llm"]))

HOLD = r"""
import http.client, ssl, sys
n, path = int(sys.argv[1]), sys.argv[2]
cx = ssl.create_default_context(cafile=%r)
cs = []
for _ in range(n):
    c = http.client.HTTPSConnection("127.0.0.1", %d, context=cx)
    if path == "chat":
        c.request("POST", "/v1/chat/completions", body=%r,
                  headers={"Content-Type": "application/json"})
    else:
        c.request("GET", path)
    r = c.getresponse(); r.read()
    cs.append(c)
for l in open("/proc/self/status"):
    if l.startswith("VmRSS"): print(l.split()[1])
""" % (crt, port, '{"model":"m-1","messages":[{"role":"user","content":"hi"}]}')


def rss(n, path, env):
    out = subprocess.run([sys.executable, "-c", HOLD, str(n), path], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    return int(out.stdout.split()[-1])


N = 200
print("memory: resident KiB of a python3 client holding %d keep-alive HTTPS connections" % N)
for what, path in (("after a 64 KiB download each", "/64k"), ("after a chat completion each",
                                                            "chat")):
    kib = {}
    for cname, env in CASES:
        kib[cname] = statistics.median(rss(N, path, env) for _ in range(3))
    print("  %-30s bare %7d  idle %7d  llm %7d   per connection (llm - idle) / %d: %5.1f KiB"
          % (what, kib["bare"], kib["idle"], kib["llm"], N, (kib["llm"] - kib["idle"]) / N))
acts = sum(1 for l in open(os.path.join(d, "a.jsonl"))) if os.path.exists(
    os.path.join(d, "a.jsonl")) else 0
print("actions written (chat and SSE runs under llm): %d" % acts)
srv.shutdown()
if h2srv:
    h2srv.kill()
PY
