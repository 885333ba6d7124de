"""The trainer computes what it computed before: three tiny CPU runs on the `markov` corpus must
give, bit for bit, the weights that the tree before the redesign wrote (tests/data/golden/,
whose README gives the commands), and the same test bits/char and best val.

A refactor of lmladder.train, the models or the kernels that changes a single rounding shows up
here as a tensor that is not equal, not as a score that is slightly off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
GPT = ("--model", "gpt", "--preset", "gpt-tiny", "--n-layer", "2", "--n-head", "2", "--n-embd", "32",
       "--block-size", "32", "--batch-size", "8", "--max-steps", "30", "--eval-interval", "15", "--seed", "7",
       "--device", "cpu")
MLP = ("--model", "mlp", "--block-size", "4", "--n-embd", "8", "--n-hidden", "32", "--batch-size", "8",
       "--max-steps", "30", "--eval-interval", "15", "--seed", "7", "--device", "cpu")

# run -> (options, the file the run writes, the golden file it must equal)
RUNS = {
    "gpt": (GPT, "latest/model.safetensors", "gpt.safetensors"),
    "mlp": (MLP, "latest/model.safetensors", "mlp.safetensors"),
    "gpt-ema": ((*GPT, "--ema", "0.9", "--position", "rotary"), "latest/ema.safetensors",
                "gpt-ema-rotary.ema.safetensors"),
}


@pytest.mark.parametrize("run", list(RUNS))
def test_training_reproduces_the_golden_weights(cli, tmp_path, run):
    from safetensors.torch import load_file

    options, written, golden = RUNS[run]
    out = tmp_path / run
    result = cli("train", "markov", *options, "--out", out)
    assert result.exit_code == 0, result
    got, want = load_file(str(out / written)), load_file(str(GOLDEN / golden))
    assert sorted(got) == sorted(want)
    different = [name for name in want if not (got[name].dtype == want[name].dtype and torch.equal(got[name], want[name]))]
    assert not different, f"tensors not bit-identical to {golden}: {different}"
    scores = json.loads((GOLDEN / "scores.json").read_text())[run]
    header = json.loads((out / "lmladder.json").read_text())
    assert header["test"]["bits_per_char"] == scores["test_bits_per_char"]
    assert header["best_val"] == scores["best_val"]
