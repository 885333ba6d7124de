"""ARPA files (the n-gram exchange format KenLM, SRILM and others read): log10 probabilities.

    \\data\\
    ngram 1=V
    ...
    \\1-grams:
    log10 p<TAB>w<TAB>log10 backoff
    ...
    \\end\\

Only Kneser-Ney models have the backoff form ARPA needs. A unit that contains whitespace (a
space or newline letter, a word unit with its leading space) cannot be written as an ARPA token,
so each whitespace character is written as <U+XXXX> (e.g. " the" -> "<U+0020>the").

Letter and open-vocabulary word models have a document boundary (written <s>) and an escape
(written <unk>) but no end symbol; KenLM refuses a file without </s>, so one is written with
log10 p = -99 (never predicted): score such files with KenLM without the end symbol
(`query -n`, or `Model.score(text, eos=False)`). For word models the ARPA file holds P(<unk> |
context) only, not the spelling model behind it.
"""

from __future__ import annotations

import gzip
import math
import re
from pathlib import Path

from lmladder.atomic import atomic_file
from lmladder.errors import LadderError
from lmladder.ngrammodel import NgramModel
from lmladder.ngramunits import BOS_NAME, EOS_NAME, UNK_NAME

_SPACE = re.compile(r"\s")


def token(unit: str) -> str:
    return _SPACE.sub(lambda m: f"<U+{ord(m.group()):04X}>", unit) if unit else "<empty>"


def write(model: NgramModel, path: str | Path) -> None:
    if model.config.smoothing != "kn":
        raise LadderError(f"ARPA needs a Kneser-Ney model (this one is {model.config.smoothing}); "
                          "train with --smoothing kn")
    names = [token(u) for u in model.units]
    if not model.config.kenlm_compat:
        names[model.bos] = BOS_NAME
        names[model.escape] = UNK_NAME
    ln10 = math.log(10)
    no_end = not model.config.kenlm_compat
    with atomic_file(path, "w") as out:
        out.write("\\data\\\n")
        for n, t in enumerate(model.tables, 1):
            out.write(f"ngram {n}={len(t.keys) + (no_end and n == 1)}\n")
        for n, t in enumerate(model.tables, 1):
            out.write(f"\n\\{n}-grams:\n")
            words = [names[i] for i in model.ngram_ids(n).ravel().tolist()]
            lp = t.logp / ln10
            bo = t.backoff / ln10
            last = n == len(model.tables)
            rows = []
            for r in range(len(t.keys)):
                g = " ".join(words[r * n:(r + 1) * n])
                p = 0.0 if (n == 1 and r == model.bos) else lp[r]
                rows.append(f"{p:.7g}\t{g}" if last else f"{p:.7g}\t{g}\t{bo[r]:.7g}")
            if no_end and n == 1:
                rows.append(f"-99\t{EOS_NAME}" + ("" if last else "\t0"))
            out.write("\n".join(rows) + "\n")
        out.write("\n\\end\\\n")


def read(path: str | Path) -> dict[tuple[str, ...], tuple[float, float]]:
    """{n-gram tokens: (log10 p, log10 backoff)} of an ARPA file (plain or .gz)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    out: dict[tuple[str, ...], tuple[float, float]] = {}
    order = 0
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.startswith("\\") and line.endswith("-grams:"):
                order = int(line[1:].split("-")[0])
                continue
            if not order or not line or line.startswith("\\"):
                continue
            fields = line.split("\t")
            out[tuple(fields[1].split(" "))] = (float(fields[0]), float(fields[2]) if len(fields) > 2 else 0.0)
    return out
