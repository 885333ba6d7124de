"""N-gram rungs: letter and word n-grams with maximum-likelihood, add-k or interpolated modified
Kneser-Ney estimates (Chen & Goodman 1998, as KenLM's lmplz computes them; Heafield et al. 2013).

All probabilities here are natural logs; ARPA files (lmladder.arpa) use log10.

Modified Kneser-Ney, order by order (counts from lmladder.counts, adjusted counts a):
    D1, D2, D3+ = closed form from the counts-of-counts t1..t4 of adjusted counts:
        Y = t1 / (t1 + 2 t2),  Dk = k - (k+1) Y t(k+1) / tk
    where that is undefined or out of range [0, k] (tiny or character data) the order falls
    back to D1=0.5, D2=1, D3+=1.5 (KenLM's --discount_fallback), so building never fails.
    u(w|h)   = (a(hw) - D(a(hw))) / sum_x a(hx)
    gamma(h) = (D1 N1(h) + D2 N2(h) + D3+ N3+(h)) / sum_x a(hx)
    p(w|h)   = u(w|h) + gamma(h) p(w|h'),   p(w|empty) = u(w) + gamma / (V - 1)
with V - 1 the predictable units (all but the boundary). A stored n-gram keeps p; an n-gram
that is a context keeps backoff gamma; an unseen n-gram is scored by backing off, exactly like
KenLM's query: log p(w|h) = log p(longest stored match) + sum of the log backoffs skipped.
Add-k: p(w|h) = (c(hw) + k) / (c(h) + k (V - 1)) in the longest context seen in training; mle is
add-k with k = 0 (it gives unseen n-grams probability 0, which scoring refuses).

Units: letters (Unicode code points, with lmladder.vocab's escape for unseen characters), word
units (lmladder.wordtok; open vocabulary, see lmladder.openvocab), or, in KenLM-compatible mode,
whitespace tokens of lines with <s>, </s> and <unk>.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lmladder import counts as counting
from lmladder.errors import LadderError
from lmladder.metrics import UnitScores
from lmladder.rung import Built
from lmladder.sampling import SampleSettings, choose, sample_rngs
from lmladder.vocab import CharVocab

SMOOTHINGS = ("kn", "addk", "mle")
UNITS = ("char", "word")
FALLBACK = (0.5, 1.0, 1.5)
BOS_NAME, EOS_NAME, UNK_NAME = "<s>", "</s>", "<unk>"


@dataclass
class NgramConfig:
    unit: str = "char"
    order: int = 5
    smoothing: str = "kn"
    k: float = 0.01  # add-k's pseudo-count
    min_count: int = 0  # open-vocabulary words: rarer words are spelled out letter by letter (0: tune on val)
    spelling_order: int = 6  # the letter n-gram that spells unknown words
    kenlm_compat: bool = False

    def check(self) -> None:
        problems = []
        if self.unit not in UNITS:
            problems.append(f"--unit must be char or word (got {self.unit!r})")
        if not 1 <= self.order <= counting.MAX_ORDER:
            problems.append(f"--order must be between 1 and {counting.MAX_ORDER} (got {self.order})")
        if self.smoothing not in SMOOTHINGS:
            problems.append(f"--smoothing must be one of {', '.join(SMOOTHINGS)} (got {self.smoothing!r})")
        if self.smoothing == "addk" and not self.k > 0:
            problems.append(f"add-k needs k > 0 (got {self.k})")
        if self.min_count < 0:
            problems.append(f"--min-count must be >= 0, 0 meaning tuned on val (got {self.min_count})")
        if problems:
            raise LadderError("; ".join(problems))


# --- estimation --------------------------------------------------------------------------


def discounts(adjusted: np.ndarray) -> tuple[tuple[float, float, float], bool]:
    """D1, D2, D3+ from counts-of-counts (Chen & Goodman eq. 26), and whether the fallback was used."""
    t = np.bincount(np.minimum(adjusted, 5), minlength=6)[:5].astype(np.float64)
    if t[1] == 0 or t[2] == 0 or t[3] == 0:
        return FALLBACK, True
    y = t[1] / (t[1] + 2 * t[2])
    d = tuple(float(j - (j + 1) * y * t[j + 1] / t[j]) for j in (1, 2, 3))
    if any(not (0 <= d[j - 1] <= j) for j in (1, 2, 3)):
        return FALLBACK, True
    return d, False  # type: ignore[return-value]


def _group_sums(ctx: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(ctx, weights=values, minlength=size)


def estimate_kn(c: counting.Counts) -> tuple[list[np.ndarray], list[np.ndarray], list[dict]]:
    """ln p and ln backoff of every stored n-gram, and each order's discounts."""
    V, N = c.vocab_size, c.order
    logp, backoff, info = [], [], []
    gammas: list[np.ndarray] = []
    for n in range(1, N + 1):
        t = c.tables[n - 1]
        a = t.adjusted.astype(np.float64)
        (d1, d2, d3), fell = discounts(t.adjusted)
        info.append({"order": n, "ngrams": int(len(t)), "D1": d1, "D2": d2, "D3+": d3, "fallback": fell})
        dvec = np.array([0.0, d1, d2, d3])
        dk = dvec[np.minimum(t.adjusted, 3)]
        nctx = 1 if n == 1 else len(c.tables[n - 2])
        denom = _group_sums(t.ctx, a, nctx)
        mass = _group_sums(t.ctx, dk * (t.adjusted > 0), nctx)
        with np.errstate(divide="ignore", invalid="ignore"):
            gamma = np.where(denom > 0, mass / denom, 1.0)
            u = np.where(denom[t.ctx] > 0, (a - dk) / denom[t.ctx], 0.0)
        if n == 1:
            p = u + gamma[0] / (V - 1)
        else:
            p = u + gamma[t.ctx] * np.exp(logp[n - 2][t.suffix])
        with np.errstate(divide="ignore"):
            lp = np.log(p)
        if n == 1:
            lp[c.bos] = 0.0  # never predicted (KenLM writes 0 too)
        logp.append(lp)
        gammas.append(gamma)
    for n in range(1, N):
        g = gammas[n]  # gamma of each order-n n-gram as a context of order n+1
        has = np.bincount(c.tables[n].ctx, minlength=len(c.tables[n - 1])) > 0
        backoff.append(np.where(has, np.log(g), 0.0))
    backoff.append(np.zeros(len(c.tables[N - 1])))
    return logp, backoff, info


