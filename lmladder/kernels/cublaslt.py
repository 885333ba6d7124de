"""Matrix products with cuBLASLt's GELU epilogues, called through ctypes (torch exposes only
the forward one without the pre-activation, `torch._addmm_activation`).

Two products, on row-major torch tensors:

  gelu_aux(x, w, b)     u = x w^T + b and y = gelu(u)  (epilogue GELU_AUX_BIAS: y is the output,
                        u the "aux" matrix the backward pass needs)
  dgelu(dout, w2, u)    g = (dout w2) * gelu'(u)  (epilogue DGELU, u as its aux input)

(DGELU_BGRAD, which would also sum g's columns, took 1.73-1.75 ms with each of its algorithms at
65,536 x 768 x 3,072 on an H100, where DGELU and torch's column sums take 0.56 + 0.15.)

cuBLASLt's GELU is the tanh form, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), GPT-2's.
cuBLASLt is column-major, so each row-major product is computed as its transpose: a row-major
(M, N) matrix is a column-major (N, M) one with the same memory. The library is the one torch
already loaded (found in /proc/self/maps, or by name); its handle, a 32 MiB workspace per
device and each shape's descriptors are made once and kept (the pointers are set on the kept
descriptor before each call: one thread at a time); of the heuristic's first ALGORITHMS
algorithms for a shape, the fastest, timed at its first call, is kept (so two runs may pick
different ones, which round differently). The first call on a device must come before any
CUDA graph is recorded (it loads the library and makes the handle and workspace): the trainer's
warm-up steps see to that.
"""

from __future__ import annotations

import ctypes
import functools

import torch

# cublasLt.h's enum values
COMPUTE_32F = 68
R_32F, R_16F, R_16BF = 0, 2, 14
OP_N, OP_T = 0, 1
DESC_TRANSA, DESC_TRANSB, DESC_EPILOGUE, DESC_BIAS_POINTER = 3, 4, 7, 8
DESC_AUX_POINTER, DESC_AUX_LD = 11, 12
PREF_MAX_WORKSPACE_BYTES = 1
EPILOGUE = {"gelu_aux": 160, "gelu_aux_bias": 164, "dgelu": 192}
WORKSPACE_BYTES = 32 << 20
ALGORITHMS = 8  # the heuristic's best few for a shape; the fastest of them is kept (timed once)


class HeuristicResult(ctypes.Structure):
    _fields_ = [("algo", ctypes.c_uint64 * 8), ("workspace_size", ctypes.c_size_t), ("state", ctypes.c_int),
                ("waves", ctypes.c_float), ("reserved", ctypes.c_int * 4)]


@functools.cache
def library():
    """libcublasLt as torch loaded it, or None."""
    if not torch.cuda.is_available():
        return None
    torch.zeros(1, device="cuda") @ torch.zeros(1, 1, device="cuda")  # torch opens cuBLAS(Lt) lazily
    names = []
    try:
        with open("/proc/self/maps") as maps:
            names = sorted({line.split()[-1] for line in maps if "libcublasLt.so" in line})
    except OSError:
        pass
    for name in [*names, "libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"]:
        try:
            return _declare(ctypes.CDLL(name))
        except OSError:
            continue
    return None


def _declare(lib):
    """The C signatures of the functions used (every one returns a cublasStatus_t)."""
    p, i32, u64, i64, size = ctypes.c_void_p, ctypes.c_int32, ctypes.c_uint64, ctypes.c_int64, ctypes.c_size_t
    pp = ctypes.POINTER(ctypes.c_void_p)
    signatures = {
        "cublasLtCreate": [pp],
        "cublasLtMatmulDescCreate": [pp, i32, i32],
        "cublasLtMatmulDescSetAttribute": [p, i32, p, size],
        "cublasLtMatrixLayoutCreate": [pp, i32, u64, u64, i64],
        "cublasLtMatmulPreferenceCreate": [pp],
        "cublasLtMatmulPreferenceSetAttribute": [p, i32, p, size],
        "cublasLtMatmulAlgoGetHeuristic": [p, p, p, p, p, p, p, i32, ctypes.POINTER(HeuristicResult),
                                           ctypes.POINTER(ctypes.c_int)],
        "cublasLtMatmul": [p, p, p, p, p, p, p, p, p, p, p, p, p, p, size, p],
    }
    for name, args in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, ctypes.c_int
    return lib


def available(device: torch.device | str = "cuda") -> bool:
    return torch.device(device).type == "cuda" and library() is not None


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"cuBLASLt {what} failed with status {status}")


@functools.cache
def _handle(device_index: int):
    lib = library()
    handle = ctypes.c_void_p()
    _check(lib.cublasLtCreate(ctypes.byref(handle)), "cublasLtCreate")
    workspace = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=f"cuda:{device_index}")
    return handle, workspace


def _set(setter, obj, attr: int, value) -> None:
    _check(setter(obj, attr, ctypes.byref(value), ctypes.sizeof(value)), f"set attribute {attr}")


def _layout(dtype: int, rows: int, cols: int, ld: int):
    layout = ctypes.c_void_p()
    _check(library().cublasLtMatrixLayoutCreate(ctypes.byref(layout), dtype, ctypes.c_uint64(rows),
                                                ctypes.c_uint64(cols), ctypes.c_int64(ld)), "layout")
    return layout


