"""--optimizer muon (lmladder/train/muon.py): the orthogonalisation, the AdamW half against
torch's AdamW, which parameters each half steps, and runs through the CLI: it learns, it
resumes exactly, and the CUDA-graph step's logic (tensor learning rate, warm-up undone) gives
the plain loop's weights."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_error
from tests.test_train import TINY, assert_same_weights, weights

torch = pytest.importorskip("torch")


def test_orthogonalise_flattens_the_spectrum():
    """A well-conditioned matrix comes out with every singular value near 1 (Newton-Schulz's
    quintic aims at [0.7, 1.2] rather than exactly 1), wide, tall and batched alike."""
    from lmladder.train.muon import orthogonalise

    gen = torch.Generator().manual_seed(0)
    for shape in [(32, 96), (96, 32), (3, 32, 32)]:
        *batch, m, n = shape
        r = min(m, n)
        u = torch.linalg.qr(torch.randn(*batch, m, r, generator=gen))[0]
        v = torch.linalg.qr(torch.randn(*batch, n, r, generator=gen))[0]
        g = u @ torch.diag(torch.linspace(1, 30, r)) @ v.mT  # singular values 1 to 30
        out = orthogonalise(g)
        assert out.shape == g.shape and out.dtype == torch.bfloat16
        s = torch.linalg.svdvals(out.float())
        assert s.min() > 0.5 and s.max() < 1.3, (shape, s.min(), s.max())


def test_adamw_half_is_torchs_adamw():
    """With no block matrix, MuonAdamW is AdamW: the same weights as torch.optim.AdamW after
    steps with weight decay on matrices only."""
    from lmladder.train.muon import MuonAdamW

    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Embedding(10, 8), torch.nn.LayerNorm(8))
    b = torch.nn.Sequential(torch.nn.Embedding(10, 8), torch.nn.LayerNorm(8))
    b.load_state_dict(a.state_dict())
    mine = MuonAdamW(a.named_parameters(), 1e-2, 0.02, 0.1, betas=(0.9, 0.95))
    theirs = torch.optim.AdamW([{"params": [b[0].weight], "weight_decay": 0.1},
                                {"params": [b[1].weight, b[1].bias], "weight_decay": 0.0}], lr=1e-2, betas=(0.9, 0.95))
    assert [g["kind"] for g in mine.param_groups] == ["adamw", "adamw"]
    x = torch.randint(0, 10, (4, 5))
    for _ in range(5):
        for model, opt in ((a, mine), (b, theirs)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_muon_steps_the_block_matrices_only():
    from lmladder import config as conf
    from lmladder.gpt import GPT
    from lmladder.train.muon import MuonAdamW

    cfg = conf.resolve("gpt", "gpt-tiny", None, {"model": {"vocab_size": 64}})
    model = GPT(cfg.model)
    opt = MuonAdamW(model.named_parameters(), 3e-3, 0.02, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)] for g in opt.param_groups if g["kind"] == "muon" for p in g["params"]}
    assert muon and all(".h." in n and n.endswith(".weight") and "ln" not in n for n in muon)
    assert "transformer.wte.weight" not in muon and "transformer.wpe.weight" not in muon
    assert len(opt.blocks) == cfg.model.n_layer  # each c_attn: q, k and v orthogonalised apart
    assert opt.param_groups[0]["lr_scale"] == pytest.approx(0.02 / 3e-3)


def test_a_muon_step_is_each_matrix_orthogonalised_on_its_own():
    """The batched step (every matrix of a shape in one Newton-Schulz run) against the formula
    written out a parameter at a time: momentum, Nesterov, q/k/v apart, the tall ones turned,
    decay, Jordan's scale; two steps, so the momentum counts too."""
    from lmladder import config as conf
    from lmladder.gpt import GPT
    from lmladder.train.muon import MOMENTUM, MuonAdamW, orthogonalise

    cfg = conf.resolve("gpt", "gpt-tiny", None, {"model": {"vocab_size": 64, "n_embd": 32, "n_head": 2}})
    torch.manual_seed(0)
    model = GPT(cfg.model)
    lr, muon_lr, wd = 3e-3, 0.02, 0.1
    opt = MuonAdamW(model.named_parameters(), lr, muon_lr, wd)
    matrices = [p for g in opt.param_groups if g["kind"] == "muon" for p in g["params"]]
    assert {tuple(p.shape) for p in matrices} == {(96, 32), (32, 32), (128, 32), (32, 128)}
    want = {p: p.detach().clone() for p in matrices}
    bufs = {p: torch.zeros_like(p) for p in matrices}
    for step in range(2):
        gen = torch.Generator().manual_seed(step)
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=gen)
        for p in matrices:
            bufs[p] = bufs[p].lerp(p.grad, 1 - MOMENTUM)
            k = 3 if p.shape[0] == 3 * p.shape[1] else 1
            rows, cols = p.shape[0] // k, p.shape[1]
            update = orthogonalise(p.grad.lerp(bufs[p], MOMENTUM).view(k, rows, cols)).view_as(p)
            want[p] = want[p] * (1 - lr * wd) - update.float() * (muon_lr * max(1.0, rows / cols) ** 0.5)
        opt.step()
    for p in matrices:
        assert torch.allclose(p.detach(), want[p], atol=2e-5, rtol=0), (p.shape, (p - want[p]).abs().max())


