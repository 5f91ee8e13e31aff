"""Every call becomes exactly one accounted action (issue 12, items 4, 5 and 7): under
queue = wait nothing is lost; under queue = drop a call that finds its thread's ring full
is counted once, into a per-function summary action; drops are reported by cause; a fork
child never reports its parent's frames; errno rules see the errno the call set; a typed
action recovered after SIGKILL is the action a live run delivers."""
import collections
import json
import os
import re
import signal

from common import CLI, agent, read_jsonl, run, run_preloaded, tmpdir, write

AGENT = agent("acct_agent")


def _conf(d, body, queue="drop"):
    return write(os.path.join(d, "acct.conf"), f"[output]\nqueue = {queue}\n[actions]\n{body}\n")


def _split(actions, name):
    """(plain actions of name, summary actions of name)."""
    plain = [a for a in actions if a["action_name"] == name and
             not (a.get("metadata") or {}).get("summary")]
    summ = [a for a in actions if a["action_name"] == name and
            (a.get("metadata") or {}).get("summary")]
    return plain, summ


def _count(path, name):
    """(plain actions of name, summary actions of name) of a large JSONL file: every
    summary line and every 500th line are parsed with json (parsing 400,000 lines takes
    longer than the run itself here); the others are counted by their action_name key."""
    plain, summ = 0, []
    key = '"action_name":' + json.dumps(name) + ","
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if '"summary":true' in line or i % 500 == 0:
                a = json.loads(line)
                if a["action_name"] != name:
                    continue
                if (a.get("metadata") or {}).get("summary"):
                    summ.append(a)
                    continue
                plain += 1
            elif line.startswith("{" + key):
                plain += 1
    return plain, summ


def _run_cli(conf, out, argv, env=None):
    e = {"AGENTSIGHT_SPOOL_DIR": os.path.join(os.path.dirname(out), "spool")}
    e.update(env or {})
    return run([CLI, "run", "-c", conf, "-o", "file:" + out, "--"] + argv, env=e)


def test_wait_loses_nothing():
    """queue = wait: 4 threads x 100,000 calls of a typed function give exactly 400,000
    actions (before: 84% were dropped), and the run summary says 0 dropped."""
    d = tmpdir()
    conf = _conf(d, "int acct_mul(int a, int b)", queue="wait")
    out = os.path.join(d, "out.jsonl")
    bare = run([AGENT, "loop", "4", "100000"])
    r = _run_cli(conf, out, [AGENT, "loop", "4", "100000"])
    assert r.returncode == bare.returncode == 0, r.stderr
    assert r.stdout == bare.stdout
    plain, summ = _count(out, "acct_mul")
    assert plain == 400000 and not summ, (plain, len(summ))
    assert "(0 dropped)" in r.stderr, r.stderr
    assert "actions dropped" not in r.stderr


def test_wait_policy_from_the_environment():
    """AGENTSIGHT_QUEUE_POLICY=wait is obeyed by the interposer too (config says drop)."""
    d = tmpdir()
    conf = _conf(d, "acct_mul", queue="drop")
    out = os.path.join(d, "out.jsonl")
    r = _run_cli(conf, out, [AGENT, "loop", "2", "100000"],
                 env={"AGENTSIGHT_QUEUE_POLICY": "wait", "AGENTSIGHT_QUEUE_BYTES": "65536"})
    assert r.returncode == 0, r.stderr
    plain, summ = _count(out, "acct_mul")
    assert plain == 200000 and not summ, (plain, len(summ))


def _stats_line(stderr):
    """(queue full, over the thread limit, in a signal handler, calls summarized) of the
    run summary; its damaged-record count must read 0 (nothing here damages a ring)."""
    m = re.search(r"dropped (\d+) \(queue full\), (\d+) \(over the thread limit\), (\d+) "
                  r"\(in a signal handler\), 0 \(damaged record\); (\d+) calls summarized",
                  stderr)
    return tuple(int(x) for x in m.groups()) if m else None


