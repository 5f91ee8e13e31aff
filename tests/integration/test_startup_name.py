"""The name a process reports (OTLP service.name) is what the kernel calls it, though the
interposer no longer reads /proc/self/comm at start: a program whose file name is longer
than 15 bytes, started through a symbolic link and as a #! script, exports spans whose
resource service.name equals the process's /proc/self/comm."""
import json
import os
import shutil
import sys

from common import run_preloaded, tmpdir, write
from test_delivery import Emulator

SCRIPT = """#!%s
import os
print(open("/proc/self/comm").read().strip())
os.getppid()
"""


def service_names(store):
    """The service.name of every span the emulator stored."""
    names = []
    with open(store, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec["kind"] != "span":
                continue
            span = rec["span"] if "span" in rec else rec["data"]
            res = span.get("resource", {}) if isinstance(span, dict) else {}
            for a in res.get("attributes", []):
                if a.get("key") == "service.name":
                    names.append(a["value"].get("stringValue"))
    return names


def test_service_name_is_the_process_name():
    """Proves: for a python3 copy with a 27-byte name run through a symbolic link with a
    different long name, and for a #! script with a long name, service.name equals the
    /proc/self/comm the program itself reads (the link's / script's name, cut to 15
    bytes), and the program's output is its own."""
    d = tmpdir()
    py = shutil.copy(sys.executable, os.path.join(d, "python-copy-with-a-long-name"))
    link = os.path.join(d, "link-to-python-with-long-name")
    os.symlink(py, link)
    script = write(os.path.join(d, "a-script-with-a-long-name.py"), SCRIPT % sys.executable)
    os.chmod(script, 0o755)
    body = SCRIPT.split("\n", 1)[1]
    conf = write(os.path.join(d, "agent.conf"), "[actions]\nint getppid(void)\n")
    cases = [([link, "-c", body], "link-to-python-with-long-name"[:15]),
             ([script], "a-script-with-a-long-name.py"[:15])]
    for i, (argv, comm) in enumerate(cases):
        store = os.path.join(d, "store%d.jsonl" % i)
        emu = Emulator(store)
        try:
            r = run_preloaded(argv, config=conf,
                              env={"AGENTSIGHT_OUTPUT": "otlp:" + emu.endpoint,
                                   # the emulator reads OTLP/JSON, not the protobuf default
                                   "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
                                   "AGENTSIGHT_SPOOL_DIR": os.path.join(d, "spool%d" % i)},
                              timeout=60)
        finally:
            emu.stop()
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == comm, (r.stdout, comm)
        names = service_names(store)
        assert names and set(names) == {comm}, (names, comm, r.stderr)
