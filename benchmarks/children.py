"""The processes a benchmark starts end with it.

`timeout` (or a GPU machine's limit) stops a benchmark with SIGTERM; subprocess.run's own
timeout never fires then, and a `lmladder train` it started would live on, holding the GPU's
memory for the next benchmark (a gpt2-124m run starved that way on 2026-12-02:
benchmarks/results/mfu-h200-2026-12-02). `run` starts each command in a process group of its
own and kills the group on its timeout; `end_with_me()` makes SIGTERM and SIGHUP kill every
group still running, then exit (128 + the signal).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading

_running: set[int] = set()  # process-group ids (the leaders' pids) of the commands running now
_lock = threading.Lock()


def _kill(group: int) -> None:
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run(cmd: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env), except that
    the command runs in a process group of its own (torchrun's workers included), which is killed
    whole on the timeout (TimeoutExpired, with what it wrote) or when the benchmark is stopped."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          start_new_session=True) as proc:
        with _lock:
            _running.add(proc.pid)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc.pid)
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(cmd, timeout, out, err) from None
        finally:
            with _lock:
                _running.discard(proc.pid)
            if proc.poll() is None:  # an exception while waiting (a signal): the group goes too
                _kill(proc.pid)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def end_with_me() -> None:
    """From the main thread: SIGTERM and SIGHUP kill every command `run` started that is still
    running, then exit with 128 + the signal's number."""
    def stop(signum, _frame):
        with _lock:
            groups = list(_running)
        for group in groups:
            _kill(group)
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
