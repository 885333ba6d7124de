"""Where a GPT training step spends its time: the step `lmladder train` runs (the compiled model,
its MLPs through lmladder.kernels.fusedmlp unless --gelu-fusion plain, its head and cross-entropy
(lmladder.kernels.headloss, or with --head-loss plain compiled with the model), backward,
gradient clipping, fused AdamW; not recorded as a CUDA graph, which a step this large does not
need) on random tokens, timed, then profiled, with the kernels' time summed by kind: matrix
multiplications, attention, compiled elementwise and reduction kernels (layer norms, GELU, bias
gradients; the plain loss), the fused head loss's kernel, the optimizer, and the rest.

    PYTHONPATH=. python3 benchmarks/profile_step.py [--preset gpt2-124m] [--micro 64] [--no-bias]
        [--residual-dtype autocast] [--head-loss fused|plain] [--gelu-fusion fused|plain] [--gemm]

Prints ms per step, tokens/s, MFU and the table by kind (--gemm: also the matrix rate of each
layer's shapes alone); writes profile-<name>.json with the 40 costliest kernels under $OUT (or
./bench-gpu-out). Runs on a CPU too (small presets, --no-compile), where the kinds are ATen ops.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KINDS = (  # (kind, name fragments), first match wins: cuDNN's attention kernels also say sm90
    ("attention", ("flash", "fmha", "cudnn", "attention", "sdpa")),
    ("matmul", ("gemm", "nvjet", "cutlass", "xmma", "sm90", "cublas", "aten::mm", "aten::addmm", "aten::bmm")),
    ("optimizer", ("adam", "multi_tensor", "foreach")),
    ("head loss", ("head_loss_",)),  # lmladder.kernels.headloss's Triton kernels (rows, transpose)
    ("compiled", ("triton",)),
)


def kind_of(name: str) -> str:
    low = name.lower()
    return next((kind for kind, parts in KINDS if any(p in low for p in parts)), "other")


def build(preset: str, micro: int, options: dict, run: dict, device: str):
    """The model, one training step as lmladder.train runs it, and the tokens a step sees."""
    import torch

    from lmladder import kernels, neural
    from lmladder.config import resolve
    from lmladder.train import loss_function, make_optimizer, setup_cuda, training_autocast

    config = resolve("gpt", preset, None, {"model": options,
                                                  "optim": {"micro_batch_size": micro, "batch_size": micro},
                                                  "run": run})
    torch.manual_seed(0)
    cuda = device.startswith("cuda")
    if cuda:
        setup_cuda(config.run.attention)
    model = neural.build_model(config).to(device)
    if kernels.fused_gelu(config, torch.device(device).type):
        from lmladder.kernels.fusedmlp import fused_mlp

        model.use_fused_mlp(fused_mlp)
    optimizer = make_optimizer(model, config.optim, device)
    params = list(model.parameters())
    autocast = training_autocast(device, config.run.dtype)
    forward_loss = loss_function(model, config)
    data = torch.randint(0, config.model.vocab_size, (micro, config.model.block_size + 1), device=device)

    def step() -> None:
        with autocast:
            loss = forward_loss(data[:, :-1], data[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip, foreach=True if cuda else None)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return model, step, micro * config.model.block_size


def gemm_rates(tokens: int, width: int, vocab: int, device: str) -> dict:
    """TFLOP/s of each of a block's matrix shapes (and the head's) alone, in bf16."""
    import torch

    shapes = {"c_attn": (tokens, width, 3 * width), "attn.c_proj": (tokens, width, width),
              "c_fc": (tokens, width, 4 * width), "mlp.c_proj": (tokens, 4 * width, width),
              "lm_head": (tokens, width, vocab), "lm_head weight grad": (vocab, tokens, width)}
    rates = {}
    for name, (m, k, n) in shapes.items():
        a = torch.randn(m, k, device=device, dtype=torch.bfloat16)
        b = torch.randn(k, n, device=device, dtype=torch.bfloat16)
        seconds = timed(lambda: a @ b, 20, device)
        rates[name] = round(2 * m * k * n / seconds / 1e12, 1)
    return rates


def timed(fn, n: int, device: str) -> float:
    """Seconds per call of fn, after 3 untimed calls."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(3):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return (time.perf_counter() - t0) / n


