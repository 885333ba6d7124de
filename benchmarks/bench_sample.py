"""Sampling speed of the GPT rung: KV-cache decoding against re-running the whole context each
step (nanoGPT's sample.py), for the `gpt-char` shape (6 layers, 6 heads, 384 wide, context 256).

    PYTHONPATH=. python3 benchmarks/bench_sample.py [--device cuda|cpu] [--out DIR]

Tokens per second for batch 1 and batch 16, 1,000 new tokens each, bf16 on a GPU (there also
the cached step launched from Python, without the CUDA graph, to show what the graph buys). Speed does
not depend on the weights, so the model is freshly initialised. Prints a table; writes JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmladder.decode import generate  # noqa: E402
from lmladder.gpt import GPT, GPTConfig  # noqa: E402
from lmladder.sampling import SampleSettings, sample_rngs  # noqa: E402

NANOGPT = {"cuda": {1: 74.0, 16: 1273.0}, "cpu": {1: 17.0}}  # tokens/s quoted in issue 6


def measure(model, batch: int, new: int, use_cache: bool, dtype, static: bool | None = None) -> float:
    settings = SampleSettings(temperature=0.8)
    generate(model, [0], 8, settings, sample_rngs(0, batch), vocab_size=65, dtype=dtype, use_cache=use_cache,
             static=static)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = generate(model, [0], new, settings, sample_rngs(1, batch), vocab_size=65, dtype=dtype,
                   use_cache=use_cache, static=static)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert all(len(o) == new for o in out)
    return batch * new / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--new", type=int, default=1000)
    ap.add_argument("--baseline-batches", default=None,
                    help="batches that also run the no-cache baseline (default: all on a GPU, 1 on a CPU, where "
                         "batch 16 without a cache would take half an hour)")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=256, vocab_size=128, n_layer=6, n_head=6, n_embd=384)).to(args.device).eval()
    dtype = torch.bfloat16 if args.device.startswith("cuda") else None
    batches = (1, 16)
    rows = []
    kind = "cuda" if args.device.startswith("cuda") else "cpu"
    with_baseline = ({int(b) for b in args.baseline_batches.split(",")} if args.baseline_batches
                     else set(batches) if kind == "cuda" else {1})
    for batch in batches:
        cached = measure(model, batch, args.new, True, dtype)  # on a GPU: replayed as a CUDA graph
        eager = measure(model, batch, args.new, True, dtype, static=False) if kind == "cuda" else None
        base = measure(model, batch, args.new, False, dtype) if batch in with_baseline else None
        ref = NANOGPT[kind].get(batch)
        rows.append({"batch": batch, "kv_cache_tokens_per_s": cached, "no_cache_tokens_per_s": base,
                     "kv_cache_eager_tokens_per_s": eager,
                     "speedup_vs_no_cache": cached / base if base else None, "nanogpt_tokens_per_s": ref,
                     "ratio_vs_nanogpt": cached / ref if ref else None})
    device_name = torch.cuda.get_device_name() if kind == "cuda" else (platform.processor() or platform.machine())
    result = {"benchmark": "gpt-char sampling, 1,000 new tokens", "device": device_name,
              "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
              "date": dt.date.today().isoformat(), "dtype": str(dtype) if dtype else "float32",
              "new_tokens": args.new, "rows": rows}
    for r in rows:
        if r["kv_cache_eager_tokens_per_s"]:
            print(f"batch {r['batch']}: kv-cache without the CUDA graph {r['kv_cache_eager_tokens_per_s']:,.0f} tok/s")
    print(f"{'batch':>5} {'kv-cache tok/s':>15} {'no-cache tok/s':>15} {'speedup':>8} {'nanoGPT':>8} {'x nanoGPT':>9}")
    for r in rows:
        ref = r["nanogpt_tokens_per_s"]
        base, speedup, ratio = r["no_cache_tokens_per_s"], r["speedup_vs_no_cache"], r["ratio_vs_nanogpt"]
        print(f"{r['batch']:>5} {r['kv_cache_tokens_per_s']:>15,.0f} {f'{base:,.0f}' if base else '-':>15} "
              f"{f'{speedup:.1f}' if speedup else '-':>8} {ref or '-':>8} {f'{ratio:.1f}' if ratio else '-':>9}")
    path = Path(args.out) / f"sample-{kind}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
