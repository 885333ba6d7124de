"""A scaling study from start to end: check everything, plan, train the sweep, fit both laws,
predict the target and (with verify) train it and compare."""

from __future__ import annotations

import datetime as _dt
import platform
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from lmladder.errors import LadderError
from lmladder.scale import fit
from lmladder.scale.plan import (MAX_DEPTH, MAX_FLOPS, MAX_TOKENS, PROFILES, Family, Plan, Recipe, RunSpec, check_plan,
                                 plan_sweep, run_spec, target_shape)
from lmladder.scale.sweep import train_all, train_one

METRICS = ("test", "val")
MAX_LR_MULT = 100.0  # --lr-mult: past ~10x the width rule a run diverges; 100x is surely a slip


@dataclass
class Study:
    """What `lmladder scale` was asked for (the command's options, one to one)."""

    corpus: str
    profile: str = "cpu"
    depths: tuple[int, ...] | None = None  # None: the profile's
    budgets: tuple[float, ...] | None = None
    split: str | None = None
    device: str = "auto"
    metric: str = "test"
    bootstrap: int = 200
    lr_mult: float = 1.0  # times the profile's recipe's learning rate
    min_steps: int | None = None  # None: the profile's recipe's
    target_preset: str | None = None
    target_config: str | None = None
    target_tokens: float | None = None
    target_flops: float | None = None
    verify: bool = False
    retrain: bool = False
    threads: int = 0  # torch's CPU threads (RunConfig.threads); not part of a run's cache key
    steps_floor: int | None = None  # None: the profile's recipe's (each also applies to the target)
    min_batch: int | None = None
    warmup_fraction: float | None = None
    jobs: int = 1  # sweep runs trained at once (worker processes); not part of a run's cache key

    @property
    def family(self) -> Family:
        return PROFILES[self.profile].family

    @property
    def recipe(self) -> Recipe:
        changes = {"min_steps": self.min_steps, "steps_floor": self.steps_floor, "min_batch": self.min_batch,
                   "warmup_fraction": self.warmup_fraction}
        return replace(PROFILES[self.profile].recipe, lr_mult=self.lr_mult,
                       **{k: v for k, v in changes.items() if v is not None})

    def check(self) -> None:
        """Every problem with the options at once, before anything is loaded."""
        problems = []
        if self.profile not in PROFILES:
            problems.append(f"unknown --profile {self.profile!r}; choose one of {', '.join(PROFILES)}")
        if self.metric not in METRICS:
            problems.append(f"--metric must be test or val (got {self.metric!r})")
        if self.min_steps is not None and self.min_steps < 1:
            problems.append(f"--min-steps must be at least 1 (got {self.min_steps})")
        if self.steps_floor is not None and self.steps_floor < 0:
            problems.append(f"--steps-floor must be at least 0 (got {self.steps_floor})")
        if self.min_batch is not None and self.min_batch < 1:
            problems.append(f"--min-batch must be at least 1 sequence (got {self.min_batch})")
        if self.warmup_fraction is not None and not 0 <= self.warmup_fraction < 1:
            problems.append(f"--warmup must be a fraction of the steps in [0, 1) (got {self.warmup_fraction:g})")
        if self.jobs < 1:
            problems.append(f"--jobs must be at least 1 (got {self.jobs})")
        from lmladder.runtime import thread_limit

        most, cores = thread_limit()
        if not 0 <= self.threads <= most:
            problems.append(f"--threads must be in [0, {most}], {most // cores} x the {cores} usable cores of this "
                            f"machine (got {self.threads}); 0 is torch's own count")
        if self.bootstrap < 0:
            problems.append(f"--bootstrap must be >= 0 (got {self.bootstrap})")
        if not 0 < self.lr_mult <= MAX_LR_MULT:
            problems.append(f"--lr-mult must be in (0, {MAX_LR_MULT}] (got {self.lr_mult:g}); the recipe's rate times "
                            "more than that only diverges")
        shaped = self.target_preset is not None or self.target_config is not None
        if self.target_preset is not None and self.target_config is not None:
            problems.append("give the target as --target-preset or --target-config, not both")
        if shaped and self.target_flops is not None:
            problems.append("give the target as a model (--target-preset/--target-config with --target-tokens) or as "
                            "a compute budget (--target-flops), not both")
        if shaped and self.target_tokens is None:
            problems.append("a target model needs --target-tokens, the tokens to train it on")
        if self.target_tokens is not None and not shaped:
            problems.append("--target-tokens needs a target model: --target-preset or --target-config")
        for name, value, most in (("--target-tokens", self.target_tokens, MAX_TOKENS),
                                  ("--target-flops", self.target_flops, MAX_FLOPS)):
            if value is not None and not 0 < value <= most:
                problems.append(f"{name} must be a positive number of at most {most:g} (got {value:g})")
        deep = [k for k in self.depths or () if not 1 <= k <= MAX_DEPTH]
        if deep:
            problems.append(f"--sizes are depths (layers), each from 1 to {MAX_DEPTH} "
                            f"(got {', '.join(f'{k:g}' for k in deep)})")
        bad = [c for c in self.budgets or () if not 0 < c <= MAX_FLOPS]
        if bad:
            problems.append(f"--budgets are training FLOPs, each positive and at most {MAX_FLOPS:g} "
                            f"(got {', '.join(f'{c:g}' for c in bad)})")
        if self.verify and not (shaped or self.target_flops is not None):
            problems.append("--verify trains the target: give one (--target-preset/--target-config with "
                            "--target-tokens, or --target-flops)")
        if shaped and not problems:  # the target's shape, read now: a bad config file fails before any work
            try:
                target_shape(self.target_preset, self.target_config)
            except LadderError as exc:
                problems.append(str(exc))
        if problems:
            raise LadderError("; ".join(problems))


