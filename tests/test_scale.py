"""`lmladder scale`: the counting against the model itself, the fits against known laws, the
plan's determinism, a tiny sweep end to end through the CLI, and every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import assert_error

pytest.importorskip("scipy")

SPLIT = ("--split", "0.96,0.02,0.02")
# the tiny profile: six runs (two depths x three budgets) that train in seconds on a CPU
TINY = ("--profile", "tiny", *SPLIT, "--threads", "1", "--bootstrap", "20")
TARGET = ("--target-preset", "gpt-tiny", "--target-tokens", "2e5")  # 2 layers x 32: 3.7e10 FLOPs


def test_counts_match_the_model():
    torch = pytest.importorskip("torch")
    from lmladder.config import GPTConfig
    from lmladder.gpt import GPT
    from lmladder.scale.plan import flops_per_token, non_embedding_params, total_params

    for n_layer, n_head, n_embd, vocab, block in ((1, 2, 32, 128, 64), (3, 6, 96, 192, 16)):
        model = GPT(GPTConfig(block_size=block, vocab_size=vocab, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                              bias=False))
        total = sum(p.numel() for p in model.parameters())
        assert total_params(n_layer, n_embd, vocab, block) == total
        blocks = total - model.transformer.wte.weight.numel() - model.transformer.wpe.weight.numel()
        assert non_embedding_params(n_layer, n_embd) == blocks
        assert flops_per_token(n_layer, n_embd, vocab, block) == model.flops_per_token()
    del torch


def test_plan_is_deterministic_and_follows_the_recipe():
    from lmladder.scale.plan import PROFILES, check_plan, plan_sweep

    p = PROFILES["cpu"]
    a = plan_sweep(p.depths, p.budgets, p.family, 128, 900_000, p.recipe)
    b = plan_sweep(tuple(reversed(p.depths)), tuple(reversed(p.budgets)), p.family, 128, 900_000, p.recipe)
    assert [r.to_dict() for r in a.runs] == [r.to_dict() for r in b.runs]
    check_plan(a)
    for r in a.runs:
        assert r.tokens == r.steps * r.batch_size * r.block_size
        assert r.flops == pytest.approx(r.tokens * r.flops_per_token)
        assert r.flops == pytest.approx(r.budget, rel=0.02)  # whole steps: within a step of the budget
        assert r.lr == pytest.approx(0.32 / r.n_embd)
        assert r.min_lr == pytest.approx(0.1 * r.lr)
        assert r.batch_size == max(p.recipe.min_batch, round(0.04 * r.flops ** 0.3271 / r.block_size))
    # runs of too few steps, or of more than 4 passes over the train split, are left out and said why
    small = plan_sweep(p.depths, (1e9, *p.budgets), p.family, 128, 900_000, p.recipe)
    assert any(f"steps, fewer than {p.recipe.min_steps}" in why for _, why in small.dropped)
    few = plan_sweep(p.depths, p.budgets, p.family, 128, 100_000, p.recipe)
    assert any("passes over the train split" in why for _, why in few.dropped)


def test_fit_recovers_a_known_law_from_noisy_points():
    from lmladder.scale import fit

    rng = np.random.default_rng(0)
    true = fit.DataLaw(E=1.2, A=40.0, alpha=0.35, B=300.0, beta=0.3)
    n, d = np.meshgrid(np.geomspace(1e4, 1e7, 6), np.geomspace(1e6, 1e9, 6))
    n, d = n.ravel(), d.ravel()
    loss = true(n, d) * np.exp(rng.normal(0, 0.001, n.size))
    law = fit.fit_data(n, d, loss)
    assert law.E == pytest.approx(1.2, rel=0.03)
    assert law.alpha == pytest.approx(0.35, rel=0.1) and law.beta == pytest.approx(0.3, rel=0.1)
    assert float(law(3e7, 3e9)) == pytest.approx(float(true(3e7, 3e9)), rel=0.005)  # beyond the points

    compute = fit.ComputeLaw(E=1.5, A=200.0, alpha=0.2)
    c = np.geomspace(1e10, 1e14, 10)
    law = fit.fit_compute(c, compute(c) * np.exp(rng.normal(0, 0.001, c.size)))
    assert law.E == pytest.approx(1.5, rel=0.03) and law.alpha == pytest.approx(0.2, rel=0.1)
    assert float(law(1e16)) == pytest.approx(float(compute(1e16)), rel=0.005)


def test_frontier_and_flat_losses():
    from lmladder.errors import LadderError
    from lmladder.scale import fit

    flops = np.array([1.0, 2.0, 2.0, 4.0, 8.0])
    loss = np.array([3.0, 3.2, 2.5, 2.6, 2.0])
    assert fit.frontier(flops, loss).tolist() == [0, 2, 4]
    with pytest.raises(LadderError, match="cannot be fitted"):
        fit.check_falls(flops, np.full(5, 4.0))


def test_isoflop_minima_at_the_grid_edge_are_found():
    """At a budget of 3+ runs, a best run that is the smallest (or largest) model is an edge; a
    budget with an interior minimum, or of fewer than 3 runs, is not."""
    from lmladder.scale import fit

    levels = np.array([1e12] * 3 + [1e13] * 3 + [1e14] * 3 + [1e15] * 2)
    params = np.array([1e5, 1e6, 1e7] * 3 + [1e6, 1e7])
    loss = np.array([2.0, 2.5, 3.0,   2.1, 1.9, 2.2,   1.9, 1.8, 1.7,   1.5, 1.9])
    assert fit.isoflop_edges(levels, params, loss) == {"smallest": [1e12], "largest": [1e14]}
    from lmladder.scale import report

    notes = report.edge_notes({"smallest": [1e12], "largest": [1e14, 1e15]})
    assert len(notes) == 2 and "at 1e+12 FLOPs the best run is the grid's smallest model" in notes[0]
    assert "at 1e+14, 1e+15 FLOPs" in notes[1] and "add larger depths" in notes[1]
    assert report.edge_notes({"smallest": [], "largest": []}) == []


def test_bootstrap_intervals_cover_the_truth():
    from lmladder.scale import fit

    rng = np.random.default_rng(1)
    x = np.geomspace(1e10, 1e13, 12)
    truth = fit.ComputeLaw(1.5, 200.0, 0.2)
    y = truth(x) * np.exp(rng.normal(0, 0.003, x.size))
    main = fit.fit_compute(x, y)

    def refit(idx):
        law = fit.fit_compute(x[idx], y[idx], [main.theta()])
        return {} if law is None else {"at": float(law(1e14))}

    intervals, counts = fit.bootstrap(len(x), refit, 40, seed=0)
    assert counts["at"] >= 20
    low, high = intervals["at"]
    assert low <= float(truth(1e14)) <= high and high - low < 0.1


def test_tiny_sweep_end_to_end(cli, tmp_path):
    out = tmp_path / "scale"
    # --plan first: the runs as they will train, none cached, and nothing written
    planned = cli("scale", "tinyshakespeare", *TINY, *TARGET, "--verify", "--out", out, "--plan", "--json")
    assert planned.exit_code == 0, planned
    shown = json.loads(planned.stdout)
    assert not out.exists() and len(shown["runs"]) == 6 and not any(r["cached"] for r in shown["runs"])
    assert shown["compute_ratio"] == pytest.approx(shown["target"]["flops"] / shown["fit_flops"])
    result = cli("scale", "tinyshakespeare", *TINY, *TARGET, "--verify", "--out", out, "--json")
    assert result.exit_code == 0, result
    report = json.loads(result.stdout)
    keep = ("name", "n_layer", "n_embd", "batch_size", "steps", "tokens", "flops")
    assert [{k: r[k] for k in keep} for r in shown["runs"] + [shown["target"]]] == \
        [{k: r[k] for k in keep} for r in report["runs"]]  # the plan shown is the one trained
    again = json.loads(cli("scale", "tinyshakespeare", *TINY, *TARGET, "--plan", "--json").stdout)
    assert all(r["cached"] for r in again["runs"]) and again["target"]["cached"]
    fits, p, v = report["fits"], report["prediction"], report["verification"]
    assert fits["runs"] == 6 and len(fits["compute"]["frontier"]) >= 3
    assert fits["compute"]["alpha"] > 0 and fits["data"]["beta"] > 0
    low, high = p["interval"]
    assert low <= p["bits_per_char"] <= high
    t = p["target"]
    assert (t["n_layer"], t["n_embd"], t["block_size"]) == (2, 32, 16)  # the preset's shape, the sweep's context
    assert v["bits_per_char"] > 0 and v["relative_error"] == pytest.approx(
        (p["bits_per_char"] - v["bits_per_char"]) / v["bits_per_char"])
    fit_flops = sum(r["flops"] for r in report["runs"] if r["role"] == "fit")
    assert report["compute_ratio"] == pytest.approx(t["flops"] / fit_flops)
    for name in ("lmladder.json", "results.json", "runs.parquet", "scale.md", "compute.png", "isoflop.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "lmladder.json").read_text())["format"] == "lmladder-scale"
    import pyarrow.parquet as pq

    runs = pq.read_table(out / "runs.parquet").to_pylist()
    assert [r["role"] for r in runs] == ["fit"] * 6 + ["target"]
    assert all(r["test_bits_per_char"] > 0 and r["non_embedding_parameters"] < r["parameters"] for r in runs)
    assert "Verification" in (out / "scale.md").read_text()

    # again, with a compute budget as the target: every run from the cache, the same fits, and
    # the compute-optimal size; the folder is replaced only with --force
    assert_error(cli("scale", "tinyshakespeare", *TINY, "--out", out), "--force")
    again = cli("scale", "tinyshakespeare", *TINY, "--target-flops", "4e10", "--out", out, "--force", "--json")
    assert again.exit_code == 0, again
    second = json.loads(again.stdout)
    assert all(r["cached"] for r in second["runs"])
    assert second["fits"]["data"] == fits["data"] and second["verification"] is None
    optimal = second["prediction"]["optimal"]
    assert optimal["tokens"] == second["prediction"]["target"]["tokens"]
    assert second["prediction"]["target"]["flops"] == pytest.approx(4e10, rel=0.05)


def test_bad_input_is_one_error_line(cli, tmp_path):
    assert_error(cli("scale", "tinyshakespeare", *TINY, "--sizes", "2", "--budgets", "1e10"), "at least 6 runs")
    assert_error(cli("scale", "tinyshakespeare", *TINY, "--target-flops", "1e10"), "inside the sweep")
    assert_error(cli("scale", "tinyshakespeare", *TINY, "--target-flops", "1e10", "--plan"), "inside the sweep")
    assert_error(cli("scale", "tinyshakespeare", *TINY, "--target-preset", "gpt-tiny", "--target-tokens", "1e4"),
                 "inside the sweep")
    assert_error(cli("scale", "tinyshakespeare", *TINY, "--target-preset", "mlp", "--target-tokens", "1e6"),
                 "predicts GPTs")
    mlp = tmp_path / "mlp.toml"
    mlp.write_text("[model]\nn_hidden = 64\n")
    assert_error(cli("scale", "tinyshakespeare", *TINY, "--target-config", mlp, "--target-tokens", "1e6"),
                 "predicts GPTs")
    assert_error(cli("scale", "tinyshakespeare", *TINY, "--target-preset", "gpt-tiny"), "--target-tokens")
    assert_error(cli("scale", "tinyshakespeare", *TINY, "--verify"), "--verify trains the target")
    # refused up front (every run of the sweep failed, and nothing said why)
    assert_error(cli("scale", "tinyshakespeare", "--profile", "tiny", "--threads", "100000", "--plan"), "--threads must be in")
    assert_error(cli("scale", "tinyshakespeare", *TINY, "--lr-mult", "1e30", "--plan"), "--lr-mult must be in (0, 100.0]")
    assert_error(cli("scale", "tinyshakespeare", *TINY, "--sizes", "two"), "--sizes")
    assert_error(cli("scale", "tinyshakespeare", *TINY, "--profile", "huge"), "--profile")
    assert_error(cli("scale", "tinyshakespeare", *TINY, "--jobs", "0"), "--jobs must be at least 1")
    assert_error(cli("scale", "tinyshakespeare", *TINY, "--min-batch", "0", "--steps-floor", "-1", "--warmup", "1"),
                 "--steps-floor must be at least 0", "--min-batch must be at least 1 sequence", "--warmup must be")
    # a sweep whose runs learn nothing (a learning rate a millionth of the rule's) cannot be fitted
    assert_error(cli("scale", "tinyshakespeare", *TINY, "--lr-mult", "1e-6"), "cannot be fitted")


def test_help(cli):
    result = cli("scale", "--help")
    assert result.exit_code == 0 and "--target-flops" in result.stdout and "--verify" in result.stdout


def test_recipe_options_reach_every_run():
    """--steps-floor, --min-batch and --warmup change the profile's recipe, for the sweep and the target alike."""
    from lmladder.scale.plan import PROFILES, run_spec
    from lmladder.scale.study import Study

    study = Study("tinyshakespeare", "gpu", steps_floor=3000, min_batch=4, warmup_fraction=0.05, lr_mult=2.0)
    recipe = study.recipe
    assert (recipe.steps_floor, recipe.min_batch, recipe.warmup_fraction, recipe.lr_mult) == (3000, 4, 0.05, 2.0)
    assert Study("tinyshakespeare", "gpu").recipe == PROFILES["gpu"].recipe
    family = PROFILES["gpu"].family
    run = run_spec("target", "target", None, family.shape(4), 80e6, family, 128, recipe)
    assert run.steps >= 3000 and run.batch_size == int(80e6 / (3000 * family.block_size))
    assert run.warmup_steps == round(0.05 * run.steps) and run.lr == 2.0 * 0.32 / family.shape(4)[2]