def profile(step, device: str, steps: int = 3) -> tuple[dict, list]:
    """ms per step by kind of kernel, and the costliest kernels (ms per step, calls per step, name)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = device.startswith("cuda")
    with torch_profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
        if cuda:
            import torch

            torch.cuda.synchronize()
    kinds: dict[str, float] = {}
    kernels = []
    for event in prof.key_averages():
        us = event.self_device_time_total if cuda else event.self_cpu_time_total
        if us <= 0 or (not cuda and not event.key.startswith("aten::")):
            continue
        ms = us / steps / 1e3
        kinds[kind_of(event.key)] = kinds.get(kind_of(event.key), 0.0) + ms
        kernels.append((round(ms, 3), event.count // steps, event.key[:120]))
    kernels.sort(reverse=True)
    return kinds, kernels[:40]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="gpt2-124m")
    parser.add_argument("--micro", type=int, default=64, help="sequences per step (one forward pass)")
    parser.add_argument("--vocab-size", type=int, default=50304)
    parser.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--residual-dtype", default=None)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--head-loss", default=None, help="fused or plain (default: the trainer's)")
    parser.add_argument("--gelu-fusion", default=None, help="fused or plain (default: the trainer's)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--gemm", action="store_true", help="also time each matrix shape alone (GPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--name", default=None, help="result file name (default from the options)")
    opts = parser.parse_args(argv)
    import torch

    from lmladder.neural import pick_device
    from lmladder.train import peak_flops

    device = pick_device(opts.device)
    options = {"vocab_size": opts.vocab_size}
    if opts.bias is not None:
        options["bias"] = opts.bias
    if opts.residual_dtype:
        options["residual_dtype"] = opts.residual_dtype
    run = {k: v for k, v in (("compile", opts.compile), ("head_loss", opts.head_loss),
                             ("gelu_fusion", opts.gelu_fusion)) if v is not None}
    chosen = [f"{k.replace('_', '-')}-{v}" for k, v in {**options, **run}.items() if k != "vocab_size"]
    name = opts.name or "-".join([opts.preset, f"micro{opts.micro}", *chosen])
    model, step, tokens = build(opts.preset, opts.micro, options, run, device)
    t0 = time.perf_counter()
    step()
    first_s = time.perf_counter() - t0
    seconds = timed(step, opts.steps, device)
    peak = peak_flops(device)
    result = {"name": name, "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
              "torch": torch.__version__, "preset": opts.preset, "model_options": options, "run_options": run,
              "micro_batch": opts.micro,
              "first_step_s": round(first_s, 2), "ms_per_step": round(1e3 * seconds, 2),
              "tokens_per_s": round(tokens / seconds), "flops_per_token": model.flops_per_token(),
              "mfu": round(tokens / seconds * model.flops_per_token() / peak, 4) if peak else None}
    kinds, kernels = profile(step, device)
    result["ms_by_kind"] = {k: round(v, 2) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])}
    result["top_kernels"] = kernels
    if opts.gemm and device.startswith("cuda"):
        result["gemm_tflops_alone"] = gemm_rates(tokens, model.config.n_embd, model.config.vocab_size, device)
    out = Path(os.environ.get("OUT") or "bench-gpu-out")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"profile-{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    mfu = f", MFU {100 * result['mfu']:.1f}%" if result["mfu"] else ""
    print(f"{name} on {result['device']}: {result['ms_per_step']} ms/step, {result['tokens_per_s']:,} tokens/s{mfu}")
    total = sum(kinds.values())
    for kind, ms in result["ms_by_kind"].items():
        print(f"  {kind:<10}{ms:9.2f} ms {100 * ms / total:6.1f}%")
    if "gemm_tflops_alone" in result:
        print("  matmul shapes alone (TFLOP/s): " + ", ".join(f"{k} {v}" for k, v in result["gemm_tflops_alone"].items()))
    return result


if __name__ == "__main__":
    main()
