"""`lmladder train CORPUS --model KIND --out DIR`."""

from __future__ import annotations

from typing import Optional

import typer

from lmladder.cli.common import JSON_OPTION, emit_json
from lmladder.errors import LadderError

MODELS = ("uniform", "unigram")


def train(
    corpus: str = typer.Argument("tinyshakespeare", help="A registered corpus name, or a .txt file or folder."),
    model: str = typer.Option(..., "--model", help=f"What to train: {', '.join(MODELS)}."),
    out: str = typer.Option(..., "--out", help="Folder to write the model to (created atomically)."),
    split: Optional[str] = typer.Option(None, "--split", help="TRAIN,VAL,TEST fractions (default: the corpus's)."),
    json: bool = JSON_OPTION,
) -> None:
    """Train a rung on the corpus's train split and save it as a self-describing folder."""
    if model not in MODELS:
        raise LadderError(f"unknown --model {model!r}; choose one of {', '.join(MODELS)}")
    from lmladder import baselines, corpora
    from lmladder.atomic import check_output_dir

    check_output_dir(out)
    data = corpora.load(corpus)
    splits = data.split(split)
    rung = baselines.train(model, splits.require("train"))
    rung.save(out, data.identity(), str(splits.spec))
    result = {"model": model, "out": out, "corpus": data.identity(), "split": str(splits.spec),
              "parameters": rung.parameters}
    if json:
        emit_json(result)
    else:
        typer.echo(f"trained {model} on {data.name} ({splits.spec}) -> {out}")
