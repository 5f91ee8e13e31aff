"""The HTTP sinks over https, to a collector of our own on 127.0.0.1 with a self-signed
certificate trusted through AGENTSIGHT_CA_BUNDLE: the program's exit status and output
are its own and every action arrives."""
import http.server
import json
import os
import shutil
import ssl
import threading

from common import CLI, agent, run, tmpdir, write


class _Collector(http.server.ThreadingHTTPServer):
    daemon_threads = True


def _serve(d):
    """Starts an https OTLP/JSON collector; returns (server, port, spans list)."""
    cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
    p = run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
             "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"])
    assert p.returncode == 0, p.stderr
    spans = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                doc = json.loads(body)
                for rs in doc.get("resourceSpans", []):
                    for ss in rs.get("scopeSpans", []):
                        spans.extend(ss.get("spans", []))
            except ValueError:
                pass
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *a):
            pass

    srv = _Collector(("127.0.0.1", 0), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, srv.server_address[1], spans, cert


def test_https_sink_program_exits_cleanly_and_delivers():
    """Proves a program whose actions go to an https OTLP collector exits with its own
    status and every action arrives: the final flush runs before OpenSSL's own exit
    cleanup, which libcurl's initialisation registers after ours (the flush used OpenSSL
    after its cleanup and the program died with SIGSEGV, exit 139, every time)."""
    if not shutil.which("openssl"):
        return
    d = tmpdir()
    srv, port, spans, cert = _serve(d)
    try:
        conf = write(os.path.join(d, "a.conf"), "[actions]\nlabs\n")
        env = {"AGENTSIGHT_CA_BUNDLE": cert, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
               "AGENTSIGHT_SPOOL_DIR": os.path.join(d, "spool")}
        for _ in range(3):
            before = len(spans)
            r = run([CLI, "run", "-q", "-c", conf, "-o", "otlp:https://127.0.0.1:%d" % port,
                     "--", agent("crash_agent"), "clean", "20"], env=env)
            assert r.returncode == 0, (r.returncode, r.stderr)
            assert r.stdout == "sum %d\n" % sum(1000 + k for k in range(20)), r.stdout
            got = [s for s in spans[before:] if s.get("name", "").split()[-1:] in (["labs"], ["crash_api"])]
            assert len(got) == 40, (len(got), [s.get("name") for s in spans[before:]][:5], r.stderr)
    finally:
        srv.shutdown()
