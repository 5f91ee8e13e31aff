#!/usr/bin/env bash
# bench-llm.sh - what watching TLS for LLM calls costs a program that downloads: curl
# fetching a 1 MB body over HTTPS (keep-alive, 10 fetches per process) from a local server,
# bare, under the interposer with nothing to do, and with AGENTSIGHT_LLM=1, interleaved,
# CPU time of the curl process (user + system: the server's pace does not enter), median of
# the reps; the ratios are the figures (budget: at most 1.05). Then the memory side: the
# peak RSS of one curl process in both cases, and of a 100-exchange chat run.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
REPS=${BENCH_LLM_REPS:-9}
exec python3 - "$BUILD" "$REPS" <<'PY'
import http.server, json, os, resource, socketserver, ssl, statistics, subprocess, sys
import tempfile, threading, time

build, reps = sys.argv[1], int(sys.argv[2])
d = tempfile.mkdtemp(prefix="bench-llm-")
key, crt = os.path.join(d, "k.pem"), os.path.join(d, "c.pem")
subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                "-out", crt, "-days", "1", "-subj", "/CN=localhost", "-addext",
                "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
BIG = os.urandom(1 << 20)

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BIG)))
        self.end_headers()
        self.wfile.write(BIG)
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        b = json.dumps({"model": "m", "choices": [{"message": {"content": "x" * 200}}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 4}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
srv = S(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(crt, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
threading.Thread(target=srv.serve_forever, daemon=True).start()
url = "https://127.0.0.1:%d" % srv.server_address[1]

base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSIGHT_") and k != "LD_PRELOAD"}
pre = dict(base, LD_PRELOAD=os.path.abspath(os.path.join(build, "libagentsight-preload.so")),
           AGENTSIGHT_LLM="1", AGENTSIGHT_OUTPUT="file:" + os.path.join(d, "a.jsonl"))

def timed(argv, env):
    """CPU seconds (user + system) of the process: the server's pace does not enter."""
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    assert p.returncode == 0
    return ru.ru_utime + ru.ru_stime

get = ["curl", "-s", "--http1.1", "--cacert", crt] + ["%s/big" % url] * 10
off = {k: v for k, v in pre.items() if k != "AGENTSIGHT_LLM"}
cases = [("bare", base), ("preload, llm off", off), ("AGENTSIGHT_LLM=1", pre)]
times = {name: [] for name, _ in cases}
for i in range(reps):  # the order rotates: no case always runs first
    for name, env in cases[i % 3:] + cases[:i % 3]:
        times[name].append(timed(get, env))
med = {name: statistics.median(t) for name, t in times.items()}
print("1 MB HTTPS download x10 per curl process, CPU time (user+sys), median of %d" % reps)
for name, _ in cases:
    print("  %-18s %8.1f ms   ratio to bare %.3f" % (name, med[name] * 1000,
                                                     med[name] / med["bare"]))
print("  the TLS hooks alone (llm on / llm off): %.3f (budget 1.05)"
      % (med["AGENTSIGHT_LLM=1"] / med["preload, llm off"]))
chat = ["curl", "-s", "--http1.1", "--cacert", crt]
for _ in range(100):
    chat += ["-d", '{"model":"m","messages":[]}', "%s/v1/chat/completions" % url]
def peak(argv, env):
    # a fresh python child per measure: ru_maxrss of children is the maximum so far
    code = "import resource,subprocess,sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    return int(subprocess.run([sys.executable, "-c", code] + argv, env=env, capture_output=True,
                              text=True, timeout=120).stdout)
print("peak RSS of curl (KiB): download bare %d, llm %d; 100 chat exchanges bare %d, llm %d"
      % (peak(get, base), peak(get, pre), peak(chat, base), peak(chat, pre)))
n = sum(1 for _ in open(os.path.join(d, "a.jsonl")))
print("actions written by the chat runs: %d (100 expected per llm run)" % n)
srv.shutdown()
PY
