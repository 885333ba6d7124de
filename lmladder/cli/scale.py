"""`lmladder scale CORPUS --out DIR`: predict a GPT's loss from a sweep of small ones."""

from __future__ import annotations

from typing import Optional

import typer

from lmladder.cli.common import JSON_OPTION, emit_json, fmt, stdout_console

O = typer.Option


def _numbers(text: Optional[str], kind, option: str):
    """"1,2,4" or "1e12,3e12" -> a tuple, or None when not given."""
    from lmladder.errors import LadderError

    if text is None:
        return None
    try:
        return tuple(kind(float(part)) if kind is int and float(part).is_integer() else kind(part)
                     for part in text.split(",") if part.strip())
    except ValueError:
        raise LadderError(f"{option} takes numbers separated by commas (got {text!r})") from None


def scale(
    corpus: str = typer.Argument("tinyshakespeare", help="A registered corpus name, or a .txt file or folder."),
    out: Optional[str] = O(None, "--out", help="Write results.json, runs.parquet, scale.md and the figures here."),
    profile: str = O("cpu", "--profile", help="cpu, gpu or tiny: the family of shapes (width per layer, head size, "
                                              "context) and the default sizes and budgets."),
    sizes: Optional[str] = O(None, "--sizes", help="Depths of the sweep's GPTs, e.g. 1,2,3,4 (depth k: k layers, "
                                                   "width aspect x k; default: the profile's)."),
    budgets: Optional[str] = O(None, "--budgets", help="Training FLOPs of each IsoFLOP level, e.g. 1e11,1e12 "
                                                       "(default: the profile's)."),
    split: Optional[str] = O(None, "--split", help="TRAIN,VAL,TEST fractions (default: the corpus's)."),
    target_preset: Optional[str] = O(None, "--target-preset", help="The target's shape from a preset (a GPT), "
                                                                   "trained with the sweep's recipe and context."),
    target_config: Optional[str] = O(None, "--target-config", help="The target's shape from a config file's [model]."),
    target_tokens: Optional[float] = O(None, "--target-tokens", help="Tokens to train the target model on."),
    target_flops: Optional[float] = O(None, "--target-flops", help="The target as a compute budget: the fit picks "
                                                                   "the compute-optimal size and tokens."),
    verify: bool = O(False, "--verify", help="Train the target too and report the prediction's relative error."),
    metric: str = O("test", "--metric", help="The loss fitted and predicted: test or val bits/char."),
    bootstrap: int = O(200, "--bootstrap", help="Bootstrap resamples for the intervals (0: none)."),
    lr_mult: float = O(1.0, "--lr-mult", help="Multiply the recipe's learning rate (1: 0.32 / width, the stated rule)."),
    min_steps: Optional[int] = O(None, "--min-steps", help="Leave out planned runs of fewer steps (default: the "
                                                           "profile's)."),
    steps_floor: Optional[int] = O(None, "--steps-floor", help="Cut a run's batch (to --min-batch at the least) so "
                                                               "it makes at least this many steps (default: the "
                                                               "profile's; the target too)."),
    min_batch: Optional[int] = O(None, "--min-batch", help="Fewest sequences a step (default: the profile's)."),
    warmup: Optional[float] = O(None, "--warmup", help="Warmup as a fraction of each run's steps (default: the "
                                                       "profile's)."),
    jobs: int = O(1, "--jobs", help="Sweep runs trained at once, each in its own process (small runs leave most "
                                    "of a GPU idle: on one H200, three sweeps at once ran 1.9x as fast as one after "
                                    "another; on CPU cores, mind --threads)."),
    device: str = O("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    threads: int = O(0, "--threads", help="CPU threads for torch (0: its own choice; 1 is fastest for tiny models "
                                          "on a busy machine)."),
    retrain: bool = O(False, "--retrain", help="Train every run again instead of reusing the cached ones."),
    plan: bool = O(False, "--plan", help="Show the runs the study would train (shapes, tokens, steps, passes over "
                                         "the train split, FLOPs, which are cached) and the target's compute over "
                                         "the sweep's, then stop: nothing is trained or written."),
    force: bool = O(False, "--force", help="Replace a scaling study already in --out (never a folder of another kind)."),
    json: bool = JSON_OPTION,
) -> None:
    """Train a sweep of small GPTs, fit scaling laws, and predict (and verify) a bigger run's loss."""
    from lmladder.atomic import check_output_dir, locked
    from lmladder.console import log, progress_style
    from lmladder.errors import GateFailure
    from lmladder.scale import report as outputs
    from lmladder.scale.study import Study, plan_only, run

    study = Study(corpus, profile, _numbers(sizes, int, "--sizes"), _numbers(budgets, float, "--budgets"), split,
                  device, metric, bootstrap, lr_mult, min_steps, target_preset, target_config, target_tokens,
                  target_flops, verify, retrain, threads, steps_floor=steps_floor, min_batch=min_batch,
                  warmup_fraction=warmup, jobs=jobs)
    study.check()
    if plan:
        shown = plan_only(study)
        emit_json(shown) if json else _print_plan(shown)
        return
    if out:
        check_output_dir(out, "lmladder-scale", None, force)

    def said(row) -> None:
        if progress_style() == "none":  # LMLADDER_NO_PROGRESS=1: nothing but the result
            return
        loss = row.get(f"{metric}_bits_per_char")
        log(f"{row['name']}: " + (f"{loss:.4f} {metric} bits/char, {row['flops']:.3g} FLOPs, "
                                  f"{row['train_seconds']:.1f} s{' (cached)' if row.get('cached') else ''}"
                                  if row["status"] == "finished" else f"failed, skipped: {row['error']}"))

    if out:
        with locked(out):
            result = run(study, said)
            outputs.write_outputs(result, out)
    else:
        result = run(study, said)
    if json:
        emit_json(result)
    else:
        _print(result)
    v = result["verification"]
    if v is not None and v["bits_per_char"] is None:
        raise GateFailure(f"the target run failed, so the prediction was not verified: {v['error']}")


def _print(result) -> None:
    from rich.table import Table

    fits, p, v = result["fits"], result["prediction"], result["verification"]
    console = stdout_console()
    table = Table(title=f"scaling sweep on {result['manifest']['corpus']['name']} ({fits['metric']} bits/char)")
    for col in ("run", "N (non-emb)", "tokens", "FLOPs", "bits/char", "train s"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for r in result["runs"]:
        table.add_row(r["name"], fmt(r["non_embedding_parameters"]), fmt(r["tokens"]), f"{r['flops']:.3g}",
                      fmt(r[f"{fits['metric']}_bits_per_char"]) if r["status"] == "finished" else "failed",
                      fmt(r["train_seconds"], 1))
    console.print(table)
    c, d = fits["compute"], fits["data"]
    console.print(f"L(C) = {c['E']:.4f} + {c['A']:.4g} C^-{c['alpha']:.4f} (frontier of {len(c['frontier'])} runs)")
    console.print(f"L(N, D) = {d['E']:.4f} + {d['A']:.4g} / N^{d['alpha']:.4f} + {d['B']:.4g} / D^{d['beta']:.4f}")
    if p is not None:
        interval = f" [{p['interval'][0]:.4f}, {p['interval'][1]:.4f}]" if p["interval"] else ""
        console.print(f"prediction for the target ({p['source']}, {p['target']['flops']:.3g} FLOPs, "
                      f"{result['compute_ratio']:.1f}x the sweep's): {p['bits_per_char']:.4f}{interval} bits/char")
    if v is not None and v["bits_per_char"] is not None:
        console.print(f"verified: {v['bits_per_char']:.4f} bits/char, relative error {v['relative_error']:+.2%}")
    if result.get("truth"):
        t = result["truth"]
        console.print(f"true entropy rate {t['entropy_bits_per_char']:.4f}: E of L(N, D) {t['E_data']:.4f} "
                      f"({t['E_data_relative_error']:+.2%}), of L(C) {t['E_compute']:.4f} "
                      f"({t['E_compute_relative_error']:+.2%})")


def _print_plan(shown) -> None:
    from rich.table import Table

    console = stdout_console()
    table = Table(title=f"scaling sweep planned on {shown['corpus']['name']} ({shown['split']}), nothing trained")
    for col in ("run", "layers x width", "N (non-emb)", "tokens", "batch", "steps", "passes", "FLOPs", "cached"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for r in shown["runs"] + ([shown["target"]] if shown["target"] else []):
        table.add_row(r["name"], f"{r['n_layer']} x {r['n_embd']}", fmt(r["non_embedding_parameters"]),
                      fmt(r["tokens"]), fmt(r["batch_size"]), fmt(r["steps"]), f"{r['passes']:.2f}",
                      f"{r['flops']:.3g}", "yes" if r["cached"] else "no")
    console.print(table)
    for d in shown["plan"]["dropped"]:
        console.print(f"left out: {d['name']} ({d['why']})")
    line = f"sweep: {len(shown['runs'])} runs, {shown['fit_flops']:.3g} FLOPs"
    if shown["compute_ratio"] is not None:
        line += f"; target: {shown['target_flops']:.3g} FLOPs, {shown['compute_ratio']:.1f}x the sweep's"
    console.print(line)
