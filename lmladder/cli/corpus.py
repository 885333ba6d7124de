"""`lmladder corpus list|get|info`."""

from __future__ import annotations

from typing import Optional

import typer

from lmladder.cli.common import JSON_OPTION, emit_json, fmt, stdout_console

app = typer.Typer(help="Find, fetch and describe corpora.", no_args_is_help=True)

CORPUS_ARG = typer.Argument("tinyshakespeare", help="A registered corpus name, or a .txt file or folder of them.")
SPLIT_OPTION = typer.Option(None, "--split", help="TRAIN,VAL,TEST fractions, e.g. 0.9,0.1,0 (append @char to cut mid-line).")


@app.command("list")
def list_corpora(json: bool = JSON_OPTION) -> None:
    """List the registered corpora."""
    from lmladder import corpora, home

    rows = []
    for name, spec in corpora.registry().items():
        files = spec.get("files", [])
        installed = bool(files) and all((home.corpora_dir() / f["path"]).is_file() for f in files)
        rows.append({
            "name": name,
            "description": spec.get("description", ""),
            "files": len(files),
            "bytes": sum(f["bytes"] for f in files) if files else None,
            "synthetic": "generator" in spec,
            "installed": installed or "generator" in spec,
            "licence": spec.get("licence", ""),
        })
    if json:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table(title="registered corpora")
    for col in ("name", "files", "bytes", "installed", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], "synthetic" if r["synthetic"] else str(r["files"]), fmt(r["bytes"]),
                      "yes" if r["installed"] else "no", r["description"])
    stdout_console().print(table)


@app.command("get")
def get(name: str = typer.Argument(..., help="A registered corpus name."), json: bool = JSON_OPTION) -> None:
    """Install a registered corpus into $LMLADDER_HOME/corpora, verified by sha256.

    Looks in $LMLADDER_HOME, then $LMLADDER_MIRROR, then downloads from the public address."""
    from lmladder import corpora

    paths = corpora.get(name)
    if json:
        emit_json({"name": name, "files": [str(p) for p in paths]})
    else:
        for p in paths:
            typer.echo(str(p))


def describe(name: str, split: Optional[str]) -> dict:
    from lmladder import corpora

    corpus = corpora.load(name)
    splits = corpus.split(split)
    text_lines = sum(d.count("\n") + (0 if d.endswith("\n") else 1) for d in corpus.documents)
    alphabet = set()
    for d in corpus.documents:
        alphabet.update(set(d))
    info = {
        "name": corpus.name,
        "kind": corpus.kind,
        "sha256": corpus.sha256,
        "documents": len(corpus.documents),
        "chars": sum(len(d) for d in corpus.documents),
        "bytes": sum(len(d.encode("utf-8")) for d in corpus.documents),
        "lines": text_lines,
        "words": sum(len(d.split()) for d in corpus.documents),
        "alphabet_size": len(alphabet),
        "split": str(splits.spec),
        "splits": {
            k: {
                "chars": sum(len(d) for d in docs),
                "bytes": sum(len(d.encode("utf-8")) for d in docs),
                "lines": sum(d.count("\n") + (0 if d.endswith("\n") else 1) for d in docs),
                "documents": len(docs),
            }
            for k, docs in splits.parts.items()
        },
    }
    info.update({k: v for k, v in corpus.meta.items() if k in ("description", "licence", "entropy_bits_per_char")})
    if "entropy_bits_per_char" in corpus.meta:
        info["generator"] = {k: v for k, v in corpus.meta.items()
                             if k not in ("description", "licence", "entropy_bits_per_char")}
    return info


@app.command("info")
def info(name: str = CORPUS_ARG, split: Optional[str] = SPLIT_OPTION, json: bool = JSON_OPTION) -> None:
    """Describe a corpus: size, alphabet, and its train/val/test splits."""
    data = describe(name, split)
    if json:
        emit_json(data)
        return
    from rich.table import Table

    console = stdout_console()
    table = Table(title=f"{data['name']} ({data['kind']}, sha256 {data['sha256'][:12]}…)", show_header=False)
    for key in ("documents", "chars", "bytes", "lines", "words", "alphabet_size", "split"):
        table.add_row(key, fmt(data[key]))
    if "entropy_bits_per_char" in data:
        table.add_row("true entropy (bits/char)", f"{data['entropy_bits_per_char']:.6f}")
    console.print(table)
    splits = Table(title="splits")
    for col in ("split", "documents", "chars", "bytes", "lines"):
        splits.add_column(col, justify="right")
    for k, v in data["splits"].items():
        splits.add_row(k, fmt(v["documents"]), fmt(v["chars"]), fmt(v["bytes"]), fmt(v["lines"]))
    console.print(splits)