@dataclass
class Setup:
    """The study checked against its corpus: the data, the plan and the target's shape."""

    corpus: Any
    split: str
    vocab: int
    train_tokens: int
    plan: Plan
    target: RunSpec | None  # a target model's run; None for a compute budget (planned after the fit)
    target_source: str | None


def prepare(study: Study) -> Setup:
    """Load the corpus and plan the sweep; a bad target (not a GPT, or inside the sweep) fails here."""
    from lmladder import corpora, tokens
    from lmladder.neural import padded_vocab

    study.check()
    profile = PROFILES[study.profile]
    family, depths, budgets = profile.family, profile.depths, profile.budgets
    corpus = corpora.load(study.corpus)
    splits = corpus.split(study.split)
    split = str(splits.spec)
    splits.require("train")
    splits.require(study.metric)
    tokenizer = tokens.load_tokenizer("char", corpus, split)
    vocab = padded_vocab(tokenizer.vocab_size)
    train_tokens = int(len(tokens.encoded_split(tokenizer, corpus, split, "train")))
    plan = plan_sweep(study.depths or depths, study.budgets or budgets, family, vocab, train_tokens, study.recipe)
    check_plan(plan)
    largest = max(r.flops for r in plan.runs)
    target, source = None, None
    if study.target_preset is not None or study.target_config is not None:
        shape, source = target_shape(study.target_preset, study.target_config)
        target = run_spec("target", "target", None, shape, study.target_tokens, family, vocab, study.recipe)
        flops = target.flops
        if not flops <= MAX_FLOPS:
            raise LadderError(f"the target ({source}, {study.target_tokens:g} tokens) would take {flops:.3g} training "
                              f"FLOPs, more than the {MAX_FLOPS:g} lmladder plans for; give a smaller model or fewer "
                              "--target-tokens")
    else:
        flops = study.target_flops
    if flops is not None and flops <= largest:
        raise LadderError(f"the target ({flops:.3g} FLOPs) is inside the sweep, whose largest run takes {largest:.3g}: "
                          "a prediction extrapolates, so give a target of more compute than every run of the sweep")
    return Setup(corpus, split, vocab, train_tokens, plan, target, source)


def _finished(rows: list[dict[str, Any]], metric: str) -> tuple[list[dict[str, Any]], np.ndarray]:
    done = [r for r in rows if r["status"] == "finished" and r[f"{metric}_bits_per_char"] is not None]
    return done, np.array([r[f"{metric}_bits_per_char"] for r in done], dtype=np.float64)