# --- the model ----------------------------------------------------------------------------


@dataclass
class Tables:
    """What scoring needs of one order: sorted keys (ctx * V + word) and their values."""

    keys: np.ndarray  # uint64
    logp: np.ndarray  # ln p(w|h) (kn) or raw count (addk/mle)
    backoff: np.ndarray  # ln backoff (kn) or context total (addk/mle) of the n-gram as a context


class NgramModel:
    """An n-gram rung. Units are ids into `units` (their spellings); `bos` is the boundary,
    `escape` the unknown/escape unit, `eos` the end of a line (KenLM-compatible mode only)."""

    def __init__(self, config: NgramConfig, units: list[str], bos: int, escape: int, eos: int | None,
                 tables: list[Tables], meta: dict[str, Any] | None = None, spelling: "NgramModel | None" = None):
        self.config = config
        self.units = units
        self.V = len(units)
        self.bos, self.escape, self.eos = bos, escape, eos
        self.tables = tables
        self.meta = meta or {}
        self.spelling = spelling
        self._index: dict[str, int] | None = None
        self.char_vocab = CharVocab([u for i, u in enumerate(units) if i not in (bos, escape, eos)]) \
            if config.unit == "char" and not config.kenlm_compat else None

    @property
    def order(self) -> int:
        return len(self.tables)

    @property
    def parameters(self) -> int:
        return int(sum(len(t.keys) for t in self.tables))

    # -- units ---------------------------------------------------------------------------
    def index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {u: i for i, u in enumerate(self.units) if i not in (self.bos, self.escape, self.eos)}
        return self._index

    def encode(self, documents: Sequence[str]) -> tuple[np.ndarray, list[list[str]] | None]:
        """The unit stream (BOS before each document) and, for word units, the units' text."""
        from lmladder import openvocab

        if self.config.kenlm_compat:
            return kenlm_stream(documents, self.index(), self.bos, self.eos, self.escape), None
        if self.char_vocab is not None:
            parts = []
            for doc in documents:
                parts += [np.array([self.bos]), self.char_vocab.encode(doc)]
            return (np.concatenate(parts) if parts else np.zeros(0, np.int64)), None
        return openvocab.word_stream(documents, self.index(), self.bos, self.escape)

    # -- scoring ---------------------------------------------------------------------------
    def positions(self, seq: np.ndarray, starts: np.ndarray | None = None) -> list[np.ndarray]:
        """For each order n, the table index of the n-gram ending at each position (-1: none).
        `starts` marks units whose context is empty (nothing before them is visible)."""
        V = np.uint64(self.V)
        is_bos = seq == self.bos
        if starts is not None:
            is_bos = is_bos | starts
        idx = [seq.astype(np.int64)]
        for n in range(2, self.order + 1):
            prev = idx[-1]
            cur = np.full(len(seq), -1, dtype=np.int64)
            ok = np.zeros(len(seq), dtype=bool)
            ok[1:] = (prev[:-1] >= 0) & ~is_bos[1:]
            pos = np.flatnonzero(ok)
            if len(pos):
                cur[pos] = counting.lookup(self.tables[n - 1].keys,
                                           prev[pos - 1].astype(np.uint64) * V + seq[pos].astype(np.uint64))
            idx.append(cur)
        return idx

    def unit_logprob(self, seq: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
        """ln P of every unit of the stream (NaN at the boundaries, which are not predicted)."""
        idx = self.positions(seq, starts)
        cut = np.zeros(len(seq), dtype=bool) if starts is None else starts
        N, T = self.order, len(seq)
        out = np.zeros(T)
        if self.config.smoothing == "kn":
            matched = np.zeros(T, dtype=np.int64)
            for n in range(N, 0, -1):
                hit = (idx[n - 1] >= 0) & (matched == 0)
                out[hit] = self.tables[n - 1].logp[idx[n - 1][hit]]
                matched[hit] = n
            for k in range(1, N):  # backoffs of the contexts longer than the match
                ctx = np.full(T, -1, dtype=np.int64)
                ctx[1:] = idx[k - 1][:-1]
                use = (ctx >= 0) & (k >= matched) & ~cut
                out[use] += self.tables[k - 1].backoff[ctx[use]]
        else:
            k_add = self.config.k if self.config.smoothing == "addk" else 0.0
            done = np.zeros(T, dtype=bool)
            for n in range(N, 0, -1):
                if n == 1:
                    ctx_ok = ~done
                    total = np.full(T, self.meta["tokens"], dtype=np.float64)
                else:
                    ctx = np.full(T, -1, dtype=np.int64)
                    ctx[1:] = idx[n - 2][:-1]
                    ctx_ok = (ctx >= 0) & ~done & ~cut
                    total = np.zeros(T)
                    total[ctx_ok] = self.tables[n - 2].backoff[ctx[ctx_ok]]
                    ctx_ok &= total > 0
                cnt = np.zeros(T)
                have = ctx_ok & (idx[n - 1] >= 0)
                cnt[have] = self.tables[n - 1].logp[idx[n - 1][have]]
                with np.errstate(divide="ignore"):
                    out[ctx_ok] = np.log(cnt[ctx_ok] + k_add) - np.log(total[ctx_ok] + k_add * (self.V - 1))
                done |= ctx_ok
        out[seq == self.bos] = np.nan
        return out

    def score(self, documents: Sequence[str]) -> UnitScores:
        if self.config.kenlm_compat:
            raise LadderError(
                "this is a --kenlm-compat model: it scores whitespace tokens and hides unknown words "
                "behind <unk>, so it has no exact bits per character; train without --kenlm-compat "
                "to score it, or export it with `lmladder ngram export --arpa` for KenLM")
        seq, texts = self.encode(documents)
        lp = self.unit_logprob(seq)
        keep = seq != self.bos
        lp, ids = lp[keep], seq[keep]
        if self.char_vocab is not None:
            lp = lp + self.char_vocab.spelling_logprob(ids)
        else:
            from lmladder import openvocab

            lp = lp + openvocab.spelling_logprob(self, ids, texts)
        if self.config.smoothing == "mle" and not np.all(np.isfinite(lp)):
            raise LadderError(f"the mle model gives probability 0 to {int(np.sum(~np.isfinite(lp)))} units "
                              "of this text; train with --smoothing kn or addk to score it")
        return UnitScores(lp, sum(len(d) for d in documents), sum(len(d.encode("utf-8")) for d in documents))

    def kenlm_query(self, lines: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """log10 P of every token and </s> of each line, as KenLM's query prints, and an OOV mask."""
        seq = kenlm_stream(lines, self.index(), self.bos, self.eos, self.escape)
        lp = self.unit_logprob(seq)
        keep = seq != self.bos
        return lp[keep] / math.log(10), seq[keep] == self.escape

    # -- sampling --------------------------------------------------------------------------
    def next_logprobs(self, contexts: list[list[int]]) -> np.ndarray:
        """(B, V) ln P(next unit | context) for each context (unit ids, BOS first if at a start)."""
        out = np.empty((len(contexts), self.V))
        cand = np.arange(self.V, dtype=np.int64)
        for b, ctx in enumerate(contexts):
            hist = list(ctx[-(self.order - 1):]) if self.order > 1 else []
            seqs = np.array(hist + [0], dtype=np.int64)
            # score every candidate placed after the history, each block cut off from the last
            block = np.tile(seqs, (self.V, 1))
            block[:, -1] = cand
            starts = np.zeros(block.shape, dtype=bool)
            starts[:, 0] = True
            lp = self.unit_logprob(block.ravel(), starts.ravel())
            out[b] = lp.reshape(self.V, -1)[:, -1]
        out[:, self.bos] = -np.inf
        return out

    def sample(self, prompt: str = "", max_new_chars: int | None = None, settings: SampleSettings | None = None,
               seed: int = 0, num_samples: int = 1, on_text=None, max_new_tokens: int | None = None) -> list[str]:
        """Continue `prompt` (its last n-1 units are the context) by `max_new_chars` characters or
        `max_new_tokens` units; `on_text(i, piece)` sees each new piece of sample i."""
        settings = settings or SampleSettings()
        if max_new_chars is None and max_new_tokens is None:
            max_new_chars = 200
        rngs = sample_rngs(seed, num_samples)
        seq, _ = self.encode([prompt])
        contexts = [list(seq) for _ in range(num_samples)]
        texts = ["" for _ in range(num_samples)]
        steps = 0
        while (steps < max_new_tokens) if max_new_tokens is not None else (min(map(len, texts)) < max_new_chars):
            nxt = choose(self.next_logprobs(contexts), settings, rngs)
            steps += 1
            for b, unit in enumerate(nxt.tolist()):
                contexts[b].append(unit)
                contexts[b] = contexts[b][-max(self.order, 1):]
                piece = self.spell(unit, rngs[b])
                if max_new_chars is not None:
                    piece = piece[: max(0, max_new_chars - len(texts[b]))]
                texts[b] += piece
                if on_text and piece:
                    on_text(b, piece)
        return [prompt + t for t in texts]

    def spell(self, unit: int, rng: np.random.Generator) -> str:
        if unit == self.escape:
            if self.char_vocab is not None:
                return self.char_vocab.random_unseen(rng)
            if self.spelling is not None:
                from lmladder import openvocab

                return openvocab.sample_spelling(self.spelling, rng)
            return UNK_NAME
        if unit == self.eos:
            return "\n"
        return self.units[unit]


# --- building -----------------------------------------------------------------------------


def kenlm_stream(lines: Sequence[str], index: dict[str, int], bos: int, eos: int, unk: int) -> np.ndarray:
    """`<s> tokens </s>` for every line (KenLM: whitespace-separated tokens, unknown -> <unk>)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    tokens, lengths = [], []
    for line in lines:
        words = line.split()
        tokens += words
        lengths.append(len(words))
    vocab = pa.array(list(index.keys()), pa.string())
    ids_of = np.asarray(list(index.values()), dtype=np.int64)
    pos = pc.index_in(pa.array(tokens, pa.string()), value_set=vocab).fill_null(-1).to_numpy().astype(np.int64)
    ids = np.where(pos >= 0, ids_of[np.maximum(pos, 0)], unk)
    return counting.bracket(ids, np.asarray(lengths, dtype=np.int64), bos, eos)


def from_counts(config: NgramConfig, units: list[str], bos: int, escape: int, eos: int | None,
                c: counting.Counts, meta: dict[str, Any]) -> NgramModel:
    tables = []
    if config.smoothing == "kn":
        logp, backoff, info = estimate_kn(c)
        meta["discounts"] = info
        for n in range(1, c.order + 1):
            tables.append(Tables(c.keys(n), logp[n - 1], backoff[n - 1]))
    else:
        for n in range(1, c.order + 1):
            t = c.tables[n - 1]
            if n < c.order:
                totals = np.bincount(c.tables[n].ctx, weights=c.tables[n].count, minlength=len(t))
            else:
                totals = np.zeros(len(t))
            tables.append(Tables(c.keys(n), t.count.astype(np.float64), totals))
        meta["tokens"] = int(c.tables[0].count.sum())
    return NgramModel(config, units, bos, escape, eos, tables, meta)


def prepare(config: NgramConfig, documents: Sequence[str]) -> tuple[list[str], int, int, int | None, np.ndarray]:
    """Units, boundary/escape/end ids and the unit stream of the training documents
    (letters, or KenLM-style tokens; open-vocabulary words are prepared in lmladder.openvocab)."""
    config.check()
    if not any(documents):
        raise LadderError("the train split is empty; give a corpus with text in it")
    if config.kenlm_compat:
        vocab: dict[str, None] = {}
        for line in documents:
            for w in line.split():
                vocab.setdefault(w, None)
        units = [UNK_NAME, BOS_NAME, EOS_NAME] + list(vocab)  # KenLM's ids: <unk> 0, <s> 1, </s> 2
        if len(units) < 4:
            raise LadderError("the train split has no tokens; give a corpus with text in it")
        index = {u: i for i, u in enumerate(units) if i > 2}
        return units, 1, 0, 2, kenlm_stream(documents, index, 1, 2, 0)
    from lmladder.vocab import codepoints

    # the training vocabulary, and ids through a lookup table: O(T), no sort (same ids as CharVocab);
    # the stream is int32 (4 bytes a character), first holding code points, then mapped in place
    seq = np.empty(sum(len(d) for d in documents) + len(documents), dtype=np.int32)
    spans = []
    at = 0
    for doc in documents:
        spans.append((at + 1, at + 1 + len(doc)))
        seq[at + 1:at + 1 + len(doc)] = codepoints(doc)
        at += len(doc) + 1
    seen_mask = np.zeros(0x110000, dtype=bool)
    for a, b in spans:
        seen_mask[seq[a:b]] = True
    seen = np.flatnonzero(seen_mask)
    cv = CharVocab(seen.astype(np.uint32).tobytes().decode("utf-32-le"))
    if len(cv.chars) < 2:
        raise LadderError(f"the train split has only one distinct character ({cv.chars!r}); "
                          "an n-gram model needs at least two")
    units = list(cv.chars) + ["\ufffd", BOS_NAME]  # the escape (shown as U+FFFD), then the boundary
    bos = len(units) - 1
    lut = np.full(int(seen[-1]) + 1, cv.escape_id, dtype=np.int32)
    lut[seen] = np.arange(len(seen))
    for a, b in spans:
        seq[a:b] = lut[seq[a:b]]
        seq[a - 1] = bos
    return units, bos, cv.escape_id, None, seq


def train(config: NgramConfig, documents: Sequence[str], memory_bytes: int | None = None,
          val: Sequence[str] | None = None) -> NgramModel:
    """Count and estimate an n-gram rung on the training documents."""
    config.check()
    if config.unit == "word" and not config.kenlm_compat:
        from lmladder import openvocab

        if not any(documents):
            raise LadderError("the train split is empty; give a corpus with text in it")
        return openvocab.train(config, documents, memory_bytes, val)
    units, bos, esc, eos, seq = prepare(config, documents)
    c = counting.count(seq, config.order, len(units), bos, memory_bytes)
    return from_counts(config, units, bos, esc, eos, c, {})


# --- saving and loading ---------------------------------------------------------------------


def save(model: NgramModel, out: str | Path, corpus: dict[str, Any], split: str) -> None:
    from lmladder import artifacts
    from lmladder.atomic import MARKER, atomic_dir, write_json

    with atomic_dir(out) as tmp:
        _write_tables(model, tmp, "")
        if model.spelling is not None:
            _write_tables(model.spelling, tmp, "spelling-")
        head = artifacts.header(
            "lmladder-model", kind="ngram", unit=model.config.unit, corpus=corpus, split=split,
            config=asdict(model.config), parameters=model.parameters,
            model=_model_meta(model),
            spelling=_model_meta(model.spelling) if model.spelling is not None else None)
        write_json(tmp / MARKER, head)


def _model_meta(m: NgramModel) -> dict[str, Any]:
    return {"config": asdict(m.config), "bos": m.bos, "escape": m.escape, "eos": m.eos,
            "order": m.order, "meta": m.meta}


def _write_tables(model: NgramModel, folder: Path, prefix: str) -> None:
    import pyarrow as pa

    from lmladder import schemas

    schemas.write_table(pa.table({"id": np.arange(model.V, dtype=np.int32), "unit": model.units}),
                        folder / f"{prefix}vocab.parquet", "ngram_vocab", {"unit": model.config.unit})
    for n, t in enumerate(model.tables, 1):
        ctx = (t.keys // np.uint64(model.V)).astype(np.int64)
        word = (t.keys % np.uint64(model.V)).astype(np.int32)
        table = pa.table({"ngram": readable(model, n), "ctx": ctx, "word": word, "logp": t.logp,
                          "backoff": t.backoff})
        schemas.write_table(table, folder / f"{prefix}order{n}.parquet", "ngram_model",
                            {"order": n, "unit": model.config.unit, "smoothing": model.config.smoothing})


def readable(model: NgramModel, n: int) -> list:
    """Each n-gram of order n as its list of unit strings (vectorised through Arrow)."""
    import pyarrow as pa

    ids = np.empty((len(model.tables[n - 1].keys), n), dtype=np.int64)
    row = np.arange(len(model.tables[n - 1].keys))
    for k in range(n, 0, -1):
        keys = model.tables[k - 1].keys
        ids[:, k - 1] = (keys[row] % np.uint64(model.V)).astype(np.int64)
        row = (keys[row] // np.uint64(model.V)).astype(np.int64)
    values = pa.array(model.units, pa.string()).take(pa.array(ids.ravel()))
    return pa.ListArray.from_arrays(pa.array(np.arange(0, ids.size + 1, n, dtype=np.int32)), values)


def load(folder: Path, header: dict[str, Any]) -> NgramModel:
    model = _load_part(folder, header.get("model"), "")
    if header.get("spelling"):
        model.spelling = _load_part(folder, header["spelling"], "spelling-")
    return model


def _load_part(folder: Path, info: Any, prefix: str) -> NgramModel:
    from lmladder import schemas
    from lmladder.atomic import MARKER

    if not isinstance(info, dict) or "config" not in info:
        raise LadderError(f"{folder / MARKER} does not describe an n-gram model; rebuild it")
    try:
        config = NgramConfig(**info["config"])
    except TypeError:
        raise LadderError(f"{folder / MARKER} has an unknown n-gram configuration; rebuild it") from None
    units = schemas.read_table(folder / f"{prefix}vocab.parquet", "ngram_vocab").column("unit").to_pylist()
    V = np.uint64(len(units))
    tables = []
    for n in range(1, int(info["order"]) + 1):
        t = schemas.read_table(folder / f"{prefix}order{n}.parquet", "ngram_model")
        ctx = t.column("ctx").to_numpy().astype(np.uint64)
        word = t.column("word").to_numpy().astype(np.uint64)
        tables.append(Tables(ctx * V + word, t.column("logp").to_numpy(), t.column("backoff").to_numpy()))
    return NgramModel(config, units, info["bos"], info["escape"], info["eos"], tables, info.get("meta", {}))


def from_ladder(kind: str, settings: dict, splits, profile: str) -> Built:
    """The `ngram` rung kind of a ladder file: settings unit, order, smoothing, min_count (0: tune
    on val). `order = "best"` trains every order from 1 to `max_order` (default 10) and keeps the
    one with the lowest bits/char on val."""
    from lmladder import metrics

    def build(order: int) -> NgramModel:
        config = NgramConfig(unit=settings.get("unit", "char"), order=order,
                             smoothing=settings.get("smoothing", "kn"), min_count=int(settings.get("min_count", 0)))
        return train(config, splits.require("train"), val=splits["val"])

    if settings["order"] != "best":
        model = build(int(settings["order"]))
        return Built(model, model.parameters, "n-grams")
    val = splits.require("val")
    best = None
    for order in range(1, int(settings.get("max_order", 10)) + 1):
        model = build(order)
        bpc = metrics.evaluate(model, val).bits_per_char
        if best is None or bpc < best[0]:
            best = (bpc, order, model)
    bpc, order, model = best
    return Built(model, model.parameters, "n-grams", details={"order": order, "val_bits_per_char": bpc})
