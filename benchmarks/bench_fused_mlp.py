"""The GPT's MLP with GELU inside its matrix products (lmladder.kernels.fusedmlp) against Linear ->
GELU -> Linear, forward + backward under bf16 autocast (compiled), by width and tokens a
micro-batch: the measurements behind kernels.FUSED_GELU_MIN_TOKENS. On a GPU also the cuBLASLt
algorithms lmladder.kernels.cublaslt times at gpt2-124m's shapes, and the one it keeps.

    PYTHONPATH=. python3 benchmarks/bench_fused_mlp.py [--shapes 768x65536,512x16384] [--steps 50]

Prints a table; writes bench-fused-mlp.json (device, torch, date) under $OUT (or ./bench-gpu-out).
Runs on a CPU too (small shapes, --no-compile), where both routes are torch's arithmetic.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = "384x16384,512x16384,512x32768,768x16384,768x32768,768x65536,1024x32768,512x65536"


def mlp_ms(width: int, tokens: int, fused: bool, device: str, steps: int, compiled: bool) -> float:
    """ms of one forward + backward of a GPT MLP (4x wide inside, biases) over `tokens` rows."""
    import torch

    from lmladder.gpt import MLP, GPTConfig
    from lmladder.kernels.fusedmlp import fused_mlp
    from lmladder.train import training_autocast

    torch._dynamo.reset()
    torch.manual_seed(0)
    mlp = MLP(GPTConfig(n_embd=width, n_head=8)).to(device)
    mlp.fused_forward = fused_mlp if fused else None
    cuda = device.startswith("cuda")
    x = torch.randn(tokens, width, device=device, requires_grad=True)
    grad = torch.randn(tokens, width, device=device, dtype=torch.bfloat16 if cuda else torch.float32)

    def step(x):
        with training_autocast(device, "bfloat16"):  # bf16 on a GPU, none on a CPU
            return mlp(x)

    step = torch.compile(step) if compiled else step
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(5):
        step(x).backward(grad)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step(x).backward(grad)
    sync()
    return 1e3 * (time.perf_counter() - t0) / steps


def algorithms(device: str) -> dict:
    """cuBLASLt's timings of each heuristic algorithm at gpt2-124m's MLP shapes (64 x 1,024
    tokens, 768 wide), and the index kept."""
    import torch

    from lmladder.kernels import cublaslt

    m, k, n = 65536, 768, 3072
    x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
    w = torch.randn(n, k, device=device, dtype=torch.bfloat16) * 0.03
    b = torch.randn(n, device=device, dtype=torch.bfloat16) * 0.1
    u, _ = cublaslt.gelu_aux(x, w, b)
    cublaslt.dgelu(torch.randn(m, k, device=device, dtype=torch.bfloat16), w.t().contiguous(), u)
    return {f"{key[2]} {key[4]}x{key[5]}x{key[6]}": {"ms": [round(t, 4) for t in times], "kept": cublaslt.CHOSEN[key]}
            for key, times in cublaslt.TIMINGS.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=SHAPES, help="WIDTHxTOKENS,... to time")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--device", default="auto")
    opts = parser.parse_args(argv)
    import torch

    from lmladder.neural import pick_device

    device = pick_device(opts.device)
    cuda = device.startswith("cuda")
    result = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
              "date": dt.date.today().isoformat(), "compiled": opts.compile, "shapes": {}}
    print(f"{'width':>6}{'tokens':>8}{'plain ms':>10}{'fused ms':>10}{'fused/plain':>13}")
    for shape in opts.shapes.split(","):
        width, tokens = (int(v) for v in shape.lower().split("x"))
        plain, fused = (mlp_ms(width, tokens, f, device, opts.steps, opts.compile) for f in (False, True))
        result["shapes"][shape] = {"plain_ms": round(plain, 4), "fused_ms": round(fused, 4),
                                   "ratio": round(fused / plain, 3)}
        print(f"{width:>6}{tokens:>8}{plain:>10.3f}{fused:>10.3f}{fused / plain:>13.3f}")
    if cuda:
        result["cublaslt_algorithms"] = algorithms(device)
        for name, row in result["cublaslt_algorithms"].items():
            print(f"{name}: ms {row['ms']}, kept #{row['kept']}")
    out = Path(os.environ.get("OUT") or "bench-gpu-out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench-fused-mlp.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
