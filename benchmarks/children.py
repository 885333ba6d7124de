"""The processes a benchmark starts end with it.

`timeout` (or a GPU machine's limit) stops a benchmark with SIGTERM; subprocess.run's own
timeout never fires then, and a `lmladder train` it started would live on, holding the GPU's
memory for the next benchmark (a gpt2-124m run starved that way on 2026-12-02:
benchmarks/results/mfu-h200-2026-12-02). `run` starts each command in a process group of its
own, its output in files (a process that outlives it cannot hold a pipe open), and stops the
group on its timeout; `end_with_me()` makes SIGTERM, SIGHUP and SIGINT stop every group still
running, and refuse new commands, then exit (128 + the signal). Stopping is SIGTERM, then after
GRACE seconds SIGKILL: torchrun, given SIGTERM, stops its workers, which run in sessions of
their own that no signal to its group reaches.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time

GRACE = 10.0  # seconds between SIGTERM and SIGKILL
_running: dict[int, subprocess.Popen] = {}  # process-group id (the leader's pid) -> the command
_lock = threading.RLock()  # reentrant: the signal handler runs in the main thread, which may hold it
_stopping = False


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, sig)
        elif sig == signal.SIGTERM:
            proc.terminate()
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError, OSError):
        pass


def stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM to each command's group, GRACE seconds for them to end, then SIGKILL (and reap)."""
    for proc in procs:
        _signal(proc, signal.SIGTERM)
    end = time.monotonic() + GRACE
    for proc in procs:
        try:
            proc.wait(max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc in procs:
        _signal(proc, getattr(signal, "SIGKILL", signal.SIGTERM))
        proc.wait()


def run(cmd: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env), except that
    the command runs in a process group of its own, stopped whole (stop) on the timeout
    (TimeoutExpired, with what it wrote) or when the benchmark is stopped (end_with_me)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        with _lock:
            if _stopping:
                raise SystemExit("stopping: no new commands")
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env, start_new_session=True)
            _running[proc.pid] = proc
        try:
            proc.wait(timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            stop([proc])
            timed_out = True
        finally:
            with _lock:
                _running.pop(proc.pid, None)
            if proc.poll() is None:  # an exception while waiting (the benchmark stopped): the group goes too
                stop([proc])
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if timed_out:
        raise subprocess.TimeoutExpired(cmd, timeout, stdout, stderr)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def end_with_me() -> None:
    """From the main thread: SIGTERM, SIGHUP and SIGINT stop every command `run` started that is
    still running and refuse new ones, then exit with 128 + the signal's number."""
    def handler(signum, _frame):
        global _stopping
        with _lock:
            _stopping = True
            procs = list(_running.values())
        stop(procs)
        raise SystemExit(128 + signum)

    for name in ("SIGTERM", "SIGHUP", "SIGINT"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)
