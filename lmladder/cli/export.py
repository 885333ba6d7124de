"""`lmladder export MODEL_DIR --format hf|arpa --out PATH`: a model in a format other tools load."""

from __future__ import annotations


import typer

from lmladder.cli.common import JSON_OPTION, report
from lmladder.errors import LadderError

FORMATS = {"hf": "a transformers GPT-2 folder (GPT runs; AutoModelForCausalLM and AutoTokenizer load it)",
           "arpa": "an ARPA file (Kneser-Ney n-gram runs; KenLM loads it), gzipped where --out ends in .gz"}


def export(
    model_dir: str = typer.Argument(..., help="A model folder: a GPT run or a transformers GPT-2 folder (--format "
                                              "hf), an n-gram run (--format arpa)."),
    to: str = typer.Option(..., "--format", help="; ".join(f"{k}: {v}" for k, v in FORMATS.items()) + "."),
    out: str = typer.Option(..., "--out", help="The folder (hf) or file (arpa) to write, atomically."),
    force: bool = typer.Option(False, "--force", help="Replace an export already at --out (never a folder of "
                                                     "another kind)."),
    json: bool = JSON_OPTION,
) -> None:
    """Export a saved model for other tools: a GPT as transformers' GPT-2, n-grams as ARPA."""
    if to not in FORMATS:
        raise LadderError(f"unknown --format {to!r}; choose one of {', '.join(FORMATS)}")
    if to == "hf":
        from lmladder import hf

        result = hf.export(model_dir, out, force)
        report(result, json, f"wrote {out} (transformers GPT-2, {result['tokenizer']} tokenizer)")
        return
    from lmladder import arpa, registry

    header = registry.model_header(model_dir)
    if header.get("kind") != "ngram":
        instead = "export it with --format hf" if header.get("kind") == "gpt" else "it has no ARPA form"
        raise LadderError(f"{model_dir} holds a model of kind {header.get('kind')!r}; ARPA holds n-gram models: "
                          f"{instead}")
    from lmladder.atomic import check_output_file

    check_output_file(out, force)
    arpa.check_replaceable(out)  # with --force: an earlier ARPA file, never any other file
    model = registry.load_model(model_dir)
    arpa.write(model, out)
    result = {"model": model_dir, "format": "arpa", "out": out, "ngrams": [len(t.keys) for t in model.tables]}
    report(result, json, f"wrote {out}")
