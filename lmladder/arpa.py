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
so each whitespace character is written as <U+XXXX> (e.g. " the" -> "<U+0020>the"); the tokens
of a --kenlm-compat model are written as lmplz writes them.

Letter and open-vocabulary word models have a document boundary (written <s>) and an escape
(written <unk>) but no end symbol; KenLM refuses a file without </s>, so one is written with
log10 p = -99 (never predicted): score such files with KenLM without the end symbol
(`query -n`, or `Model.score(text, eos=False)`). For word models the ARPA file holds P(<unk> |
context) only, not the spelling model behind it.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import re
import zlib
from pathlib import Path
from typing import Iterator, TextIO

import numpy as np

from lmladder.atomic import atomic_file
from lmladder.errors import LadderError
from lmladder.ngrammodel import NgramModel
from lmladder.ngramunits import BOS_NAME, EOS_NAME, UNK_NAME

_SPACE = re.compile(r"\s")


def token(unit: str) -> str:
    return _SPACE.sub(lambda m: f"<U+{ord(m.group()):04X}>", unit) if unit else "<empty>"


def unit_names(model: NgramModel) -> list[str]:
    """Each unit's ARPA token. A --kenlm-compat model's tokens are written as they are, as lmplz
    writes them (none holds a space, tab or newline; a no-break space or VT stays in its token)."""
    if model.config.kenlm_compat:
        return list(model.units)
    names = [token(u) for u in model.units]
    names[model.bos] = BOS_NAME
    names[model.escape] = UNK_NAME
    return names


def check_replaceable(path: str | Path) -> None:
    """--force replaces only an ARPA file (what a previous export wrote, plain or .gz) or an empty
    file, never any other file that happens to be at --out."""
    path = Path(path).expanduser()
    if not path.exists():
        return
    if not path.is_file():
        raise LadderError(f"--out {path} is not a regular file; give the name of an ARPA file to write")
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
        if head.startswith(b"\x1f\x8b"):  # a gzipped ARPA file
            with gzip.open(path, "rb") as handle:
                head = handle.read(256)
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: a damaged .gz
        raise LadderError(f"--out {path} exists and cannot be read ({exc}); --force replaces only an ARPA file: "
                          "choose another --out") from None
    if head and not head.lstrip().startswith(b"\\data\\"):
        raise LadderError(f"--out {path} exists and is not an ARPA file (it does not start with \\data\\); "
                          "--force replaces only a previous ARPA export: choose another --out, or move the file "
                          "away yourself")


@contextlib.contextmanager
def _text_out(path: str | Path) -> Iterator[TextIO]:
    """The ARPA text written atomically to `path`, gzipped where its name ends in .gz (as KenLM
    and read() take it; mtime 0, so the same model gives the same bytes)."""
    if not str(path).endswith(".gz"):
        with atomic_file(path, "w") as out:
            yield out
        return
    with atomic_file(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed, \
            io.TextIOWrapper(packed, encoding="utf-8") as out:
        yield out


def write(model: NgramModel, path: str | Path) -> None:
    if model.config.smoothing != "kn":
        raise LadderError(f"ARPA needs a Kneser-Ney model (this one is {model.config.smoothing}); "
                          "train with --smoothing kn")
    names = unit_names(model)
    ln10 = math.log(10)
    no_end = not model.config.kenlm_compat
    with _text_out(path) as out:
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
    out: dict[tuple[str, ...], tuple[float, float]] = {}
    for table in read_orders(path):
        for gram, p, bo in zip(table["ngram"].to_pylist(), table["log10p"].to_pylist(), table["log10bo"].to_pylist()):
            out[tuple(gram.split(" "))] = (p, bo)
    return out


def read_orders(path: str | Path) -> list:
    """Each order's entries of an ARPA file (plain or .gz) as an Arrow table (ngram: the tokens
    joined by single spaces; log10p; log10bo, 0 where a line has none), vectorised for files of
    millions of n-grams. Only "\\n" ends a line: a token may hold any other byte but space and tab."""
    import pyarrow as pa
    import pyarrow.compute as pc

    with (gzip.open if str(path).endswith(".gz") else open)(path, "rb") as handle:
        raw = handle.read()
    tables, end = [], 0
    while (head := raw.find(b"\\%d-grams:\n" % (len(tables) + 1), end)) >= 0:
        start = raw.index(b"\n", head) + 1
        end = raw.find(b"\n\\", start)  # an entry line starts with its number, never with a backslash
        lines = pc.list_flatten(pc.split_pattern(pa.array([raw[start:end]], pa.large_binary()), "\n"))
        fields = pc.split_pattern(lines.filter(pc.greater(pc.binary_length(lines), 0)), "\t")
        third = pc.list_slice(fields, 2, 3)
        backoff = np.zeros(len(fields))
        backoff[pc.list_parent_indices(third).to_numpy()] = _floats(pc.list_flatten(third))
        tables.append(pa.table({"ngram": pc.list_element(fields, 1).cast(pa.large_string()),
                                "log10p": _floats(pc.list_element(fields, 0)), "log10bo": backoff}))
    return tables


def _floats(texts) -> np.ndarray:
    import pyarrow as pa

    return texts.cast(pa.large_string()).cast(pa.float64()).to_numpy(zero_copy_only=False)


def model_orders(model: NgramModel) -> list:
    """A Kneser-Ney model's entries as read_orders gives a file's, at full precision (the
    written file rounds to 7 significant digits)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = pa.array(unit_names(model), pa.large_string())
    tables = []
    for n, t in enumerate(model.tables, 1):
        ids = model.ngram_ids(n)
        words = [names.take(pa.array(ids[:, k])) for k in range(n)]
        ngram = words[0] if n == 1 else pc.binary_join_element_wise(*words, pa.scalar(" ", pa.large_string()))
        tables.append(pa.table({"ngram": ngram, "log10p": t.logp / math.log(10), "log10bo": t.backoff / math.log(10)}))
    return tables


def compare(model: NgramModel, path: str | Path) -> list[dict]:
    """Entry for entry, a Kneser-Ney model against an ARPA file (KenLM's, say): compare_orders."""
    return compare_orders(model_orders(model), read_orders(path))


def compare_orders(ours: list, theirs: list) -> list[dict]:
    """Order by order (tables as read_orders gives them): n-grams on each side, how many are on
    one side only, and the largest differences of log10 p and log10 backoff over the n-grams on
    both (None where none are). N-grams are matched by hashing (pc.index_in), not by a join."""
    import pyarrow.compute as pc

    rows = []
    for n in range(1, max(len(ours), len(theirs)) + 1):
        a = ours[n - 1] if n <= len(ours) else None
        b = theirs[n - 1] if n <= len(theirs) else None
        size = {"ours": 0 if a is None else len(a), "theirs": 0 if b is None else len(b)}
        row = {"order": n, **size, "only_ours": size["ours"], "only_theirs": size["theirs"],
               "max_abs_log10p": None, "max_abs_log10bo": None}
        if a is not None and b is not None:
            at = pc.index_in(b["ngram"], value_set=a["ngram"]).to_numpy(zero_copy_only=False)
            found = ~np.isnan(at)
            mine = at[found].astype(np.int64)
            row["only_theirs"] = int((~found).sum())
            matched = np.zeros(len(a), dtype=bool)
            matched[mine] = True
            row["only_ours"] = int((~matched).sum())
            if len(mine):
                for key in ("log10p", "log10bo"):
                    diff = a[key].to_numpy()[mine] - b[key].to_numpy()[found]
                    row[f"max_abs_{key}"] = float(np.max(np.abs(diff)))
        rows.append(row)
    return rows
