"""`lmladder ngram count|stats|train|export`: n-gram counts, their sparsity, models and ARPA."""

from __future__ import annotations

import re
from typing import Optional

import typer

from lmladder.cli.common import JSON_OPTION, emit_json, fmt, stdout_console, report
from lmladder.errors import LadderError

app = typer.Typer(help="Letter and word n-grams: counts, sparsity statistics, Kneser-Ney models, ARPA.",
                  no_args_is_help=True, add_completion=False)

CORPUS = typer.Argument("tinyshakespeare", help="A registered corpus name, or a .txt file or folder.")
UNIT = typer.Option("char", "--unit", help="char (letters) or word (reversible word units).")
ORDER = typer.Option(5, "--order", help="Longest n-gram (1..12).")
SPLIT = typer.Option(None, "--split", help="TRAIN,VAL,TEST fractions (default: the corpus's).")
MEMORY = typer.Option(None, "--memory", help="Working memory for counting, e.g. 2G or 500M: longer text is counted "
                      "in pieces and merged (default: a quarter of physical memory). The n-gram tables come on top.")
FORCE = typer.Option(False, "--force", help="Replace what is already in --out if it is of the same kind "
                                           "(never a folder of another kind).")


def parse_memory(text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", text, re.I)
    if not m or float(m.group(1)) <= 0:
        raise LadderError(f"--memory {text!r} is not a size; give e.g. 2G, 500M or 100000")
    from lmladder.counts import MIN_MEMORY

    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    size = int(float(m.group(1)) * scale)
    if size < MIN_MEMORY:
        raise LadderError(f"--memory {text.strip()} is below the least working memory for counting, "
                          f"{MIN_MEMORY >> 20}M (bytes without a unit); give e.g. 500M or 2G")
    import os

    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    if physical and size > physical:
        raise LadderError(f"--memory {text.strip()} is more than this machine's memory ({physical / (1 << 30):.1f}G); "
                          "give at most that, or leave --memory out (a quarter of it)")
    return size


@app.command("count")
def count(corpus: str = CORPUS, unit: str = UNIT, order: int = ORDER,
          out: str = typer.Option(..., "--out", help="Folder to write the count tables to."),
          split: Optional[str] = SPLIT, memory: Optional[str] = MEMORY, force: bool = FORCE,
          json: bool = JSON_OPTION) -> None:
    """Count every n-gram of orders 1..N on the train split into Parquet tables."""
    from lmladder import corpora, ngramio, runtime
    from lmladder.atomic import check_output_dir
    from lmladder.ngram import NgramConfig

    runtime.lean_malloc()

    config = NgramConfig(unit=unit, order=order, min_count=1)
    config.check()
    budget = parse_memory(memory)
    check_output_dir(out, ngramio.FORMAT, None, force)
    data = corpora.load(corpus)
    splits = data.split(split)
    result = ngramio.count_corpus(config, splits, data.identity(), out, budget)
    report(result, json, f"counted {unit} n-grams of orders 1..{order} on {data.name} ({splits.spec}) -> {out}")


@app.command("stats")
def stats(folder: str = typer.Argument(..., help="A counts folder written by `lmladder ngram count`."),
          json: bool = JSON_OPTION) -> None:
    """Per order: n-gram types and tokens, singletons, V^n possible, val n-grams never seen in train."""
    from lmladder import ngramio

    rows = ngramio.stats(folder)
    if json:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table(title=f"n-gram sparsity ({rows['unit']}, {rows['corpus']['name']})")
    for col in ("order", "types", "tokens", "singletons", "possible", "coverage", "val_unseen"):
        table.add_column(col, justify="right")
    for r in rows["orders"]:
        table.add_row(str(r["order"]), fmt(r["types"]), fmt(r["tokens"]), fmt(r["singletons"]),
                      f"{float(r['possible']):.3g}", f"{r['types'] / float(r['possible']):.3g}",
                      "-" if r["val_unseen"] is None else f"{r['val_unseen']:.2%}")
    stdout_console().print(table)


@app.command("train")
def train(corpus: str = CORPUS, unit: str = UNIT, order: int = ORDER,
          out: str = typer.Option(..., "--out", help="Folder to write the model to."),
          smoothing: str = typer.Option("kn", "--smoothing", help="kn (modified Kneser-Ney), addk or mle."),
          k: Optional[float] = typer.Option(None, "--k", help="add-k's pseudo-count (default 0.01; only with "
                                                               "--smoothing addk)."),
          min_count: Optional[int] = typer.Option(None, "--min-count",
                                                  help="Word units: words seen fewer times are spelled letter by "
                                                       "letter (default 0: tune on val; only with --unit word)."),
          kenlm_compat: bool = typer.Option(False, "--kenlm-compat",
                                            help="KenLM's lmplz, entry for entry: the train text read as lmplz "
                                                 "reads a file (lines at \\n only, tokens between ASCII spaces, "
                                                 "tabs and CRs; <s> </s> <unk>) and its discounts (use --unit word)."),
          split: Optional[str] = SPLIT, memory: Optional[str] = MEMORY, force: bool = FORCE,
          json: bool = JSON_OPTION) -> None:
    """Train an n-gram rung on the train split and save it as a self-describing folder."""
    import time

    from lmladder import corpora, ngram, runtime
    from lmladder.atomic import check_output_dir

    runtime.lean_malloc()
    _check_train_options(unit, smoothing, k, min_count, kenlm_compat)
    config = ngram.NgramConfig(unit=unit, order=order, smoothing=smoothing, k=0.01 if k is None else k,
                               min_count=(min_count or 0) if unit == "word" else 1, kenlm_compat=kenlm_compat)
    config.check()
    budget = parse_memory(memory)
    check_output_dir(out, "lmladder-model", "ngram", force)
    data = corpora.load(corpus)
    splits = data.split(split)
    docs = splits.require("train")
    start = time.perf_counter()
    model = ngram.train(config, docs, budget, val=splits["val"])
    seconds = time.perf_counter() - start
    ngram.save(model, out, data.identity(), str(splits.spec))
    result = {"out": out, "corpus": data.identity(), "split": str(splits.spec), "config": model.config.__dict__,
              "parameters": model.parameters, "ngrams": [len(t.keys) for t in model.tables],
              "discounts": model.meta.get("discounts"), "seconds": seconds}
    report(result, json, f"trained {unit} {order}-gram ({smoothing}) on {data.name} ({splits.spec}) -> {out}")



def _check_train_options(unit: str, smoothing: str, k: Optional[float], min_count: Optional[int],
                         kenlm_compat: bool) -> None:
    """Options that contradict each other, or that would be silently ignored, refused at once."""
    from lmladder.ngram import check_k

    problems = []
    if kenlm_compat and unit != "word":
        problems.append("--kenlm-compat works on whitespace tokens: use it with --unit word (for letters, rewrite "
                        "the text as space-separated characters first)")
    if kenlm_compat and smoothing != "kn":
        problems.append(f"--kenlm-compat reproduces KenLM's lmplz, which is Kneser-Ney only: drop --smoothing "
                        f"{smoothing} or --kenlm-compat")
    if k is not None and smoothing != "addk":
        problems.append(f"--k is add-k's pseudo-count and does not apply to --smoothing {smoothing}: drop --k or "
                        "use --smoothing addk")
    elif k is not None:
        try:
            check_k(k)
        except LadderError as exc:
            problems.append(str(exc))
    if min_count is not None and (unit != "word" or kenlm_compat):
        problems.append("--min-count applies only to --unit word without --kenlm-compat (rare words spelled letter "
                        "by letter): drop it")
    elif min_count is not None and min_count < 0:
        problems.append(f"--min-count must be >= 0, 0 meaning tuned on val (got {min_count})")
    if problems:
        raise LadderError("; ".join(problems))