def test_drop_counts_every_call_once():
    """queue = drop with rings that fill: for typed and untyped entries, tracked calls plus
    the calls of the summary actions equal the calls made, each drop counted once (the run
    summary's summarized count is exactly the calls in the summary actions), and no call is
    reported lost."""
    for entry in ("int acct_mul(int a, int b)", "acct_mul"):
        d = tmpdir()
        conf = _conf(d, entry)
        out = os.path.join(d, "out.jsonl")
        r = _run_cli(conf, out, [AGENT, "loop", "4", "100000"],
                     env={"AGENTSIGHT_QUEUE_BYTES": "65536"})
        assert r.returncode == 0, r.stderr
        plain, summ = _count(out, "acct_mul")
        summarized = sum(a["metadata"]["calls"] for a in summ)
        assert summ, "the rings never filled: no summary to check"
        assert plain + summarized == 400000, (entry, plain, summarized)
        st = _stats_line(r.stderr)
        assert st == (0, 0, 0, summarized), (st, r.stderr)
        assert "actions dropped" not in r.stderr


def test_summary_action_fields():
    """A ring that cannot drain (the exporter held off) fills after its first records:
    the rest of the calls of each function become one summary action per thread with
    metadata.summary = true, calls, errors (the error_if rule applied to each call),
    min <= max, total, and a log2 histogram whose counts add up to calls."""
    d = tmpdir()
    conf = _conf(d, "int acct_search(const char *user, int k)  error_if=negative\n"
                    "double acct_div(double a, double b)\n")
    out = os.path.join(d, "out.jsonl")
    n = 3000
    r = _run_cli(conf, out, [AGENT, "typed", str(n), "clean"],
                 env={"AGENTSIGHT_TEST_POLL_MS": "600000", "AGENTSIGHT_QUEUE_BYTES": "65536"})
    assert r.returncode == 0, r.stderr
    actions = read_jsonl(out)
    plain, summ = _split(actions, "acct_search")
    assert len(summ) == 1, len(summ)
    m = summ[0]["metadata"]
    assert m["summary"] is True and m["calls"] + len(plain) == n
    failed_plain = sum(1 for a in plain if a["error_msg"])
    assert failed_plain + m["errors"] == n // 5, (failed_plain, m["errors"])
    assert summ[0]["error_msg"] == f"{m['errors']} of {m['calls']} calls failed"
    dn = m["duration_ns"]
    assert 0 <= dn["min"] <= dn["max"] and dn["total"] >= dn["max"]
    assert sum(m["histogram_log2_ns"].values()) == m["calls"]
    assert summ[0]["tools_used"]["function"] == "acct_search"
    plain_div, summ_div = _split(actions, "acct_div")
    assert len(plain_div) + sum(a["metadata"]["calls"] for a in summ_div) == n


