"""Count folders: `lmladder ngram count` writes them, `lmladder ngram stats` reads them.

    lmladder.json     {"format": "lmladder-ngram-counts", unit, order, corpus, split, tokenisation, ...}
    vocab.parquet     id -> unit (ngram_vocab)
    order<n>.parquet  every n-gram of order n with its raw and Kneser-Ney adjusted count (ngram_counts)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lmladder import counts as counting
from lmladder.errors import LadderError

FORMAT = "lmladder-ngram-counts"


def _stream(config, documents):
    from lmladder import ngram, openvocab, wordtok

    if config.unit == "char":
        units, bos, esc, eos, seq = ngram.prepare(config, documents)
        return units, bos, seq, "characters (Unicode code points); <s> = document boundary"
    flat = sorted({u for d in documents for u in wordtok.units(d)})
    if not flat:
        raise LadderError("the train split is empty; give a corpus with text in it")
    units = flat + [ngram.UNK_NAME, ngram.BOS_NAME]
    seq, _ = openvocab.word_stream(documents, {u: i for i, u in enumerate(flat)}, len(units) - 1, len(flat))
    return units, len(units) - 1, seq, "word units: " + wordtok.RULE


def count_corpus(config, splits, corpus: dict[str, Any], out, memory_bytes) -> dict[str, Any]:
    import pyarrow as pa

    from lmladder import artifacts, ngram, schemas
    from lmladder.atomic import MARKER, atomic_dir, write_json

    train = splits.require("train")
    units, bos, seq, rule = _stream(config, train)
    c = counting.count(seq, config.order, len(units), bos, memory_bytes)
    # sparsity: which val n-grams were never seen in train
    unseen = [None] * config.order
    val = splits["val"]
    if any(val):
        index = {u: i for i, u in enumerate(units) if i != bos}
        if config.unit == "char":
            from lmladder.vocab import CharVocab

            cv = CharVocab(units[:-2])
            vseq = np.concatenate([x for d in val for x in (np.array([bos]), cv.encode(d))])
        else:
            from lmladder import openvocab

            vseq, _ = openvocab.word_stream(val, index, bos, len(units) - 2)
        probe = ngram.NgramModel(ngram.NgramConfig(unit=config.unit, order=config.order), units, bos,
                                 len(units) - 2, None,
                                 [ngram.Tables(c.keys(n), np.zeros(0), np.zeros(0)) for n in range(1, config.order + 1)])
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
            model = ngram.NgramModel(ngram.NgramConfig(unit=config.unit, order=n), units, bos, len(units) - 2, None,
                                     [ngram.Tables(c.keys(k), np.zeros(0), np.zeros(0)) for k in range(1, n + 1)])
            table = pa.table({"ngram": ngram.readable(model, n), "ctx": t.ctx, "word": t.word.astype(np.int32),
                              "count": t.count, "adjusted": t.adjusted})
            schemas.write_table(table, tmp / f"order{n}.parquet", "ngram_counts",
                                {"unit": config.unit, "order": n, "corpus": corpus["name"],
                                 "corpus_sha256": corpus["sha256"], "tokenisation": rule})
        head = artifacts.header(FORMAT, unit=config.unit, order=config.order, corpus=corpus,
                                split=str(splits.spec), tokenisation=rule, vocab_size=len(units), orders=orders)
        write_json(tmp / MARKER, head)
    return {"out": str(out), **{k: head[k] for k in ("unit", "order", "corpus", "split", "orders")}}


def stats(folder) -> dict[str, Any]:
    from lmladder import artifacts

    head = artifacts.read_header(folder, FORMAT, what="n-gram counts folder")
    for n in range(1, int(head.get("order", 0)) + 1):  # refuse a damaged folder, not just a header
        path = Path(folder) / f"order{n}.parquet"
        import pyarrow.parquet as pq

        try:
            meta = pq.read_schema(path).metadata or {}
        except FileNotFoundError:
            raise LadderError(f"{path} is missing; rebuild the counts folder") from None
        except Exception as exc:
            raise LadderError(f"{path} is not a readable Parquet file ({exc}); rebuild it") from None
        if meta.get(b"lmladder.table") != b"ngram_counts":
            raise LadderError(f"{path} is not an lmladder ngram_counts table; rebuild it")
    return {k: head[k] for k in ("unit", "order", "corpus", "split", "tokenisation", "orders")}
