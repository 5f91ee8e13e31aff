"""benchproc.py - times one run of a program for the start-up benchmarks.

subprocess.run(..., timeout=T) waits by polling with sleeps that grow to 50 ms, so a wall
clock taken around it is rounded up to the poller's next wake-up: a 65 ms run reads 64 or
114 ms. Here the parent blocks in wait4() for the child, which returns the instant it
ends and gives the CPU time and page faults of the child and every descendant it waited
for; a timer kills the child if it outlives the timeout, so no run is unbounded.
"""
import os
import signal
import subprocess
import threading
import time


def run_timed(argv, env, timeout=600):
    """Runs argv with stdout and stderr discarded. Returns (wall_s, cpu_s, faults, status)
    where status is the wait status's exit code (or -signal)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killer = threading.Timer(timeout, lambda: os.kill(p.pid, signal.SIGKILL))
    killer.start()
    try:
        _, status, ru = os.wait4(p.pid, 0)
    finally:
        killer.cancel()
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait
    return (wall, ru.ru_utime + ru.ru_stime, ru.ru_minflt + ru.ru_majflt, p.returncode)