def test_jobs_train_the_sweep_in_workers_with_the_same_numbers(cli, tmp_path, monkeypatch):
    """--jobs 2: the runs trained in two spawned processes give the numbers one process gives
    (the CPU, one thread each), in the plan's order; a second study finds them all cached."""
    monkeypatch.setenv("LMLADDER_HOME", str(tmp_path / "home1"))
    one = cli("scale", "tinyshakespeare", *TINY, "--out", tmp_path / "one", "--json")
    assert one.exit_code == 0, one
    monkeypatch.setenv("LMLADDER_HOME", str(tmp_path / "home2"))
    two = cli("scale", "tinyshakespeare", *TINY, "--jobs", "2", "--out", tmp_path / "two", "--json")
    assert two.exit_code == 0, two
    a, b = (json.loads(r.stdout)["runs"] for r in (one, two))
    assert [r["name"] for r in a] == [r["name"] for r in b]
    assert [r["test_bits_per_char"] for r in a] == [r["test_bits_per_char"] for r in b]
    again = cli("scale", "tinyshakespeare", *TINY, "--jobs", "2", "--out", tmp_path / "two", "--force", "--json")
    assert again.exit_code == 0 and all(r["cached"] for r in json.loads(again.stdout)["runs"])


def test_a_locked_run_is_waited_for_not_failed(tmp_path):
    """Two studies that share a run: the second waits for the first's lock, then reads its result."""
    import threading

    from lmladder.atomic import locked

    folder = tmp_path / "run"
    order = []
    with locked(folder):
        def second() -> None:
            with locked(folder, wait=True):
                order.append("second")
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.3)
        order.append("first done")
    thread.join(5)
    assert order == ["first done", "second"]


