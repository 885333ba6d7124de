"""--input-noise: training inputs replaced by random units, the targets kept (lmladder.train.step)."""

from __future__ import annotations

import json

import pytest
import torch

from lmladder.config import resolve
from lmladder.errors import LadderError
from lmladder.neural import build_model
from lmladder.train import Dist, TrainStep, make_optimizer
from tests.conftest import assert_error


def inputs_seen(noise: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(batch, x, y) the loss of one TrainStep on a batch of ids 20-39 saw, with noise ids < 20."""
    config = resolve("gpt", "gpt-tiny", None, {"data": {"input_noise": noise}, "optim": {"batch_size": 16},
                                               "model": {"vocab_size": 64},
                                               "run": {"max_steps": 1}})
    torch.manual_seed(seed)
    model = build_model(config)
    optimizer = make_optimizer(model, config.optim, "cpu", False)
    step = TrainStep(model, optimizer, optimizer.step, None, config, "cpu", Dist(), False, noise_vocab=20)
    seen = []
    real = step.forward_loss

    def spy(x, y):
        seen.append((x.clone(), y.clone()))
        return real(x, y)

    step.forward_loss = spy
    batch = torch.randint(20, 40, (16, config.seq_len + 1), generator=torch.Generator().manual_seed(1))
    step(batch, 1e-3, 0)
    (x, y), = seen
    return batch, x, y


def test_inputs_are_replaced_at_the_rate_asked_and_the_targets_kept():
    batch, x, y = inputs_seen(0.25)
    assert torch.equal(y, batch[:, 1:])  # every target is the text's
    replaced = x != batch[:, :-1]
    assert torch.all(x[replaced] < 20) and torch.all(x[~replaced] >= 20)  # from the noise vocabulary only
    n = replaced.numel()  # 16 x 64 inputs: 0.25 +- 4 standard deviations
    assert abs(replaced.float().mean().item() - 0.25) < 4 * (0.25 * 0.75 / n) ** 0.5
    assert len(torch.unique(x[replaced])) > 15  # drawn over the whole noise vocabulary
    clean_batch, clean, _ = inputs_seen(0.0)
    assert torch.equal(clean, clean_batch[:, :-1])


def test_bad_input_noise_is_refused():
    for value in (1.0, -0.1):
        with pytest.raises(LadderError, match=r"input_noise must be in \[0, 1\)"):
            resolve("gpt", "gpt-tiny", None, {"data": {"input_noise": value}, "run": {"max_steps": 1}})


def test_cli_trains_with_input_noise(cli, tmp_path, fresh_home):
    base = ("train", "tinyshakespeare", "--preset", "gpt-tiny", "--max-steps", "3", "--eval-interval", "0")
    result = cli(*base, "--input-noise", "0.1", "--out", tmp_path / "run")
    assert result.exit_code == 0, result
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["input_noise"] == 0.1
    assert_error(cli(*base, "--input-noise", "1.5", "--out", tmp_path / "bad"), "input_noise must be in [0, 1)")
    assert not (tmp_path / "bad").exists()
