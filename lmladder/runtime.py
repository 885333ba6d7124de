"""Process-wide memory settings, made once when the command line starts (lmladder.cli.main).

Building an n-gram model allocates and frees arrays of hundreds of MB; how the allocators hand
that memory back decides the peak RSS, and page faults a good part of the time. Measured on 2
shared cores, `lmladder ngram train gutenberg-en` (letter 8-gram; KenLM-compatible word
5-gram), whole process, 3 runs each, peak RSS up to writing the model folder:

    numpy's transparent-huge-page advice (NUMPY_MADVISE_HUGEPAGE, on by default on Linux) makes
        page faults of fresh large arrays dearer when the kernel's THP mode is "madvise": an
        earlier engine's word 5-gram took 12.2 s with it, 7.2 s without; the current engine's
        system time drops 3.5 -> 2.75 s (word) and 2.8 -> 2.4 s (letters) without it, peak
        unchanged. Turned off.
    glibc malloc's dynamic mmap threshold: after a large array is freed, glibc raises the size
        from which it maps memory (up to 32 MB), so later arrays below that size come from the
        heap and stay there when freed. A fixed 1 MiB threshold with a 64 MiB trim threshold
        (kept so the small chunk temporaries reuse heap memory instead of faulting in anew) cut
        the peak 482 -> 415 MiB (letters) and ~600 -> 500 MiB (word) for ~0.3-0.5 s more time.
    Arrow's default pool (mimalloc) keeps what it freed: the word build's peak was 754 MiB with
        it against 512 MiB with Arrow's system pool (glibc malloc), at the same speed.

Anything the user set explicitly wins: NUMPY_MADVISE_HUGEPAGE, ARROW_DEFAULT_MEMORY_POOL, and
glibc's own MALLOC_MMAP_THRESHOLD_ (or the glibc.malloc.mmap_threshold tunable). Nothing here
imports numpy or pyarrow: when they are not loaded yet, their switches are set through the
environment they read at import.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
MMAP_THRESHOLD = 1 << 20  # arrays from 1 MiB up are mapped, and unmapped when freed
TRIM_THRESHOLD = 64 << 20  # free memory kept at the heap's top for the small temporaries to reuse

_done = False


THREADS_PER_CORE = 4  # more CPU threads than this a core only slow work down (and far more crash torch)


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def thread_limit() -> tuple[int, int]:
    """(the most CPU threads a command may ask for, the usable cores that is THREADS_PER_CORE times)."""
    cores = usable_cores()
    return THREADS_PER_CORE * cores, cores


def available_memory() -> int | None:
    """The memory free for new allocations (MemAvailable), in bytes; None where /proc/meminfo
    does not say (not Linux): then nothing is checked against it."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("MemAvailable:"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def configure() -> None:
    """numpy's and Arrow's settings above, once per process (later calls do nothing); glibc's
    are lean_malloc's."""
    global _done
    if _done:
        return
    _done = True
    _numpy_hugepages()
    _arrow_pool()


def lean_malloc() -> None:
    """glibc's fixed thresholds above, for the commands that build n-gram models only: on every
    command they cost a CPU training run dear, since torch's tensors from 1 MiB up are then mapped
    and unmapped (with their pages faulted in afresh) at each step: a 2-layer gpt-char, 40 steps
    on 2 cores, took 45.2 s with them and 33.0 s without."""
    _glibc_mmap_threshold()


def _numpy_hugepages() -> None:
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return
    if "numpy" in sys.modules:
        from numpy._core import multiarray

        multiarray._set_madvise_hugepage(False)
    else:
        os.environ["NUMPY_MADVISE_HUGEPAGE"] = "0"


def _arrow_pool() -> None:
    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return
    if "pyarrow" in sys.modules:
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())
    else:
        os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"


def _glibc_mmap_threshold() -> None:
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "glibc.malloc.mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt"):
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    except OSError:
        pass


# --- start-up: the GPU's context made while torch imports -----------------------------------
def warm_gpu(argv: list[str]):
    """For `lmladder train` on a GPU: create the GPU's primary CUDA context in a thread through the
    driver's own API, while the main thread imports torch (1-2 s); torch then finds the context
    made instead of spending 0.2-0.3 s on it (an H200 host). ctypes lets go of the GIL during the
    driver's calls, so the two overlap. On a machine without a CUDA driver or GPU it finds nothing
    and does nothing. Only where the command line alone says the run is on a GPU: not for --device
    cpu, --help, the models trained without torch, nor a --config or --resume without --device
    (the device may be in the file). The GPU: under torchrun, the process's LOCAL_RANK (as the
    trainer's); else --device cuda:N, else 0 (CUDA_VISIBLE_DEVICES applies as usual). Returns the
    thread, or None."""
    import threading

    def value(name: str) -> str | None:
        given = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == name), None)
        return next((a.split("=", 1)[1] for a in argv if a.startswith(name + "=")), given)

    device = value("--device")
    if device is None and any(a in argv or any(x.startswith(a + "=") for x in argv) for a in ("--config", "--resume")):
        return None
    if (device is not None and not device.startswith("cuda") and device != "auto") \
            or value("--model") in ("uniform", "unigram") or "--help" in argv or "-h" in argv:
        return None
    if "RANK" in os.environ and os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1"):  # torchrun
        local = os.environ.get("LOCAL_RANK", "0")
        if not local.isdigit():
            return None
        ordinal = int(local)
    else:
        ordinal = int(device[5:]) if device and device.startswith("cuda:") and device[5:].isdigit() else 0
    thread = threading.Thread(target=_retain_primary_context, args=(ordinal,), name="cuda-context", daemon=True)
    thread.start()
    return thread


def _retain_primary_context(ordinal: int) -> None:
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return
    device, context = ctypes.c_int(), ctypes.c_void_p()
    if cuda.cuInit(0) == 0 and cuda.cuDeviceGet(ctypes.byref(device), ordinal) == 0:
        cuda.cuDevicePrimaryCtxRetain(ctypes.byref(context), device)  # kept for the process's life


# --- start-up: when a command's stages were reached, from the process's own start ---------
_marks: dict[str, float] = {}


def mark(stage: str, first: bool = False) -> None:
    """Note that `stage` is reached now (the first time only); first: the marks start afresh."""
    import time

    if first:
        _marks.clear()
    _marks.setdefault(stage, time.time())


def process_start() -> float | None:
    """When this process started (Unix seconds, within the kernel's 10 ms clock tick), or None
    off Linux: its age is the system's uptime less its start time, both since boot."""
    import time

    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22 of proc(5): starttime
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def startup(through: str) -> dict[str, float]:
    """Each stage marked so far, in seconds since the process started, if `through` was marked
    (else, or off Linux, nothing: the process was not started for what asks); the marks are
    cleared, so a second run in the same process reports none."""
    start = process_start()
    marks = dict(_marks)
    _marks.clear()
    if start is None or through not in marks:
        return {}
    return {stage: round(t - start, 3) for stage, t in marks.items()}