def test_isoflop_minima_recover_the_optimal_size_exponent():
    """Approach 2 on a known law L = E + A/N^alpha + B/D^beta with C = 6 N D: each budget's parabola
    finds its minimum, and N_opt ~ C^a comes out with a = beta / (alpha + beta) (Hoffmann et al.);
    a budget whose runs only fall with N has no minimum inside them."""
    from lmladder.scale import fit

    E, A, B, alpha, beta = 1.7, 400.0, 410.0, 0.34, 0.28
    levels, params, loss = [], [], []
    for C in (1e15, 1e16, 1e17, 1e18):
        g = (alpha * A / (beta * B)) ** (1 / (alpha + beta))  # N_opt = g (C / 6)^(beta / (alpha + beta))
        n_opt = g * (C / 6) ** (beta / (alpha + beta))
        for n in n_opt * np.geomspace(1 / 4, 4, 7):
            levels.append(C)
            params.append(n)
            loss.append(E + A / n ** alpha + B / (C / (6 * n)) ** beta)
    levels, params, loss = map(np.array, (levels, params, loss))
    minima = fit.isoflop_minima(levels, params, loss)
    assert len(minima) == 4 and all(m["params"] is not None for m in minima)
    law = fit.optimal_size_law(minima)
    assert law["a"] == pytest.approx(beta / (alpha + beta), abs=0.01)
    falling = fit.isoflop_minima(np.full(4, 1e12), np.array([1e4, 1e5, 1e6, 1e7]), np.array([3.0, 2.5, 2.2, 2.1]))
    assert falling[0]["params"] is None and fit.optimal_size_law(falling) is None