@functools.cache
def _plan(device_index: int, dtype: int, epilogue: str, trans_a: bool, m: int, n: int, k: int):
    """Descriptors and the heuristic's algorithm for the column-major D (m, n) = op(A) (m, k)
    B (k, n), A stored (k, m) when trans_a else (m, k)."""
    lib = library()
    handle, _ = _handle(device_index)
    desc = ctypes.c_void_p()
    _check(lib.cublasLtMatmulDescCreate(ctypes.byref(desc), COMPUTE_32F, R_32F), "descriptor")
    _set(lib.cublasLtMatmulDescSetAttribute, desc, DESC_TRANSA, ctypes.c_int32(OP_T if trans_a else OP_N))
    _set(lib.cublasLtMatmulDescSetAttribute, desc, DESC_TRANSB, ctypes.c_int32(OP_N))
    _set(lib.cublasLtMatmulDescSetAttribute, desc, DESC_EPILOGUE, ctypes.c_uint32(EPILOGUE[epilogue]))
    _set(lib.cublasLtMatmulDescSetAttribute, desc, DESC_AUX_LD, ctypes.c_int64(m))
    a = _layout(dtype, k, m, k) if trans_a else _layout(dtype, m, k, m)
    b = _layout(dtype, k, n, k)
    d = _layout(dtype, m, n, m)
    pref = ctypes.c_void_p()
    _check(lib.cublasLtMatmulPreferenceCreate(ctypes.byref(pref)), "preference")
    _set(lib.cublasLtMatmulPreferenceSetAttribute, pref, PREF_MAX_WORKSPACE_BYTES, ctypes.c_uint64(WORKSPACE_BYTES))
    results = (HeuristicResult * ALGORITHMS)()
    found = ctypes.c_int(0)
    _check(lib.cublasLtMatmulAlgoGetHeuristic(handle, desc, a, b, d, d, pref, ALGORITHMS, results,
                                              ctypes.byref(found)), "heuristic")
    algos = [results[i] for i in range(found.value) if results[i].state == 0]
    if not algos:
        raise RuntimeError(f"cuBLASLt has no algorithm for {epilogue} at {m} x {n} x {k}")
    return desc, a, b, d, algos


CHOSEN: dict[tuple, int] = {}  # _plan's key -> the index of its fastest algorithm
TIMINGS: dict[tuple, list[float]] = {}  # _plan's key -> ms of each algorithm when it was timed


def _fastest(key: tuple, algos: list, call) -> int:
    """The index of the fastest of `algos` (each timed over 3 calls after one untimed one, on the
    operands at hand: their result is overwritten by the last call); the first, untimed, while
    a CUDA graph is being recorded (it is timed at the next call outside one)."""
    if key in CHOSEN:
        return CHOSEN[key]
    if len(algos) == 1 or torch.cuda.is_current_stream_capturing():
        return 0
    times = []
    for algo in algos:
        call(algo)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(3):
            call(algo)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 3)
    TIMINGS[key] = times
    CHOSEN[key] = min(range(len(algos)), key=times.__getitem__)
    return CHOSEN[key]


def _matmul(epilogue: str, a: torch.Tensor, trans_a: bool, b: torch.Tensor, out: torch.Tensor,
            aux: torch.Tensor, bias: torch.Tensor | None) -> None:
    lib = library()
    m, n = out.shape[1], out.shape[0]  # the column-major view of the row-major (rows, cols) output
    k = b.shape[1]
    dtype = {torch.bfloat16: R_16BF, torch.float16: R_16F}[out.dtype]
    with torch.cuda.device(out.device):  # the handle, the timing events and the stream of out's GPU
        _run(lib, epilogue, a, trans_a, b, out, aux, bias, dtype, m, n, k)


def _run(lib, epilogue, a, trans_a, b, out, aux, bias, dtype, m, n, k) -> None:
    index = torch.cuda.current_device()
    key = (index, dtype, epilogue, trans_a, m, n, k)
    desc, la, lb, ld, algos = _plan(*key)
    handle, workspace = _handle(index)
    _set(lib.cublasLtMatmulDescSetAttribute, desc, DESC_AUX_POINTER, ctypes.c_void_p(aux.data_ptr()))
    if bias is not None:
        _set(lib.cublasLtMatmulDescSetAttribute, desc, DESC_BIAS_POINTER, ctypes.c_void_p(bias.data_ptr()))
    one, zero = ctypes.c_float(1.0), ctypes.c_float(0.0)
    stream = ctypes.c_void_p(torch.cuda.current_stream(out.device).cuda_stream)

    def call(algo) -> None:
        _check(lib.cublasLtMatmul(handle, desc, ctypes.byref(one), ctypes.c_void_p(a.data_ptr()), la,
                                  ctypes.c_void_p(b.data_ptr()), lb, ctypes.byref(zero),
                                  ctypes.c_void_p(out.data_ptr()), ld, ctypes.c_void_p(out.data_ptr()), ld,
                                  ctypes.byref(algo.algo), ctypes.c_void_p(workspace.data_ptr()),
                                  ctypes.c_size_t(WORKSPACE_BYTES), stream), "matmul")

    call(algos[_fastest(key, algos, call)])


def gelu_aux(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, y): u = x w^T + b (M, N), y = gelu(u), for contiguous x (M, K), w (N, K), b (N,)."""
    u = x.new_empty(x.shape[0], w.shape[0])
    y = torch.empty_like(u)
    # column-major: y^T (N, M) = w (N, K) x^T (K, M), with w stored as the column-major (K, N)
    _matmul("gelu_aux_bias" if b is not None else "gelu_aux", w, True, x, y, u, b)
    return u, y


def dgelu(dout: torch.Tensor, w2: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """g = (dout w2) * gelu'(u) (M, N), for contiguous dout (M, K), w2 (K, N), u (M, N)."""
    g = torch.empty_like(u)
    # column-major: g^T (N, M) = w2^T (N, K) dout^T (K, M), w2 stored as the column-major (N, K)
    _matmul("dgelu", w2, False, dout, g, u, None)
    return g
