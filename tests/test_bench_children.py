"""benchmarks/children.py: the processes a benchmark starts end with it, on its timeout and when
the benchmark itself is stopped (SIGTERM, as `timeout` sends)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import children  # noqa: E402

# a child that starts a grandchild (as torchrun starts its workers), writes both pids and sleeps
FAMILY = ("import os, subprocess, sys, time\n"
          "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
          "open(sys.argv[1], 'w').write(f'{os.getpid()} {g.pid}')\n"
          "time.sleep(60)\n")


# as torchrun: its worker in a session of its own (no signal to the group reaches it), stopped by
# the launcher when the launcher gets SIGTERM; the worker holds the launcher's output open
LAUNCHER = ("import os, signal, subprocess, sys, time\n"
            "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
            "def down(*_):\n"
            "    g.terminate(); g.wait(); sys.exit(1)\n"
            "signal.signal(signal.SIGTERM, down)\n"
            "open(sys.argv[1], 'w').write(f'{os.getpid()} {g.pid}')\n"
            "time.sleep(60)\n")


def gone(pid: int) -> bool:
    """No such process, or one killed and not yet reaped (a zombie: a container's init may not reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_for(path: Path, seconds: float = 20) -> list[int]:
    end = time.time() + seconds
    while time.time() < end:
        if path.is_file() and len(path.read_text().split()) == 2:
            return [int(p) for p in path.read_text().split()]
        time.sleep(0.05)
    pytest.fail(f"{path} was never written")


def settle(pids: list[int], seconds: float = 10) -> bool:
    end = time.time() + seconds
    while time.time() < end and not all(gone(p) for p in pids):
        time.sleep(0.05)
    return all(gone(p) for p in pids)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_run_is_subprocess_run_and_its_timeout_kills_the_whole_group(tmp_path):
    done = children.run([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"], 30)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    pids = tmp_path / "pids"
    with pytest.raises(subprocess.TimeoutExpired):
        children.run([sys.executable, "-c", FAMILY, str(pids)], 3)
    assert settle(wait_for(pids)), "the command or its own child outlived the timeout"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_a_launcher_is_asked_to_stop_its_workers_first(tmp_path):
    """SIGTERM first (the launcher stops its own-session workers), SIGKILL only after GRACE: the
    timeout returns at once, not when the workers would have ended, and nothing is left."""
    pids = tmp_path / "pids"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        children.run([sys.executable, "-c", LAUNCHER, str(pids)], 3)
    assert time.monotonic() - started < 3 + children.GRACE / 2
    assert settle(wait_for(pids)), "the launcher or its worker outlived the timeout"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
@pytest.mark.parametrize("family, sig", [(FAMILY, signal.SIGTERM), (LAUNCHER, signal.SIGTERM),
                                         (LAUNCHER, signal.SIGINT)], ids=["group-term", "launcher-term", "launcher-int"])
def test_a_stopped_benchmark_takes_its_commands_with_it(tmp_path, family, sig):
    """SIGTERM (as `timeout` sends) or Ctrl-C to the benchmark: every command it started, and
    theirs, ends with it."""
    pids = tmp_path / "pids"
    parent = tmp_path / "bench.py"
    parent.write_text(f"import sys\nsys.path.insert(0, {str(REPO / 'benchmarks')!r})\nimport children\n"
                      "children.end_with_me()\n"
                      f"children.run([sys.executable, '-c', {family!r}, {str(pids)!r}], 120)\n")
    bench = subprocess.Popen([sys.executable, str(parent)])
    started = wait_for(pids)
    bench.send_signal(sig)
    assert bench.wait(20) == 128 + sig
    assert settle(started), "a command outlived the benchmark that started it"