def test_summaries_of_a_killed_process_are_recovered():
    """A process killed while its ring is full: the calls still in its summary table come
    back through `agentsight send`, so tracked + summarized == calls made."""
    d = tmpdir()
    spool = os.path.join(d, "spool")
    conf = _conf(d, "int acct_search(const char *user, int k)  error_if=negative")
    out = os.path.join(d, "out.jsonl")
    n = 2000
    r = run_preloaded([AGENT, "typed", str(n), "kill"], config=conf, out=out,
                      env={"AGENTSIGHT_SPOOL_DIR": spool, "AGENTSIGHT_TEST_POLL_MS": "600000",
                           "AGENTSIGHT_QUEUE_BYTES": "65536"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert read_jsonl(out) == []
    s = run([CLI, "send"], env={"AGENTSIGHT_SPOOL_DIR": spool})
    assert s.returncode == 0, s.stderr
    plain, summ = _split(read_jsonl(out), "acct_search")
    assert summ and all(a["metadata"].get("agentsight_recovered") for a in summ)
    assert len(plain) + sum(a["metadata"]["calls"] for a in summ) == n


def test_fork_after_longjmp_reports_each_call_once():
    """A parent longjmps out of a wrapped call, then forks; the child makes 100 calls.
    Exactly 101 actions: the child never reports the frame its parent left, and the
    parent reports it as left by longjmp, not as 'process exited inside it'."""
    d = tmpdir()
    conf = write(os.path.join(d, "j.conf"), "[actions]\nacct_cb\nacct_mul\n")
    out = os.path.join(d, "out.jsonl")
    bare = run([AGENT, "jmpfork", "100"])
    r = _run_cli(conf, out, [AGENT, "jmpfork", "100"])
    assert r.returncode == bare.returncode == 0, r.stderr
    assert r.stdout == bare.stdout
    actions = read_jsonl(out)
    assert len(actions) == 101, collections.Counter(a["action_name"] for a in actions)
    cb = [a for a in actions if a["action_name"] == "acct_cb"]
    mul = [a for a in actions if a["action_name"] == "acct_mul"]
    assert len(cb) == 1 and len(mul) == 100
    assert cb[0]["metadata"]["pid"] != mul[0]["metadata"]["pid"]
    assert cb[0]["error_msg"] == "did not return (left by longjmp or an exception)"


def test_errno_rule_sees_the_errno_each_call_set():
    """error_if=errno with a function that sets ENOENT on every failure (the agent never
    resets errno): every one of the 4 x 1,000 failing calls gets
    "returned -1: No such file or directory" (before: once per thread)."""
    d = tmpdir()
    conf = write(os.path.join(d, "e.conf"),
                 "[actions]\nint acct_fail(const char *path)  error_if=errno\n")
    out = os.path.join(d, "out.jsonl")
    bare = run([AGENT, "errno", "4", "1000"])
    r = _run_cli(conf, out, [AGENT, "errno", "4", "1000"])
    assert r.returncode == bare.returncode == 0, r.stderr
    assert r.stdout == bare.stdout == "failed 4000\n"
    msgs = collections.Counter(a["error_msg"] for a in read_jsonl(out))
    assert msgs == {"returned -1: No such file or directory": 4000}, msgs


TYPED_CONF = """[actions]
int acct_search(const char *user, int k)  error_if=negative  display="Database search"
double acct_div(double a, double b)
const char *acct_name(int k)  name=name_lookup  error_if=null
float acct_scale(float x)
_Bool acct_even(long x)  error_if=false
unsigned long long acct_big(unsigned long long x)
void acct_log(const char *msg)
int acct_fail(const char *path)  error_if=errno
"""

# Fields that differ between two runs of the same calls: times, who ran them, event ids.
_RUN_FIELDS = ("started_at", "ended_at", "timestamp", "duration_ms", "event_id")
_RUN_META = ("pid", "tid", "duration_ns", "agentsight_recovered")


def _comparable(a):
    a = dict(a)
    for k in _RUN_FIELDS:
        a.pop(k)
    a["metadata"] = {k: v for k, v in (a["metadata"] or {}).items() if k not in _RUN_META}
    return a


def test_typed_actions_recovered_after_sigkill_equal_live():
    """The same typed calls, once delivered live and once recovered by `agentsight send`
    from the ring file of a SIGKILLed process: every action is equal field by field (typed
    responses: double, float, bool, unsigned 64-bit, strings, NULL; parameters; error
    rules negative/null/false/errno with strerror; name= and display names), except the
    times and the pid/tid."""
    n = 40
    d = tmpdir()
    conf = write(os.path.join(d, "t.conf"), TYPED_CONF)
    env = {"AGENTSIGHT_CONVERSATION_ID": "conv-accounting-typed",
           "AGENTSIGHT_SPOOL_DIR": os.path.join(d, "spool")}
    live_out = os.path.join(d, "live.jsonl")
    r = run_preloaded([AGENT, "typed", str(n), "clean"], config=conf, out=live_out, env=env)
    assert r.returncode == 0, r.stderr
    rec_out = os.path.join(d, "recovered.jsonl")
    k = run_preloaded([AGENT, "typed", str(n), "kill"], config=conf, out=rec_out,
                      env=dict(env, AGENTSIGHT_TEST_POLL_MS="600000"))
    assert k.returncode == -signal.SIGKILL, k.stderr
    assert k.stdout == r.stdout
    assert read_jsonl(rec_out) == []
    s = run([CLI, "send"], env={"AGENTSIGHT_SPOOL_DIR": env["AGENTSIGHT_SPOOL_DIR"]})
    assert s.returncode == 0, s.stderr
    live, recovered = read_jsonl(live_out), read_jsonl(rec_out)
    assert len(live) == len(recovered) == 9 * n, (len(live), len(recovered))
    assert all(a["metadata"]["agentsight_recovered"] is True for a in recovered)
    for a, b in zip(live, recovered):
        assert _comparable(a) == _comparable(b), (a, b)
    # What the comparison covers: each kind of value and rule really occurs.
    by_name = collections.defaultdict(list)
    for a in live:
        by_name[a["action_name"]].append(a)
    assert by_name["acct_div"][2]["response"] == "0.5"
    assert by_name["acct_search"][0]["error_msg"] == "returned -1"
    assert by_name["acct_search"][0]["metadata"]["display_name"] == "Database search"
    assert by_name["acct_fail"][0]["error_msg"] == "returned -1: No such file or directory"
    assert {a["response"] for a in by_name["name_lookup"]} >= {"alpha", None}
    assert by_name["acct_even"][1]["response"] == "false"
    assert by_name["acct_search"][1]["tools_used"]["parameters"] == {"user": "user-7", "k": 1}


def test_thread_limit_drops_are_labelled_by_cause():
    """1,100 threads alive at once, one call each: 1,024 have a queue and are tracked, the
    other 76 are dropped and reported as over the thread limit, never as "queue full"."""
    d = tmpdir()
    conf = write(os.path.join(d, "th.conf"), "[actions]\nacct_mul\n")
    out = os.path.join(d, "out.jsonl")
    r = _run_cli(conf, out, [AGENT, "threads", "1100"], env={"AGENTSIGHT_QUEUE_BYTES": "65536"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "calls 1100 sum 6600\n"
    tracked = len(read_jsonl(out))
    assert tracked == 1024, tracked
    assert _stats_line(r.stderr) == (0, 76, 0, 0), r.stderr
    # `run` reports the losses of the tree once; the process prints no line of its own
    assert "dropped 0 (queue full), 76 (over the thread limit)" in r.stderr, r.stderr
    assert "over the 1024-thread limit" not in r.stderr, r.stderr


def test_run_quiet_still_reports_losses_once():
    """Proves `run -q` prints nothing but one line about lost actions when the tree lost
    some (losses are always shown), and that a tree of several processes that each lost
    calls gets that one line, not one line per process."""
    d = tmpdir()
    conf = write(os.path.join(d, "th.conf"), "[actions]\nacct_mul\n")
    out = os.path.join(d, "out.jsonl")
    script = "%s threads 1100 >/dev/null; %s threads 1100 >/dev/null" % (AGENT, AGENT)
    r = run([CLI, "run", "-q", "-c", conf, "-o", "file:" + out, "--", "/bin/sh", "-c", script],
            env={"AGENTSIGHT_QUEUE_BYTES": "65536",
                 "AGENTSIGHT_SPOOL_DIR": os.path.join(d, "spool")})
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert lines == ["agentsight: 152 actions dropped (0 queue full, 152 over the thread "
                     "limit, 0 in a signal handler, 0 damaged records); 0 actions not "
                     "delivered by a sink (spooled or lost)"], r.stderr


def test_drops_of_a_killed_process_are_reported_by_recovery():
    """queue = wait with a 1 ms bound and an exporter held off: the calls that found the
    ring full are dropped and counted in the ring file; after SIGKILL, `agentsight send`
    delivers the recorded ones and reports the drops, so recorded + dropped == calls."""
    d = tmpdir()
    spool = os.path.join(d, "spool")
    conf = write(os.path.join(d, "w.conf"), "[output]\nqueue = wait\n[actions]\n"
                 "double acct_div(double a, double b)\n")
    out = os.path.join(d, "out.jsonl")
    n = 1000  # 104-byte records: more than the smallest ring (64 KiB) holds
    r = run_preloaded([AGENT, "typed", str(n), "kill"], config=conf, out=out,
                      env={"AGENTSIGHT_SPOOL_DIR": spool, "AGENTSIGHT_TEST_POLL_MS": "600000",
                           "AGENTSIGHT_QUEUE_BYTES": "65536", "AGENTSIGHT_QUEUE_WAIT_MS": "1"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    s = run([CLI, "send"], env={"AGENTSIGHT_SPOOL_DIR": spool})
    assert s.returncode == 0, s.stderr
    recorded = len(read_jsonl(out))
    m = re.search(r"process \d+ dropped (\d+) actions \((\d+) queue full, 0 in a signal handler\)",
                  s.stderr)
    assert m, s.stderr
    assert int(m.group(1)) == int(m.group(2)) > 0
    assert recorded + int(m.group(1)) == n, (recorded, m.group(1))
