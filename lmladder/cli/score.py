"""`lmladder score MODEL_DIR CORPUS|FILE`: any saved rung, through the one scoring contract."""

from __future__ import annotations

from typing import Optional

import typer

from lmladder.cli.common import JSON_OPTION, emit_json, fmt, stdout_console
from lmladder.errors import LadderError


def score(
    model_dir: str = typer.Argument(..., help="A model folder written by lmladder."),
    corpus: Optional[str] = typer.Argument(
        None, help="A registered corpus name, or a .txt file or folder (default: the one the model was trained on)."),
    split: Optional[str] = typer.Option(
        None, "--split",
        help="train, val, test or all. Default: test for the corpus the model was trained on or a "
             "registered corpus, all for a file or folder."),
    split_spec: Optional[str] = typer.Option(
        None, "--split-spec", help="TRAIN,VAL,TEST fractions (default: the model's, for its own corpus)."),
    json: bool = JSON_OPTION,
) -> None:
    """Score a saved rung: bits/char, bits/byte, word and token perplexity."""
    import time

    from lmladder import corpora, metrics, ngrambin, registry

    header = registry.model_header(model_dir)
    with ngrambin.checked_later() as confirm:  # an n-gram binary's CRC-32 is computed while it scores
        rung = registry.load_model(model_dir)
    data = corpora.load(corpus) if corpus else corpora.load_recorded(header.get("corpus"), f"the model {model_dir}")
    same = data.sha256 == header.get("corpus", {}).get("sha256")
    spec = split_spec or (header.get("split") if same else None)
    which = split or ("test" if (same or data.kind != "local") else "all")
    if which == "all" and split_spec:
        raise LadderError(f"--split-spec {split_spec} cuts the text into train, val and test, and --split all scores "
                          "all of it: leave out --split-spec, or give --split train, val or test")
    if which == "all":
        docs = data.documents
    elif which in ("train", "val", "test"):
        docs = data.split(spec).require(which)
    else:
        raise LadderError(f"unknown --split {which!r}; choose train, val, test or all")
    start = time.perf_counter()
    try:
        m = metrics.evaluate(rung, docs)
    finally:
        confirm()  # a corrupt file is said to be corrupt, whatever scoring made of it
    seconds = time.perf_counter() - start
    result = {"model": model_dir, "kind": header.get("kind"), "corpus": data.name, "split": which,
              "split_spec": str(data.split(spec).spec) if which != "all" else None,
              **m.to_dict(), "seconds": seconds}
    if json:
        emit_json(result)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"{header.get('kind')} on {data.name} [{which}]"), show_header=False)
    for key in ("bits_per_char", "bits_per_byte", "word_perplexity", "token_perplexity", "chars", "bytes",
                "words", "tokens"):
        table.add_row(key, fmt(result[key]))
    table.add_row("seconds", f"{seconds:.2f}")
    stdout_console().print(table)