def test_muon_run_learns_and_resumes_exactly(cli, tmp_path):
    common = (*TINY, "--optimizer", "muon", "--muon-lr", "0.02", "--dropout", "0.1", "--min-lr", "0.003",
              "--eval-interval", "3")
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    result = cli("train", "tinyshakespeare", *common, "--max-steps", "8", "--out", straight, "--json")
    assert result.exit_code == 0, result
    rows = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    vals = [r["val_loss"] for r in rows if "val_loss" in r]
    assert vals[-1] < vals[0] - 0.3  # it learns: 8 steps from ~4.2 nats
    assert json.loads((straight / "lmladder.json").read_text())["config"]["optim"]["optimizer"] == "muon"
    assert cli("train", "tinyshakespeare", *common, "--max-steps", "4", "--out", halves).exit_code == 0
    result = cli("train", "tinyshakespeare", "--resume", halves, "--max-steps", "8")
    assert result.exit_code == 0, result
    assert_same_weights(weights(straight), weights(halves), atol=1e-6)


def test_muon_graphed_step_matches_the_plain_loop(cli, tmp_path, monkeypatch):
    """The CUDA-graph path's logic on the CPU (a tensor learning rate, the warm-up's momentum
    buffers and AdamW moments undone): the weights of the plain loop."""
    from lmladder.train import step as train_step

    common = (*TINY, "--optimizer", "muon", "--dropout", "0.0", "--eval-interval", "0", "--max-steps", "6")
    assert cli("train", "tinyshakespeare", *common, "--out", tmp_path / "plain").exit_code == 0
    monkeypatch.setattr(train_step, "graph_capable", lambda device: True)
    assert cli("train", "tinyshakespeare", *common, "--out", tmp_path / "graph").exit_code == 0
    assert_same_weights(weights(tmp_path / "plain"), weights(tmp_path / "graph"), atol=1e-6)


def test_muon_bad_input(cli, tmp_path):
    assert_error(cli("train", "tinyshakespeare", "--preset", "mlp", "--optimizer", "muon", "--out", tmp_path / "m"),
                 "optimizer muon is for a GPT")
    assert_error(cli("train", "tinyshakespeare", *TINY, "--optimizer", "lion", "--out", tmp_path / "l"),
                 "optimizer must be one of adamw, muon")
    assert_error(cli("train", "tinyshakespeare", *TINY, "--muon-lr", "-1", "--out", tmp_path / "n"),
                 "muon_lr must be >= 0")
