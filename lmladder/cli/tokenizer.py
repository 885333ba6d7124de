"""`lmladder tokenizer train|encode|decode|stats`."""

from __future__ import annotations

import json as jsonlib
import re
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from lmladder.cli.common import JSON_OPTION, emit_json, fmt, stdout_console, report
from lmladder.errors import LadderError

app = typer.Typer(help="Train, inspect and measure tokenizers (byte-level BPE, or characters).",
                  no_args_is_help=True)

KINDS = ("bpe", "char")
DIR_ARG = typer.Argument(..., help="A tokenizer folder written by 'lmladder tokenizer train'.")
FILE_OPTION = typer.Option(None, "--file", "-f", help="Read the input from this file ('-' for stdin).")


@app.command("train")
def train(
    corpus: str = typer.Argument("tinyshakespeare", help="A registered corpus name, or a .txt file or folder."),
    out: str = typer.Option(..., "--out", help="Folder to write the tokenizer to (created atomically)."),
    vocab_size: Optional[int] = typer.Option(None, "--vocab-size",
                                             help="Tokens in the vocabulary, <|endoftext|> included (bpe; default 4096)."),
    min_frequency: Optional[int] = typer.Option(None, "--min-frequency",
                                                help="A pair must occur this often to be merged (bpe; default 2)."),
    kind: str = typer.Option("bpe", "--kind", help="bpe (byte-level BPE) or char (the train split's characters)."),
    split: Optional[str] = typer.Option(None, "--split", help="TRAIN,VAL,TEST fractions (default: the corpus's)."),
    force: bool = typer.Option(False, "--force", help="Replace a tokenizer already in --out (never a folder of another kind)."),
    json: bool = JSON_OPTION,
) -> None:
    """Train a tokenizer on the corpus's train split and save it as a self-describing folder."""
    from lmladder.atomic import check_output_dir

    if kind not in KINDS:
        raise LadderError(f"unknown --kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "char" and (vocab_size is not None or min_frequency is not None):
        raise LadderError("--vocab-size and --min-frequency are for --kind bpe; a char vocabulary is "
                          "every character of the train split")
    from lmladder.tokens import FORMAT

    check_output_dir(out, FORMAT, None, force)
    from lmladder import corpora

    if kind == "bpe":
        from lmladder import bpe

        defaults = bpe.BPESettings()
        settings = bpe.BPESettings(vocab_size=defaults.vocab_size if vocab_size is None else vocab_size,
                                   min_frequency=defaults.min_frequency if min_frequency is None else min_frequency)
        settings.check()  # before the corpus is read
        data = corpora.load(corpus)
        splits = data.split(split)
        tok: Any = bpe.train(splits.require("train"), settings, data.identity(), str(splits.spec))
    else:
        from lmladder import tokens

        data = corpora.load(corpus)
        splits = data.split(split)
        tok = tokens.char_tokenizer(data, splits.spec)
    tok.save(out)
    result = {"kind": kind, "out": out, "corpus": data.identity(), "split": str(splits.spec),
              "vocab_size": tok.vocab_size, "eot_id": tok.eot_id, "sha256": tok.hash}
    report(result, json, f"trained {kind} tokenizer ({tok.vocab_size:,} ids) on {data.name} ({splits.spec}) -> {out}")


def _read_input(text: Optional[str], file: Optional[str], what: str) -> str:
    """The text given as an argument, or read from --file (a UTF-8 file, or '-' for standard
    input, held to the same checks: not empty, not binary, valid UTF-8)."""
    if (text is None) == (file is None):
        raise LadderError(f"give the {what} either as an argument or with --file, not both or neither")
    from lmladder import textio

    if file is None:
        if not text:
            raise LadderError(f"the {what} is empty; give some {what} to work on")
        from lmladder.cli.common import utf8_problem

        problem = utf8_problem(text, f"the {what}")
        if problem:
            raise LadderError(problem + " (--file)")
        return text  # type: ignore[return-value]
    if file == "-":
        stream = getattr(sys.stdin, "buffer", None)
        data = stream.read() if stream is not None else sys.stdin.read().encode("utf-8", "surrogateescape")
        source = "standard input"
    else:
        data, source = textio.read_bytes(file, f"--file {file}"), file
    if not data:
        raise LadderError(f"{source} is empty; give some {what} to work on")
    return textio.decode_utf8(data, source)


def token_pieces(tok: Any) -> list[bytes]:
    """What each id spells, as bytes (the escape and eot as their names)."""
    if tok.kind == "bpe":
        from lmladder import bpe

        return bpe.token_bytes(tok)
    pieces = [ch.encode("utf-8") for ch in tok.vocab.chars]
    return pieces + [b"<esc>", b"<|endoftext|>"]


def _show(piece: bytes) -> str:
    return piece.decode("utf-8", "backslashreplace")


@app.command("encode")
def encode(
    folder: str = DIR_ARG,
    text: Optional[str] = typer.Argument(None, help="The text to encode (or use --file)."),
    file: Optional[str] = FILE_OPTION,
    json: bool = JSON_OPTION,
) -> None:
    """Show the token ids (and pieces) of a text."""
    from lmladder import tokens

    tok = tokens.load_tokenizer(folder)
    source = _read_input(text, file, "text")
    ids = tok.encode(source).tolist()
    pieces = token_pieces(tok)
    if json:
        emit_json({"ids": ids, "tokens": [_show(pieces[i]) for i in ids], "chars": len(source)})
        return
    typer.echo(f"{len(ids)} tokens for {len(source)} characters")
    typer.echo(" ".join(map(str, ids)))
    typer.echo(" ".join(repr(_show(pieces[i])) for i in ids))


_ID_HINT = "token ids are whole numbers >= 0, e.g. 'lmladder tokenizer decode DIR 72 101'"


def _id_of(item: Any, where: str, vocab_size: int, given: str) -> int:
    """One token id: a non-negative whole number inside the vocabulary. `item` is `given` as an
    "argument" or in a whitespace-separated "file" (text: digits), or as a "json" value (an
    integer, not a bool, a float or a string)."""
    if isinstance(item, str) and given != "json":
        digits = re.fullmatch(r"([+-]?)0*([0-9]+)", item.strip())
        if digits is None:
            shown = item if len(item) <= 40 else item[:40] + "..."
            extra = " (nor an option of this command)" if given == "argument" and item.startswith("-") else ""
            raise LadderError(f"{where} ({shown}) is not a token id{extra}: {_ID_HINT}")
        sign, number = digits.groups()
        item = int(number) if len(number) <= 30 else vocab_size + 10**30  # past any vocabulary, not parsed
        item = -item if sign == "-" else item
    if type(item) is not int:  # bool is an int subclass; floats, strings, lists, objects, null are not ids
        shown = jsonlib.dumps(item)
        shown = shown if len(shown) <= 40 else shown[:40] + "..."
        raise LadderError(f"{where} ({shown}) is not a token id: {_ID_HINT}")
    if item < 0:
        raise LadderError(f"{where} is {item}, a negative number: {_ID_HINT}")
    if item >= vocab_size:
        raise LadderError(f"{where} is id {item if item < 10**30 else 'with over 30 digits'}, outside this "
                          f"tokenizer's range 0..{vocab_size - 1}")
    return item


def _parse_ids(args: List[str], file: Optional[str], vocab_size: int) -> list[int]:
    """The ids from the arguments, or from --file: a JSON list of ids, `lmladder tokenizer encode
    --json`'s object (its "ids"), or whitespace-separated ids."""
    if args and file is not None:
        raise LadderError("give the ids either as arguments or with --file, not both")
    if not args and file is None:
        raise LadderError("give the token ids to decode as arguments or with --file, e.g. "
                          "'lmladder tokenizer decode DIR 72 101'")
    items: list[Any] = list(args)
    given = "argument" if file is None else "file"
    if file is not None:
        source = "standard input" if file == "-" else file
        raw = _read_input(None, file, "token ids").strip()
        if raw[:1] in ("[", "{"):
            try:
                value = jsonlib.loads(raw)
            except (ValueError, RecursionError):  # bad JSON, or an integer of over 4,300 digits
                raise LadderError(f"{source} is not valid JSON; give a JSON list of ids or whitespace-separated ids")
            if isinstance(value, dict):
                if not isinstance(value.get("ids"), list):
                    raise LadderError(f"{source} is a JSON object without an \"ids\" list; give a JSON list of ids "
                                      "(or the output of 'lmladder tokenizer encode --json')")
                value = value["ids"]
            items, given = value, "json"
        else:
            items = raw.split()
        if not items:
            raise LadderError(f"{source} holds no token ids; give at least one")
    return [_id_of(item, f"id argument {n + 1}" if file is None else f"item {n + 1} of {source}", vocab_size, given)
            for n, item in enumerate(items)]


@app.command("decode", context_settings={"ignore_unknown_options": True})  # -1: an id to refuse by name
def decode(
    folder: str = DIR_ARG,
    ids: Optional[List[str]] = typer.Argument(None, help="Token ids (or use --file: whitespace-separated or JSON)."),
    file: Optional[str] = FILE_OPTION,
    json: bool = JSON_OPTION,
) -> None:
    """Turn token ids back into text (printed exactly, with no newline added)."""
    from lmladder import tokens

    tok = tokens.load_tokenizer(folder)
    id_list = _parse_ids(list(ids or []), file, tok.vocab_size)
    text = tok.decode(id_list)
    if json:
        emit_json({"text": text, "ids": len(id_list)})
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def compute_stats(tok: Any, documents: list[str], top: int = 10) -> dict[str, Any]:
    """How the tokenizer cuts `documents`: characters, bytes and words per token, vocabulary use."""
    import numpy as np

    from lmladder.metrics import text_counts

    chars, nbytes, words = text_counts(documents)
    encoded = tok.encode_batch(documents)
    ids = np.concatenate(encoded) if encoded else np.zeros(0, np.int64)
    n = int(ids.size)
    used = np.unique(ids)
    pieces = token_pieces(tok)
    counts = np.bincount(ids, minlength=tok.vocab_size) if n else np.zeros(tok.vocab_size, np.int64)
    regular = [i for i in range(tok.vocab_size) if i != tok.eot_id and pieces[i] != b"<esc>"]
    longest = sorted(regular, key=lambda i: (-len(pieces[i]), i))[:top]
    return {
        "kind": tok.kind,
        "vocab_size": tok.vocab_size,
        "chars": chars,
        "bytes": nbytes,
        "words": words,
        "tokens": n,
        "chars_per_token": chars / n if n else None,
        "bytes_per_token": nbytes / n if n else None,
        "tokens_per_word": n / words if words else None,
        "vocab_used": int(used.size),
        "vocab_used_share": used.size / tok.vocab_size,
        "longest_tokens": [{"id": i, "token": _show(pieces[i]), "bytes": len(pieces[i]), "count": int(counts[i])}
                           for i in longest],
        "most_frequent": [{"id": int(i), "token": _show(pieces[i]), "count": int(counts[i])}
                          for i in np.argsort(-counts, kind="stable")[:top] if counts[i]],
    }


@app.command("stats")
def stats(
    folder: str = DIR_ARG,
    corpus: Optional[str] = typer.Argument(
        None, help="A registered corpus name, or a .txt file or folder (default: the one it was trained on)."),
    split: Optional[str] = typer.Option(
        None, "--split", help="TRAIN,VAL,TEST fractions (default: the tokenizer's, for its own corpus)."),
    json: bool = JSON_OPTION,
) -> None:
    """Measure the tokenizer on the corpus's val split."""
    from lmladder import artifacts, corpora, tokens

    tok = tokens.load_tokenizer(folder)
    header = artifacts.read_header(folder, tokens.FORMAT, what="tokenizer")
    data = corpora.load(corpus) if corpus else corpora.load_recorded(header.get("corpus"), f"the tokenizer {folder}")
    own = data.sha256 == (header.get("corpus") or {}).get("sha256")
    splits = data.split(split or (header.get("split") if own else None))
    result = {"tokenizer": str(Path(folder)), "corpus": data.identity(), "split": str(splits.spec),
              "on": "val", **compute_stats(tok, splits.require("val"))}
    if json:
        emit_json(result)
        return
    from rich.table import Table

    console = stdout_console()
    table = Table(title=f"{result['tokenizer']} ({tok.kind}) on {data.name} val", show_header=False)
    for key in ("vocab_size", "chars", "bytes", "words", "tokens", "chars_per_token", "bytes_per_token",
                "tokens_per_word", "vocab_used", "vocab_used_share"):
        table.add_row(key, fmt(result[key]))
    console.print(table)
    longest = Table(title="longest tokens")
    for col in ("id", "token", "bytes", "count in val"):
        longest.add_column(col)
    for row in result["longest_tokens"]:
        longest.add_row(str(row["id"]), repr(row["token"]), str(row["bytes"]), fmt(row["count"]))
    console.print(longest)
