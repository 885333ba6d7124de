"""benchmarks/bench_ttq.py's parts that need no GPU: reading nanoGPT's output as it comes, with
the seconds since launch, and the two numbers taken from a run's val losses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_ttq  # noqa: E402

FAKE_TRAIN = """import time
print("compiling the model... (takes a ~minute)", flush=True)
print("step 0: train loss 4.2874, val loss 4.2823", flush=True)
time.sleep(0.3)
print("step 250: train loss 1.4000, val loss 1.4650", flush=True)
time.sleep(30)
"""


def test_nanogpt_lines_are_timed_and_the_run_is_stopped_at_its_cap(tmp_path):
    root = tmp_path / "nanogpt"
    (root / "config").mkdir(parents=True)
    (root / "config" / "train_shakespeare_char.py").write_text("")
    (root / "train.py").write_text(FAKE_TRAIN)
    cache = tmp_path / "cache"
    cache.mkdir()
    result = bench_ttq.nanogpt(root, cache, cap=3.0, log=tmp_path / "log")
    assert result["name"] == "nanoGPT cold compile cache" and result["returncode"] != 0  # killed at the cap
    assert result["step_at_1.47"] == 250 and 0.3 <= result["time_to_1.47_s"] < 3.0
    assert result["best_val_60s"] == 1.465 and result["evals"] == 2
    assert "step 250" in (tmp_path / "log").read_text()
    (cache / "fxgraph").mkdir()  # what the first run left: the next one is warm
    assert bench_ttq.nanogpt(root, cache, cap=1.0, log=tmp_path / "log2")["name"] == "nanoGPT warm compile cache"


def test_summary_takes_the_first_crossing_and_the_best_within_60_s():
    rows = [(5.0, 2.0, 50), (9.5, 1.469, 100), (20.0, 1.45, 200), (61.0, 1.40, 600)]
    got = bench_ttq.summary("x", rows)
    assert got["time_to_1.47_s"] == 9.5 and got["step_at_1.47"] == 100 and got["best_val_60s"] == 1.45
    assert bench_ttq.summary("y", [(5.0, 2.0, 50)])["time_to_1.47_s"] is None
    assert bench_ttq.spread([3.0, None, 1.0])["median"] == 2.0


def test_explore_only_runs_the_recipes_and_nothing_beside_them(tmp_path, monkeypatch):
    """--explore-only: each --explore recipe once (bench_gpu.time_to_quality, here a stand-in),
    explore.json written, and no side-by-side run (neither nanoGPT nor lmladder's short/long)."""
    import bench_gpu

    asked = []

    def fake_ttq(work, budget, names):
        asked.append((budget, list(names)))
        return {n: {"time_to_1.47_s": 20.0, "best_val_60s": 1.39} for n in names}

    monkeypatch.setattr(bench_gpu, "time_to_quality", fake_ttq)
    monkeypatch.setattr(bench_gpu, "encode_tinyshakespeare", lambda: None)
    monkeypatch.setattr(bench_ttq, "warm_bytecode", lambda: {})
    monkeypatch.setattr(bench_ttq, "nanogpt", lambda *a, **k: (_ for _ in ()).throw(AssertionError("nanoGPT ran")))
    monkeypatch.setenv("OUT", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["bench_ttq.py", "--explore-only", "--explore", "adamw-wd3,adamw-l8-wd3",
                                      "--nanogpt", str(tmp_path)])
    assert bench_ttq.main() == 0
    assert asked == [(55.0, ["adamw-wd3", "adamw-l8-wd3"])]
    report = json.loads((tmp_path / "explore.json").read_text())
    assert set(report["explored"]) == {"adamw-wd3", "adamw-l8-wd3"} and not (tmp_path / "ttq.json").exists()


def test_side_by_side_alternates_and_takes_the_median_of_three_short_runs(tmp_path, monkeypatch):
    """After exploring: nanoGPT cold, short, long, nanoGPT warm, short, short; time_to_1.47_s is
    the short runs' median, the ratios are nanoGPT's over it, and the report names the commit."""
    import bench_gpu

    order, short_times = [], iter([9.5, 8.0, 12.0])
    explored = {"a": {"time_to_1.47_s": 9.0, "best_val_60s": 1.40}, "b": {"time_to_1.47_s": 20.0, "best_val_60s": 1.38}}
    monkeypatch.setattr(bench_gpu, "TTQ_RECIPES", {"a": [], "b": []})
    monkeypatch.setattr(bench_gpu, "time_to_quality", lambda work, budget, names: {n: explored[n] for n in names})
    monkeypatch.setattr(bench_gpu, "encode_tinyshakespeare", lambda: None)
    monkeypatch.setattr(bench_ttq, "warm_bytecode", lambda: {})

    def fake_nanogpt(root, cache, cap, log):
        state = "warm" if any(cache.glob("*")) else "cold"
        (cache / "compiled").write_text("x")
        order.append(f"nanoGPT {state}")
        return {"name": f"nanoGPT {state} compile cache", "time_to_1.47_s": 50.0 if state == "warm" else 70.0,
                "best_val_60s": 1.47}

    def fake_lmladder(work, recipe, tag):
        order.append(recipe)
        t = next(short_times) if recipe == "a" else 25.0
        return {"name": f"lmladder {recipe}", "time_to_1.47_s": t, "best_val_60s": explored[recipe]["best_val_60s"]}

    monkeypatch.setattr(bench_ttq, "nanogpt", fake_nanogpt)
    monkeypatch.setattr(bench_ttq, "lmladder", fake_lmladder)
    monkeypatch.setenv("OUT", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["bench_ttq.py", "--explore", "a,b", "--nanogpt", str(tmp_path)])
    assert bench_ttq.main() == 0
    assert order == ["nanoGPT cold", "a", "b", "nanoGPT warm", "a", "a"]
    report = json.loads((tmp_path / "ttq.json").read_text())
    assert (report["short_recipe"], report["long_recipe"]) == ("a", "b")
    assert report["time_to_1.47_s"] == 9.5 and report["lmladder_time_to_1.47"]["runs"] == [9.5, 8.0, 12.0]
    assert report["speedup_vs_nanogpt_warm"] == 50.0 / 9.5 and report["best_val_60s"] == 1.38
    assert report["git_commit"] is None or len(report["git_commit"].split("-")[0]) == 40
    assert len(report["lmladder_code"]) == 16


def test_with_nothing_explored_auto_is_the_measured_recipes_and_unknown_ones_stop_first(tmp_path, monkeypatch, capsys):
    """No --explore: the short and long runs are bench_ttq.SHORT and LONG (recipes bench_gpu has);
    a recipe name bench_gpu does not have is a usage error before anything runs."""
    import bench_gpu

    assert {bench_ttq.SHORT, bench_ttq.LONG} <= set(bench_gpu.TTQ_RECIPES)
    ran = []
    monkeypatch.setattr(bench_gpu, "time_to_quality", lambda work, budget, names: ran.append(names) or {})
    monkeypatch.setattr(bench_gpu, "encode_tinyshakespeare", lambda: ran.append("encode"))
    monkeypatch.setattr(bench_ttq, "warm_bytecode", lambda: {})
    monkeypatch.setattr(bench_ttq, "lmladder", lambda work, recipe, tag: ran.append(recipe) or {
        "name": f"lmladder {recipe}", "time_to_1.47_s": 9.0, "best_val_60s": 1.35})
    monkeypatch.setenv("OUT", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["bench_ttq.py"])
    assert bench_ttq.main() == 0
    assert ran == ["encode", bench_ttq.SHORT, bench_ttq.LONG, bench_ttq.SHORT, bench_ttq.SHORT]
    ran.clear()
    monkeypatch.setattr(sys, "argv", ["bench_ttq.py", "--long", "no-such-recipe"])
    with pytest.raises(SystemExit) as exc:
        bench_ttq.main()
    assert exc.value.code == 2 and ran == [] and "unknown recipe(s) no-such-recipe" in capsys.readouterr().err


def test_every_recipe_bpe512_names_is_made_by_bpe_tokenizer():
    """The bpe512-* recipes read the tokenizer bench_gpu.bpe_tokenizer makes; the other recipes
    never ask for it."""
    import bench_gpu

    bpe = [name for name, options in bench_gpu.TTQ_RECIPES.items() if str(bench_gpu.BPE512_DIR) in options]
    assert bpe and all(name.startswith("bpe512-") for name in bpe)
    others = [options for name, options in bench_gpu.TTQ_RECIPES.items() if not name.startswith("bpe512")]
    assert all(str(bench_gpu.BPE512_DIR) not in options for options in others)