def fit_sweep(rows: list[dict[str, Any]], metric: str, resamples: int, seed: int = 0) -> dict[str, Any]:
    """Both laws on the finished runs, with bootstrap intervals of their parameters; an error
    when the runs cannot be fitted."""
    done, loss = _finished(rows, metric)
    if len(done) < 6:
        raise LadderError(f"the sweep cannot be fitted: {len(done)} of its {len(rows)} runs finished, and L(N, D) "
                          "needs at least 6 (the failures are listed above)")
    flops = np.array([r["flops"] for r in done])
    params = np.array([r["non_embedding_parameters"] for r in done], dtype=np.float64)
    tokens = np.array([r["tokens"] for r in done], dtype=np.float64)
    levels = np.array([r["budget"] or r["flops"] for r in done])
    fit.check_falls(levels, loss)
    compute = fit.fit_compute(flops, loss, levels=levels)
    data = fit.fit_data(params, tokens, loss)
    if compute is None or fit.flat_exponents(compute) or data is None or len(fit.flat_exponents(data)) == 2:
        which = "L(C) on the compute frontier" if compute is None or fit.flat_exponents(compute) else "L(N, D)"
        raise LadderError(f"the sweep cannot be fitted: {which} has no fit in which the loss falls as a power law "
                          f"({len(fit.frontier(levels, loss))} frontier runs); add sizes or budgets")
    front = fit.frontier(levels, loss)
    c_starts = [compute.theta(), *fit.grid_starts(np.log(flops[front])[:, None], loss[front], 2)]
    X = np.column_stack([np.log(params), np.log(tokens)])
    d_starts = [data.theta(), *fit.grid_starts(X, loss, 2)]
    laws: dict[str, list] = {"compute": [], "data": []}

    def refit(idx: np.ndarray) -> dict[str, float]:
        got = {}
        c = fit.fit_compute(flops[idx], loss[idx], c_starts, levels[idx])
        if c is not None:
            laws["compute"].append(c)
            got.update({f"compute.{k}": v for k, v in vars(c).items()})
        d = fit.fit_data(params[idx], tokens[idx], loss[idx], d_starts)
        if d is not None:
            laws["data"].append(d)
            got.update({f"data.{k}": v for k, v in vars(d).items()})
        return got

    intervals, counts = fit.bootstrap(len(done), refit, resamples, seed) if resamples else ({}, {})
    fitted = {law: counts.get(f"{law}.E", 0) for law in ("compute", "data")}
    return {
        "metric": metric,
        "runs": len(done),
        "compute": {**vars(compute), "frontier": [done[i]["name"] for i in front],
                    "interval": {k.split(".", 1)[1]: v for k, v in intervals.items() if k.startswith("compute.")}},
        "data": {**vars(data), "interval": {k.split(".", 1)[1]: v for k, v in intervals.items() if k.startswith("data.")},
                 "flat": fit.flat_exponents(data)},
        "bootstrap": {"resamples": resamples, "fitted": fitted, "seed": seed},
        # an E far below every run's loss is not an irreducible loss the runs pinned down
        "E_identified": {law: bool(obj.E > 0.5 * loss.min()) for law, obj in (("compute", compute), ("data", data))},
        "isoflop_edges": fit.isoflop_edges(levels, params, loss),
        "isoflop": {"minima": (minima := fit.isoflop_minima(levels, params, loss)),
                    "law": fit.optimal_size_law(minima)},
        "laws": (compute, data, laws),  # the fitted objects, for predictions; dropped from the JSON
    }


