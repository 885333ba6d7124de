"""`lmladder tour CORPUS`: Wolfram's walk up the ladder on your corpus."""

from __future__ import annotations

from typing import Optional

import typer

from lmladder.cli.common import fmt


def tour(
    corpus: str = typer.Argument("tinyshakespeare", help="A registered corpus name, or a .txt file or folder."),
    out: Optional[str] = typer.Option(None, "--out", help="Save the figures (PNG) to this folder."),
    seed: int = typer.Option(0, "--seed", help="Seed for every sample (the tour is reproducible)."),
    length: int = typer.Option(120, "--length", help="Characters per sample."),
    seed_word: str = typer.Option("cat", "--seed-word", help="The word the word-pair samples start from."),
    gpt: Optional[str] = typer.Option(None, "--gpt", help="A trained GPT folder for the last step."),
    force: bool = typer.Option(False, "--force", help="Replace a tour's figures already in --out (never a folder of another kind)."),
) -> None:
    """A guided, reproducible walk up the ladder: letters, pairs, n-grams, words, a GPT."""
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    from lmladder import tour as lib
    from lmladder.atomic import check_output_dir
    from lmladder.cli.common import stdout_console
    from lmladder.errors import LadderError

    from lmladder.cli.common import utf8_problem

    problems = lib.check(length, seed) + [p for p in [utf8_problem(seed_word, "--seed-word")] if p]
    if force and not out:
        problems.append("--force replaces a tour already in --out, and there is no --out; add --out DIR or "
                        "leave out --force")
    if problems:
        raise LadderError("; ".join(problems))
    if out:
        check_output_dir(out, "lmladder-tour", None, force)
    gpt_model = lib.load_gpt(gpt) if gpt else None  # before anything is printed
    console = stdout_console()

    def show(step: lib.Step) -> None:
        # everything from the corpus or the user is shown as plain text, never read as rich markup
        console.rule(Text(step.title, style="bold"))
        console.print(Text(step.caption))
        if step.table:
            table = Table()
            for col in step.table[0]:
                table.add_column(col)
            for row in step.table:
                table.add_row(*[Text(repr(v) if isinstance(v, str) and v.strip() != v else
                                     (f"{v:.4f}" if isinstance(v, float) and v < 1e6 else fmt(v)))
                                for v in row.values()])
            console.print(table)
        for label, text in step.samples:
            console.print(Panel(Text(text), title=Text(label), title_align="left", expand=False))
        if step.figure:
            console.print(Text(f"figure: {step.figure}", style="dim"))

    if out:
        from pathlib import Path

        from lmladder import artifacts, corpora
        from lmladder.atomic import MARKER, write_json

        corpora.load(corpus)  # a bad corpus is an error before the folder is made
        Path(out).mkdir(parents=True, exist_ok=True)
        write_json(Path(out) / MARKER, artifacts.header("lmladder-tour", corpus=corpus, seed=seed))
    lib.run(corpus, out, seed, length, seed_word, gpt_model, on_step=show)
