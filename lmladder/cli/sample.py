"""`lmladder sample MODEL_DIR`: text from any saved rung, through the one sampler."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from lmladder.cli.common import JSON_OPTION, emit_json
from lmladder.errors import LadderError
from lmladder.rung import DEFAULT_MAX_NEW_CHARS


def sample(
    model_dir: str = typer.Argument(..., help="A model folder written by lmladder (any rung)."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Text to continue (default: start of a document)."),
    prompt_file: Optional[str] = typer.Option(None, "--prompt-file", help="Read the prompt from a UTF-8 file."),
    temperature: float = typer.Option(0.8, "--temperature", help="0 = greedy; T > 0 divides the logits by T."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="Keep exactly the k most likely units."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="Keep the smallest set of units whose mass reaches p."),
    seed: int = typer.Option(0, "--seed", help="Same model, prompt, settings and seed: same text."),
    max_new_chars: Optional[int] = typer.Option(
        None, "--max-new-chars", help=f"Characters to add (default {DEFAULT_MAX_NEW_CHARS})."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="Units (tokens) to add instead."),
    num_samples: int = typer.Option(1, "--num-samples", help="How many samples (drawn in parallel)."),
    stop: Optional[List[str]] = typer.Option(
        None, "--stop", help="End a sample where this text appears, cutting it off (repeatable)."),
    stream: bool = typer.Option(False, "--stream", help="Print text as it is produced (the first sample)."),
    report_novelty: bool = typer.Option(
        False, "--report-novelty",
        help="For each sample, the share of its word 4-grams (letter 8-grams for letter models) found verbatim in train."),
    json: bool = JSON_OPTION,
) -> None:
    """Sample text from a saved rung (any kind), through the one sampling loop."""
    from lmladder.generate import check_request, generate
    from lmladder.sampling import SampleSettings

    stop = list(stop or [])
    problems = check_request(max_new_chars, max_new_tokens, num_samples, seed, stop)
    if prompt is not None and prompt_file is not None:
        problems.insert(0, "give --prompt or --prompt-file, not both")
    from lmladder.cli.common import utf8_problem

    problems += [p for p in [utf8_problem(prompt, "--prompt")] + [utf8_problem(s, f"--stop {s!r}") for s in stop] if p]
    if stream and json:
        problems.append("--stream prints text, --json prints JSON: choose one")
    try:
        settings = SampleSettings(temperature, top_k, top_p)
    except LadderError as exc:
        problems.append(str(exc))
    if problems:
        raise LadderError("; ".join(problems))
    if prompt_file is not None:
        from lmladder import textio

        data = textio.read_bytes(prompt_file, f"--prompt-file {prompt_file}")
        if not data:
            raise LadderError(f"--prompt-file {prompt_file} is empty; give a file with the prompt in it, or leave "
                              "out --prompt-file to start at the beginning of a document")
        prompt = textio.decode_utf8(data, prompt_file)
    prompt = prompt or ""

    from lmladder import registry

    header = registry.model_header(model_dir)
    rung = registry.load_model(model_dir)
    on_text = None
    if stream:
        sys.stdout.write(prompt)

        def on_text(i: int, piece: str) -> None:
            if i == 0:
                sys.stdout.write(piece)
                sys.stdout.flush()

    texts = generate(rung, prompt, max_new_chars=max_new_chars, max_new_tokens=max_new_tokens, settings=settings,
                     seed=seed, num_samples=num_samples, stop=stop, on_text=on_text)
    scores = None
    if report_novelty:
        from lmladder import corpora, sampling

        name = (header.get("corpus") or {}).get("name")
        if not name:
            raise LadderError(f"--report-novelty needs the training corpus, and {model_dir} does not say which it was")
        try:
            corpus = corpora.load(name)
        except LadderError as exc:
            raise LadderError(f"--report-novelty needs the training corpus: {exc}") from None
        train_docs = corpus.split(header.get("split")).require("train")
        unit = "char" if header.get("unit", "char") == "char" else "word"
        scores = sampling.novelty([t[len(prompt):] for t in texts], train_docs, unit)
    if json:
        emit_json([{"text": t, "prompt": prompt, "seed": seed, "sample": i, "temperature": temperature,
                    "top_k": top_k, "top_p": top_p, **({"novelty": scores[i]} if scores else {})}
                   for i, t in enumerate(texts)])
        return
    if stream:
        sys.stdout.write("\n")
        texts_left = list(enumerate(texts))[1:]
    else:
        texts_left = list(enumerate(texts))
    for i, text in texts_left:
        if num_samples > 1:
            sys.stdout.write(f"--- sample {i} ---\n")
        sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))
    if scores:
        for i, s in enumerate(scores):
            shown = "n/a (too short)" if s is None else f"{s:.1%} of its n-grams occur in train"
            sys.stderr.write(f"sample {i}: {shown}\n")
