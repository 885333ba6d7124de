"""N-gram folders on disk: count folders and model folders, Parquet tables (lmladder.schemas).

Count folders (`lmladder ngram count` writes them, `lmladder ngram stats` reads them):

    lmladder.json     {"format": "lmladder-ngram-counts", unit, order, corpus, split, tokenisation, ...}
    vocab.parquet     id -> unit (ngram_vocab)
    order<n>.parquet  every n-gram of order n with its raw and Kneser-Ney adjusted count (ngram_counts)

Model folders (`lmladder ngram train` writes them; lmladder.registry loads them):

    lmladder.json     {"format": "lmladder-model", "kind": "ngram", config, model: {bos, escape, eos, ...},
                       spelling: the same for a word model's speller, or null}
    vocab.parquet     id -> unit (ngram_vocab)
    order<n>.parquet  every stored n-gram with ln p and ln backoff, or count and context total (ngram_model)
    spelling-*.parquet  the speller's vocabulary and tables, for an open-vocabulary word model
    ngram.bin         the same tables in the memory-mapped binary form scoring loads (lmladder.ngrambin;
                      spelling-ngram.bin the speller's); lmladder.json's model.binary records its
                      size and CRC-32. Folders written before it, and --kenlm-compat models (which
                      cannot be scored), have none and load from Parquet.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from lmladder import artifacts, ngrambin, wordtok
from lmladder import counts as counting
from lmladder.atomic import MARKER, atomic_dir, write_json
from lmladder.config import field_type, of_type
from lmladder.errors import LadderError
from lmladder.ngrammodel import NgramConfig, NgramModel, Tables
from lmladder.ngramunits import BOS_NAME, UNK_NAME, letter_units, word_stream
from lmladder.vocab import CharVocab

FORMAT = "lmladder-ngram-counts"


# --- count folders ---------------------------------------------------------------------------


def _stream(config: NgramConfig, documents):
    """Units (every word seen, for word units: counting keeps them all), boundary, stream, rule."""
    if config.unit == "char":
        units, bos, esc, eos, seq = letter_units(documents)
        return units, bos, seq, "characters (Unicode code points); <s> = document boundary"
    flat = sorted({u for d in documents for u in wordtok.units(d)})
    if not flat:
        raise LadderError("the train split is empty; give a corpus with text in it")
    units = flat + [UNK_NAME, BOS_NAME]
    seq, _ = word_stream(documents, {u: i for i, u in enumerate(flat)}, len(units) - 1, len(flat))
    return units, len(units) - 1, seq, "word units: " + wordtok.RULE


def count_corpus(config: NgramConfig, splits, corpus: dict[str, Any], out, memory_bytes) -> dict[str, Any]:
    import pyarrow as pa

    from lmladder import schemas

    train = splits.require("train")
    units, bos, seq, rule = _stream(config, train)
    c = counting.count(seq, config.order, len(units), bos, memory_bytes)
    # sparsity: which val n-grams were never seen in train
    unseen = [None] * config.order
    val = splits["val"]
    if any(val):
        index = {u: i for i, u in enumerate(units) if i != bos}
        if config.unit == "char":
            cv = CharVocab(units[:-2])
            vseq = np.concatenate([x for d in val for x in (np.array([bos]), cv.encode(d))])
        else:
            vseq, _ = word_stream(val, index, bos, len(units) - 2)
        probe = NgramModel(NgramConfig(unit=config.unit, order=config.order), units, bos, len(units) - 2, None,
                           [Tables(c.keys(n), np.zeros(0), np.zeros(0)) for n in range(1, config.order + 1)])
        idx = probe.positions(vseq)
        start = np.flatnonzero(vseq == bos)
        since = np.arange(len(vseq)) - start[np.searchsorted(start, np.arange(len(vseq)), side="right") - 1]
        for n in range(1, config.order + 1):
            real = (since >= n)  # a full n-gram of real units ends here
            if n == 1:
                hit = real & (c.tables[0].count[np.where(vseq == bos, 0, vseq)] > 0)
            else:
                hit = real & (idx[n - 1] >= 0)
            total = int(real.sum())
            unseen[n - 1] = (1 - hit.sum() / total) if total else None
    orders = []
    for n in range(1, config.order + 1):
        t = c.tables[n - 1]
        real = ~t.bos
        orders.append({"order": n, "types": int(np.sum(real & (t.count > 0))), "tokens": int(t.count[real].sum()),
                       "singletons": int(np.sum(real & (t.count == 1))),
                       "possible": float(len(units) - 2) ** n, "val_unseen": unseen[n - 1]})
    with atomic_dir(out) as tmp:
        schemas.write_table(pa.table({"id": np.arange(len(units), dtype=np.int32), "unit": units}),
                            tmp / "vocab.parquet", "ngram_vocab", {"unit": config.unit})
        for n in range(1, config.order + 1):
            t = c.tables[n - 1]
            model = NgramModel(NgramConfig(unit=config.unit, order=n), units, bos, len(units) - 2, None,
                               [Tables(c.keys(k), np.zeros(0), np.zeros(0)) for k in range(1, n + 1)])
            table = pa.table({"ngram": readable(model, n), "ctx": t.ctx, "word": t.word.astype(np.int32),
                              "count": t.count, "adjusted": t.adjusted})
            schemas.write_table(table, tmp / f"order{n}.parquet", "ngram_counts",
                                {"unit": config.unit, "order": n, "corpus": corpus["name"],
                                 "corpus_sha256": corpus["sha256"], "tokenisation": rule})
        head = artifacts.header(FORMAT, unit=config.unit, order=config.order, corpus=corpus,
                                split=str(splits.spec), tokenisation=rule, vocab_size=len(units), orders=orders)
        write_json(tmp / MARKER, head)
    return {"out": str(out), **{k: head[k] for k in ("unit", "order", "corpus", "split", "orders")}}


def stats(folder) -> dict[str, Any]:
    import pyarrow.parquet as pq


    head = artifacts.read_header(folder, FORMAT, what="n-gram counts folder")
    for n in range(1, int(head.get("order", 0)) + 1):  # refuse a damaged folder, not just a header
        path = Path(folder) / f"order{n}.parquet"
        try:
            meta = pq.read_schema(path).metadata or {}
        except FileNotFoundError:
            raise LadderError(f"{path} is missing; rebuild the counts folder") from None
        except Exception as exc:
            reason = " ".join(str(exc).split())  # (pyarrow's messages end in a newline)
            raise LadderError(f"{path} is not a readable Parquet file ({reason}); rebuild it") from None
        if meta.get(b"lmladder.table") != b"ngram_counts":
            raise LadderError(f"{path} is not an lmladder ngram_counts table; rebuild it")
    return {k: head[k] for k in ("unit", "order", "corpus", "split", "tokenisation", "orders")}


# --- model folders ----------------------------------------------------------------------------


def readable(model: NgramModel, n: int, ids: np.ndarray | None = None, units=None):
    """Each stored n-gram of order n as its list of unit strings (an Arrow list array); `ids`:
    their unit ids (ngram_ids), and `units` the units as an Arrow array, when the caller has them."""
    import pyarrow as pa

    ids = model.ngram_ids(n) if ids is None else ids
    units = pa.array(model.units, pa.string()) if units is None else units
    values = units.take(pa.array(ids.ravel()))
    return pa.ListArray.from_arrays(pa.array(np.arange(0, ids.size + 1, n, dtype=np.int32)), values)


def save(model: NgramModel, out: str | Path, corpus: dict[str, Any], split: str) -> None:
    """The model (and a word model's speller) as a self-describing folder: Parquet tables, a
    row group at a time, and beside them (in a thread) the binary form (lmladder.ngrambin)."""
    from concurrent.futures import ThreadPoolExecutor

    parts = [("", model)] + ([("spelling-", model.spelling)] if model.spelling is not None else [])
    # the binary is the form `score` maps; a --kenlm-compat model cannot be scored (it hides
    # unknown words behind <unk>): it is made for its ARPA file, and loads from Parquet
    binary = not model.config.kenlm_compat
    with atomic_dir(out) as tmp, ThreadPoolExecutor(2) as pool:  # Arrow's encoder and numpy release the GIL
        binaries = {prefix: pool.submit(ngrambin.write, m, tmp / ngrambin.file_name(prefix)) for prefix, m in parts
                    if binary}
        for job in [job for prefix, m in parts for job in _write_tables(m, tmp, prefix, pool)]:
            job.result()
        meta = {prefix: _model_meta(m, tmp, prefix, binaries[prefix].result() if binary else None)
                for prefix, m in parts}
        head = artifacts.header(
            "lmladder-model", kind="ngram", unit=model.config.unit, corpus=corpus, split=split,
            config=asdict(model.config), parameters=model.parameters, model=meta[""], spelling=meta.get("spelling-"))
        write_json(tmp / MARKER, head)


def _model_meta(m: NgramModel, folder: Path, prefix: str, binary: dict[str, Any] | None) -> dict[str, Any]:
    """A part's entry in lmladder.json; `binary` (None: none written) also records its Parquet
    tables' sizes, so a folder whose tables were damaged is refused even where scoring reads
    only the binary."""
    names = [f"{prefix}vocab.parquet"] + [f"{prefix}order{n}.parquet" for n in range(1, m.order + 1)]
    if binary is not None:
        binary = {**binary, "tables": {name: (folder / name).stat().st_size for name in names}}
    return {"config": asdict(m.config), "bos": m.bos, "escape": m.escape, "eos": m.eos,
            "order": m.order, "meta": m.meta, "binary": binary}


def _check_tables(folder: Path, binary: dict[str, Any]) -> None:
    for name, size in (binary.get("tables") or {}).items():
        path = folder / Path(str(name)).name
        if not path.is_file():
            raise LadderError(f"{path} is missing; rebuild the model")
        if path.stat().st_size != size:
            raise LadderError(f"{path} has changed since it was written ({path.stat().st_size} bytes, not "
                              f"{size}): it is damaged or from another model; rebuild the model")


ROWS_A_GROUP = 1 << 18  # n-grams a Parquet row group: the readable column of one group is ~10 MB


def ngram_ids(model: NgramModel, n: int, rows: np.ndarray) -> np.ndarray:
    """(len(rows), n) int32 unit ids of the stored n-grams of order n at `rows`, read back
    through each order's context row down to order 1."""
    V = np.uint64(model.V)
    ids = np.empty((len(rows), n), dtype=np.int32)
    for k in range(n, 0, -1):
        keys = model.tables[k - 1].keys.take(rows)
        ctx = keys // V
        ids[:, k - 1] = keys - ctx * V
        rows = ctx.astype(np.int64)
    return ids


def _write_tables(model: NgramModel, folder: Path, prefix: str, pool) -> list:
    """The vocabulary and every order's table, each a job for `pool` (the jobs are returned),
    written a row group of ROWS_A_GROUP n-grams at a time (so the readable list-of-strings
    column never exists whole)."""
    import pyarrow as pa

    from lmladder import schemas

    units = pa.array(model.units, pa.string())

    def groups(n: int, t: Tables):
        V = np.uint64(model.V)
        for at in range(0, max(len(t.keys), 1), ROWS_A_GROUP):
            rows = np.arange(at, min(at + ROWS_A_GROUP, len(t.keys)))
            keys = t.keys[at:at + len(rows)]
            ctx = keys // V
            yield pa.table({"ngram": readable(model, n, ngram_ids(model, n, rows), units), "ctx": ctx.astype(np.int64),
                            "word": (keys - ctx * V).astype(np.int32), "logp": t.logp[at:at + len(rows)],
                            "backoff": t.backoff[at:at + len(rows)]})

    schemas.write_table(pa.table({"id": np.arange(model.V, dtype=np.int32), "unit": model.units}),
                        folder / f"{prefix}vocab.parquet", "ngram_vocab", {"unit": model.config.unit})
    return [pool.submit(schemas.write_batches, groups(n, t), folder / f"{prefix}order{n}.parquet", "ngram_model",
                        {"order": n, "unit": model.config.unit, "smoothing": model.config.smoothing},
                        ("word", "backoff"))  # few distinct values; ctx and logp are mostly distinct, and
            # the n-grams' units plain: a word 4-gram table wrote in 0.77 s (105.6 MB) so, 0.88 s (85.7 MB)
            # with them dictionary-encoded too
            for n, t in enumerate(model.tables, 1)]


def load(folder: Path, header: dict[str, Any]) -> NgramModel:
    """The model a folder written by `save` holds (`header` is its lmladder.json)."""
    model = _load_part(folder, header.get("model"), "")
    if header.get("spelling"):
        model.spelling = _load_part(folder, header["spelling"], "spelling-")
    elif model.config.unit == "word" and not model.config.kenlm_compat:  # a compat model has <unk> instead
        raise LadderError(f"{folder / MARKER} is damaged: a word model without the letter model that spells its "
                          "unknown words; rebuild it")
    return model


def _checked(folder: Path, info: dict[str, Any]) -> NgramConfig:
    """An n-gram part's config, with the checks `lmladder ngram train` makes and its fields'
    types, and the order of its tables: an edited lmladder.json is refused, never half-loaded."""
    damaged = f"{folder / MARKER} is damaged"
    try:
        config = NgramConfig(**info["config"])
        wrong = [f"{f.name} {getattr(config, f.name)!r}" for f in dataclasses.fields(config)
                 if not of_type(getattr(config, f.name), field_type(f))]
        if wrong:
            raise LadderError(f"of the wrong type: {', '.join(wrong)}")
        config.check()
    except (TypeError, LadderError) as exc:
        raise LadderError(f"{damaged} ({exc}); rebuild the model") from None
    if info.get("order") != config.order:
        raise LadderError(f"{damaged} (its tables' order {info.get('order')!r} is not its config's {config.order}); "
                          "rebuild the model")
    return config


def _check_ids(folder: Path, model: NgramModel) -> NgramModel:
    """The model's special units are units of its vocabulary, and a count model has its total."""
    for name in ("bos", "escape", "eos"):
        value = getattr(model, name)
        if value is not None and (type(value) is not int or not 0 <= value < len(model.units)):
            raise LadderError(f"{folder / MARKER} is damaged ({name} {value!r} is not one of its {len(model.units)} "
                              "units); rebuild the model")
    if model.config.smoothing != "kn" and not isinstance((model.meta or {}).get("tokens"), (int, float)):
        raise LadderError(f"{folder / MARKER} is damaged (a {model.config.smoothing} model without its token count); "
                          "rebuild the model")
    return model


def _load_part(folder: Path, info: Any, prefix: str) -> NgramModel:
    if not isinstance(info, dict) or "config" not in info:
        raise LadderError(f"{folder / MARKER} does not describe an n-gram model; rebuild it")
    config = _checked(folder, info)
    if info.get("binary") is not None:  # the memory-mapped form; folders written before it have none
        if isinstance(info["binary"], dict):
            _check_tables(folder, info["binary"])
        units, tables, mapping = ngrambin.load(folder / ngrambin.file_name(prefix), info["binary"], int(info["order"]))
        model = NgramModel(config, units, info["bos"], info["escape"], info["eos"], tables, info.get("meta", {}))
        model.mapping = mapping
        return _check_ids(folder, model)
    from lmladder import schemas

    units = schemas.read_table(folder / f"{prefix}vocab.parquet", "ngram_vocab").column("unit").to_pylist()
    V = np.uint64(len(units))
    tables = []
    for n in range(1, int(info["order"]) + 1):
        t = schemas.read_table(folder / f"{prefix}order{n}.parquet", "ngram_model")
        ctx = t.column("ctx").to_numpy().astype(np.uint64)
        word = t.column("word").to_numpy().astype(np.uint64)
        tables.append(Tables(ctx * V + word, t.column("logp").to_numpy(), t.column("backoff").to_numpy()))
    return _check_ids(folder, NgramModel(config, units, info["bos"], info["escape"], info["eos"], tables,
                                         info.get("meta", {})))
