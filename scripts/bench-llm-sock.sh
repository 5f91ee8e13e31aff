#!/usr/bin/env bash
# bench-llm-sock.sh - what the plain-HTTP socket hooks of --llm (preload/hook/llm_sock.c)
# cost. 1) A loop of 1-byte write + read on a pipe (descriptors that are never watched: the
# cost every program pays is one array load per call), ns per write+read pair measured
# inside the process, under the interposer with llm off and with AGENTSIGHT_LLM=1, and
# bare. 2) curl fetching a 1 MB body over plain HTTP from 127.0.0.1 (a watched socket:
# every read is shown to the HTTP parser) once and 20 times per process, CPU time (user +
# system) of curl: the fixed cost per process and the cost per further MB. Only connect
# is hooked until the first watched connect: a process that never makes one rewrites a
# handful of slots; one that does rewrites the whole family then (got.c reads the page
# protection of each slot from /proc/self/maps: that is most of the fixed cost).
# Cases interleaved, medians of the reps; the ratios are the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
REPS=${BENCH_LLM_REPS:-9}
exec python3 - "$BUILD" "$REPS" <<'PY'
import http.server, os, socketserver, statistics, subprocess, sys, tempfile, threading

build, reps = sys.argv[1], int(sys.argv[2])
d = tempfile.mkdtemp(prefix="bench-llm-sock-")
src = os.path.join(d, "rw.c")
with open(src, "w") as f:
    f.write(r'''
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int n = atoi(argv[1]), p[2];
    char c = 'x';
    if (pipe(p)) return 1;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++)
        if (write(p[1], &c, 1) != 1 || read(p[0], &c, 1) != 1) return 1;
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.1f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
    return 0;
}
''')
rw = os.path.join(d, "rw")
subprocess.run(["cc", "-O2", "-o", rw, src], check=True)

base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSIGHT_") and k != "LD_PRELOAD"}
off = dict(base, LD_PRELOAD=os.path.abspath(os.path.join(build, "libagentsight-preload.so")),
           AGENTSIGHT_OUTPUT="file:" + os.path.join(d, "a.jsonl"))
on = dict(off, AGENTSIGHT_LLM="1")
cases = [("bare", base), ("preload, llm off", off), ("AGENTSIGHT_LLM=1", on)]

ns = {name: [] for name, _ in cases}
for i in range(reps):
    for name, env in cases[i % 3:] + cases[:i % 3]:
        out = subprocess.run([rw, "200000"], env=env, capture_output=True, text=True,
                             check=True, timeout=120).stdout
        ns[name].append(float(out))
med = {k: statistics.median(v) for k, v in ns.items()}
print("pipe write+read of 1 byte, 200,000 pairs per process, ns per pair, median of %d" % reps)
for name, _ in cases:
    print("  %-18s %8.1f ns   ratio to bare %.3f" % (name, med[name], med[name] / med["bare"]))
print("  the socket hooks on an unwatched descriptor (llm on / llm off): %.3f"
      % (med["AGENTSIGHT_LLM=1"] / med["preload, llm off"]))

BIG = os.urandom(1 << 20)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BIG)))
        self.end_headers()
        self.wfile.write(BIG)
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
srv = S(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
url = "http://127.0.0.1:%d/big" % srv.server_address[1]

def timed(argv, env):
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return ru.ru_utime + ru.ru_stime

conf = os.path.join(d, "off.conf")
with open(conf, "w") as f:
    f.write("[output]\nsink = file:%s\n[llm]\nenable = on\nplain_http = off\n"
            % os.path.join(d, "b.jsonl"))
cases = cases[:2] + [("llm, plain_http=off", dict(off, AGENTSIGHT_CONFIG=conf))] + cases[2:]
t = {(name, k): [] for name, _ in cases for k in (1, 20)}
for i in range(reps):
    for name, env in cases[i % 4:] + cases[:i % 4]:
        for k in (1, 20):
            t[name, k].append(timed(["curl", "-s"] + [url] * k, env))
med = {key: statistics.median(v) for key, v in t.items()}
print("plain-HTTP download from 127.0.0.1 (a watched socket), curl CPU time, median of %d:"
      % reps)
print("  one process fetching 1 MB once (fixed cost: start, GOT patching), and the cost of")
print("  each further MB ((20 fetches - 1 fetch) / 19)")
per = {name: (med[name, 20] - med[name, 1]) / 19 for name, _ in cases}
for name, _ in cases:
    print("  %-20s 1 fetch %6.1f ms   per further MB %6.2f ms   ratio to bare %.3f"
          % (name, med[name, 1] * 1000, per[name] * 1000, per[name] / per["bare"]))
print("  per MB on a watched descriptor (llm on / llm off): %.3f"
      % (per["AGENTSIGHT_LLM=1"] / per["preload, llm off"]))
print("  fixed cost of the socket hooks in a process that talks to a watched server:"
      " %+.1f ms (llm on - plain_http=off)"
      % ((med["AGENTSIGHT_LLM=1", 1] - med["llm, plain_http=off", 1]) * 1000))
srv.shutdown()
PY
