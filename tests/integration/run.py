#!/usr/bin/env python3
"""Integration test runner: imports every tests/integration/test_*.py, runs each of its
test_* functions (in file order), and prints one closing line 'N passed, N failed'.

Each test runs real processes (test agents, sqlite3, curl, the CLI) and reads what they
produced with a JSON parser. A test fails by raising (assert). Usage:
    run.py [-k SUBSTRING] [FILE...]
"""
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    # Spool and crash-safe ring files of the processes the tests start go to a private
    # state directory of each test, never to the user's ~/.local/state: what one test's
    # killed processes leave would otherwise be recovered by the next test's processes
    # (at their first tracked call), delaying their own delivery past the flush timeout.
    # The interposer's caches (DWARF prototypes, objects without local matches) go to a
    # directory of this run, never to the user's ~/.cache.
    state = tempfile.mkdtemp(prefix="agentsight-test-state-")
    os.chmod(state, 0o700)
    os.environ["XDG_CACHE_HOME"] = os.path.join(state, "cache")
    args = sys.argv[1:]
    pattern = None
    if len(args) >= 2 and args[0] == "-k":
        pattern, args = args[1], args[2:]
    files = args or sorted(
        os.path.join(HERE, f) for f in os.listdir(HERE)
        if f.startswith("test_") and f.endswith(".py"))
    sys.path.insert(0, HERE)
    passed = failed = 0
    failures = []
    for path in files:
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except Exception:
            failed += 1
            failures.append(name)
            print(f"[ FAILED ] {name} (import)\n{traceback.format_exc()}", flush=True)
            continue
        tests = [(n, f) for n, f in vars(mod).items()
                 if n.startswith("test_") and callable(f)]
        tests.sort(key=lambda t: t[1].__code__.co_firstlineno)
        for tname, fn in tests:
            full = f"{name}.{tname}"
            if pattern and pattern not in full:
                continue
            t0 = time.monotonic()
            os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix=full + "-", dir=state)
            try:
                fn()
            except Exception:
                failed += 1
                failures.append(full)
                print(f"[ FAILED ] {full}\n{traceback.format_exc()}", flush=True)
            else:
                passed += 1
                print(f"[     OK ] {full} ({time.monotonic() - t0:.1f}s)", flush=True)
    if failures:
        print("failed: " + ", ".join(failures))
    if not failed:
        shutil.rmtree(state, ignore_errors=True)
    else:
        print(f"state directory of this run kept: {state}")
    print(f"integration: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
