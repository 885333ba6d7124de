"""Issue 23: the FP8 head (lmladder.kernels.headloss.HeadCrossEntropyFP8) on the GPU: correctness
against the torch path and the bf16 head, then times at gpt2-124m's size (131,072 x 768 x 50,304)."""
import json, os
import torch
from lmladder.kernels import headloss as hl
from lmladder.kernels.fp8 import E4M3, quantize, scaled_mm

out = {}
dev = "cuda"
def timeit(fn, n=10):
    fn(); torch.cuda.synchronize()
    ts = []
    for _ in range(n):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize(); ts.append(a.elapsed_time(b))
    ts.sort(); return ts[len(ts) // 2]

# A: the kernel against the torch path
g = torch.Generator(device=dev).manual_seed(0)
big = torch.randint(0, 50304, (131072,), device=dev, generator=g)
_, gbig, gtbig = hl.rows_triton_fp8(torch.randn(131072, 50304, device=dev, dtype=torch.bfloat16), big)
out["big transpose ok"] = torch.equal(gtbig.view(torch.uint8), gbig.view(torch.uint8).t())
print("A big transpose ok", out["big transpose ok"], flush=True)
del gbig, gtbig
for n, v, tile in [(4096, 50304, 64), (1000, 65, 32), (4096, 50304, 32), (333, 50304, 128)]:
    logits = (4 * torch.randn(n, v, device=dev, generator=g)).to(torch.bfloat16)
    y = torch.randint(0, v, (n,), device=dev, generator=g)
    r1, g1, gt1 = hl.rows_triton_fp8(logits, y, tile=tile)
    r2, g2, gt2 = hl.rows_torch_fp8(logits, y)
    diff = (g1.float() != g2.float())
    res = {"rows_maxdiff": (r1 - r2).abs().max().item(), "g_differ_frac": diff.float().mean().item(),
           "g_maxdiff": (g1.float() - g2.float()).abs().max().item(), "gt_is_transpose": torch.equal(gt1.view(torch.uint8), g1.view(torch.uint8).t())}
    out[f"kernel {n}x{v} {tile}"] = res; print("A", n, v, tile, res, flush=True)

# grads against the bf16 fused head
N, C, V = 16384, 768, 50304
h = torch.randn(N, C, device=dev, generator=g).to(torch.bfloat16)
w = torch.randn(V, C, device=dev, generator=g) * 0.05
y = torch.randint(0, V, (N,), device=dev, generator=g)
def grads(fp8):
    hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
    loss = hl.head_cross_entropy(hh, ww, y, True, fp8); loss.backward(); return loss.item(), hh.grad.float(), ww.grad
a, b = grads(False), grads(True)
res = {"loss_bf16": a[0], "loss_fp8": b[0], "dh_rel": ((a[1] - b[1]).norm() / a[1].norm()).item(),
       "dw_rel": ((a[2] - b[2]).norm() / a[2].norm()).item()}
out["grads"] = res; print("A grads", res, flush=True)

# B: times at gpt2-124m's micro-batch of 128 x 1,024
N = 131072
h = torch.randn(N, C, device=dev, generator=g).to(torch.bfloat16).requires_grad_()
w = (torch.randn(V, C, device=dev, generator=g) * 0.05).requires_grad_()
y = torch.randint(0, V, (N,), device=dev, generator=g)
def step(fp8, tile=None):
    def f():
        if tile: hl.rows_triton_fp8.__defaults__ = (hl.BLOCK, tile)
        hl.head_cross_entropy(h, w, y, True, fp8).backward()
    return f
times = {"bf16 fused head fwd+bwd": timeit(step(False))}
for tile in [64, 32, 128]:
    try:
        times[f"fp8 head fwd+bwd {tile}"] = timeit(step(True, tile))
    except Exception as e:
        times[f"fp8 head fwd+bwd {tile}"] = repr(e)[:200]
    print("B", tile, times[f"fp8 head fwd+bwd {tile}"], flush=True)
hl.rows_triton_fp8.__defaults__ = (hl.BLOCK, 64)
with torch.no_grad():
    hb, wb = h.detach(), w.detach().to(torch.bfloat16)
    logits = hb @ wb.t()
    times["bf16 logits gemm"] = timeit(lambda: hb @ wb.t())
    times["bf16 rows kernel"] = timeit(lambda: hl.rows_triton(logits.clone(), y, 1.0 / N)) - timeit(lambda: logits.clone())
    hq, sh = quantize(hb, E4M3); wq, sw = quantize(w.detach(), E4M3)
    times["fp8 logits gemm"] = timeit(lambda: scaled_mm(hq, sh, wq.t(), sw, torch.bfloat16))
    for tile in [64, 32, 128]:
        times[f"fp8 rows+transpose {tile}"] = timeit(lambda: hl.rows_triton_fp8(logits, y, tile=tile))
    gq0 = torch.empty(N, V, device=dev, dtype=torch.float8_e5m2)
    kernel, transpose = hl._triton_kernels()
    times["fp8 rows kernel alone"] = timeit(lambda: kernel[(N,)](logits, logits.stride(0), y, torch.empty(N, device=dev), gq0, V, V, hl.GRAD_SCALE, BLOCK=8192, num_warps=8))
    gt0 = torch.empty(V, N, device=dev, dtype=torch.uint8)
    for tile in [64, 32, 128]:
        times[f"transpose alone {tile}"] = timeit(lambda: transpose[((N + tile - 1) // tile, (V + tile - 1) // tile)](gq0.view(torch.uint8), gt0, N, V, BR=tile, BC=tile, num_warps=4))
    _, gq, gtq = hl.rows_triton_fp8(logits, y)
    sg = torch.tensor(1e-9, device=dev)
    from lmladder.kernels.fp8 import column_major
    times["fp8 dh gemm"] = timeit(lambda: scaled_mm(gq, sg, column_major(wq), sw, torch.bfloat16))
    times["fp8 dw gemm"] = timeit(lambda: scaled_mm(gtq, sg, column_major(hq), sh, torch.float32))
    gb = logits
    times["bf16 dh gemm"] = timeit(lambda: gb @ wb)
    times["bf16 dw gemm"] = timeit(lambda: gb.t() @ hb)
    times["quantize h (eager)"] = timeit(lambda: quantize(hb, E4M3))
    times["quantize w"] = timeit(lambda: quantize(w.detach(), E4M3))
for k, v in times.items():
    print(f"  {k:40s} {v if isinstance(v, str) else f'{v:8.2f} ms'}")
out["times_ms"] = times
out["device"] = torch.cuda.get_device_name(0); out["torch"] = torch.__version__
json.dump(out, open(os.path.join(os.environ.get("OUT", "."), "fp8head.json"), "w"), indent=1)
ok = out["big transpose ok"] and all(v["gt_is_transpose"] for k, v in out.items() if k.startswith("kernel")) \
    and out["grads"]["dw_rel"] < 0.1 and out["grads"]["dh_rel"] < 0.1
print("ALL OK" if ok else "CHECKS FAILED", flush=True)
raise SystemExit(0 if ok else 3)