def _interval(values: list[float], resamples: int) -> list[float] | None:
    """The 95% interval of a bootstrap's predictions, where at least half its resamples fitted."""
    values = [v for v in values if np.isfinite(v)]
    if len(values) < max(2, resamples // 2):
        return None
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def predict(fits: dict[str, Any], target: RunSpec) -> dict[str, Any]:
    """Both laws' prediction for the target, each with its bootstrap interval; the headline is
    L(N, D)'s, which knows the target's size and tokens, not only its compute."""
    compute, data, laws = fits["laws"]
    resamples = fits["bootstrap"]["resamples"]
    n, d, c = target.non_embedding_parameters, target.tokens, target.flops
    return {
        "target": target.to_dict(),
        "bits_per_char": float(data(n, d)),
        "interval": _interval([float(law(n, d)) for law in laws["data"]], resamples),
        "law": "L(N, D)",
        "by_compute": {"bits_per_char": float(compute(c)),
                       "interval": _interval([float(law(c)) for law in laws["compute"]], resamples)},
    }


def run(study: Study, on_run: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The whole study (see the module's docstring); returns the report lmladder.scale.report writes."""
    from lmladder.neural import pick_device

    setup = prepare(study)
    device = pick_device(study.device)
    family = study.family
    rows = train_all(setup.corpus, setup.split, setup.plan.runs, study.recipe, device, study.retrain, study.threads,
                     on_run, jobs=study.jobs)
    fits = fit_sweep(rows, study.metric, study.bootstrap)
    target, optimal = setup.target, None
    if study.target_flops is not None:
        depth, tokens, _ = fit.optimal_depth(fits["laws"][1], study.target_flops, family, setup.vocab)
        target = run_spec("target", "target", None, family.shape(depth), tokens, family, setup.vocab, study.recipe)
        optimal = {"budget": study.target_flops, "depth": depth, "parameters": target.non_embedding_parameters,
                   "tokens": target.tokens, "n_layer": target.n_layer, "n_embd": target.n_embd}
        size_law = fits["isoflop"]["law"]  # approach 2's N_opt(C), where the sweep has interior minima
        if size_law is not None:
            optimal["approach2_parameters"] = size_law["k"] * study.target_flops ** size_law["a"]
    prediction = verification = None
    fit_flops = sum(r["flops"] for r in _finished(rows, study.metric)[0])
    if target is not None:
        prediction = predict(fits, target)
        prediction["source"] = setup.target_source or f"compute budget {study.target_flops:.3g} FLOPs"
        prediction["optimal"] = optimal
        prediction["compute_ratio"] = target.flops / fit_flops
        if target.tokens > study.recipe.max_epochs * setup.train_tokens:
            prediction["warning"] = (f"the target reads the train split {target.tokens / setup.train_tokens:.1f} "
                                     "times; past ~4 passes repeated data is worth less than new data, which no run "
                                     "of the sweep measured")
    if study.verify and target is not None:
        row = train_one(setup.corpus, setup.split, target, study.recipe, device, study.retrain, study.threads)
        rows.append(row)
        if on_run is not None:
            on_run(row)
        actual = row[f"{study.metric}_bits_per_char"]
        verification = {"status": row["status"], "error": row["error"], "bits_per_char": actual,
                        "relative_error": None if actual is None else (prediction["bits_per_char"] - actual) / actual,
                        "within_interval": None if actual is None or prediction["interval"] is None else
                        prediction["interval"][0] <= actual <= prediction["interval"][1],
                        "by_compute_relative_error": None if actual is None else
                        (prediction["by_compute"]["bits_per_char"] - actual) / actual}
    fits.pop("laws")
    report = {
        "manifest": manifest(setup, device, study),
        "plan": _plan_section(study, setup),
        "runs": rows,
        "fits": fits,
        "prediction": prediction,
        "verification": verification,
        "compute_ratio": None if target is None else target.flops / fit_flops,
        "fit_flops": fit_flops,
    }
    entropy = setup.corpus.meta.get("entropy_bits_per_char")
    if entropy is not None:
        report["truth"] = {"entropy_bits_per_char": entropy,
                           **{f"E_{law}": fits[law]["E"] for law in ("compute", "data")},
                           **{f"E_{law}_relative_error": (fits[law]["E"] - entropy) / entropy
                              for law in ("compute", "data")}}
    return report


def _plan_section(study: Study, setup: Setup) -> dict[str, Any]:
    return {"profile": study.profile, "family": vars(study.family),
            "recipe": {**vars(study.recipe), "rule": study.recipe.describe()},
            "depths": sorted(study.depths or PROFILES[study.profile].depths),
            "budgets": sorted(study.budgets or PROFILES[study.profile].budgets),
            "vocab_size": setup.vocab, "train_tokens": setup.train_tokens,
            "flops_formula": "training FLOPs = tokens x (6 N + 6 d V + 12 L d T)",
            "dropped": [{"name": n, "why": w} for n, w in setup.plan.dropped]}


def plan_only(study: Study) -> dict[str, Any]:
    """`lmladder scale --plan`: the sweep, and a target given by its shape, as they would run, with
    nothing trained: each run's shape, tokens, steps, passes over the train split, FLOPs, and
    whether the run cache holds it already; the target's compute over the sweep's."""
    from lmladder.neural import pick_device
    from lmladder.scale.sweep import run_folder, run_key, train_config

    setup = prepare(study)
    device = pick_device(study.device)

    def row(spec: RunSpec) -> dict[str, Any]:
        key = run_key(setup.corpus.sha256, setup.split, train_config(spec, study.recipe, setup.split, device,
                                                                    study.threads))
        return {**spec.to_dict(), "passes": spec.tokens / setup.train_tokens,
                "cached": (run_folder(key) / "result.json").is_file()}

    runs = [row(spec) for spec in setup.plan.runs]
    fit_flops = sum(r["flops"] for r in runs)
    target = row(setup.target) if setup.target is not None else None
    target_flops = target["flops"] if target is not None else study.target_flops
    return {"corpus": setup.corpus.identity(), "split": setup.split, "device": device,
            "plan": _plan_section(study, setup), "runs": runs, "fit_flops": fit_flops, "target": target,
            "target_flops": target_flops,
            "compute_ratio": None if target_flops is None else target_flops / fit_flops}


def manifest(setup: Setup, device: str, study: Study) -> dict[str, Any]:
    """Where and with what the study ran: enough to tell two results apart."""
    from importlib import metadata

    from lmladder import __version__
    from lmladder.bench import git_commit

    import torch

    if device.startswith("cuda"):
        where = torch.cuda.get_device_name(torch.device(device))
    else:
        model = platform.processor() or platform.machine()
        try:
            model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo", encoding="utf-8")
                         if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        from lmladder.runtime import usable_cores

        where = f"CPU: {model}, {usable_cores()} cores usable"
    return {"corpus": setup.corpus.identity(), "split": setup.split, "metric": study.metric, "device": where,
            "threads": study.threads or None,  # torch's CPU threads for every run; None: torch's own choice
            "lmladder_version": __version__, "git_commit": git_commit(), "torch": metadata.version("torch"),
            "python": platform.python_version(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
