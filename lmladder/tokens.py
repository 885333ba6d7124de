"""Tokenizers as the neural rungs see them: one interface for characters and byte-level BPE.

Both kinds are saved the same way, as a folder with `lmladder.json` (format
"lmladder-tokenizer", kind "char" or "bpe") beside the vocabulary (`vocab.json` or
`tokenizer.json`), and both reserve one id, `eot_id`, that is put before every document:

    ids of a split = [eot] doc1 [eot] doc2 ...

- `char`: the train split's characters and the escape of lmladder.vocab, ids 0..V (V = ESC),
  plus eot_id = V + 1, so vocab_size = V + 2. An unseen character costs ESC plus the
  uniform spelling (`spelling_logprob`).
- `bpe`: a Hugging Face byte-level BPE (lmladder.bpe); eot_id is `<|endoftext|>`. Every string
  has an exact encoding, so `spelling_logprob` is zero.

A whole split is encoded once, in parallel batches, and cached as a .npy memory map under
$LMLADDER_HOME/cache/tokens, keyed by the corpus sha256, the split and the tokenizer's hash.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lmladder import artifacts, home
from lmladder.atomic import MARKER, atomic_dir, atomic_file, write_json
from lmladder.console import log, progress
from lmladder.errors import LadderError
from lmladder.vocab import CharVocab

FORMAT = "lmladder-tokenizer"
EOT = "<|endoftext|>"
CACHE_VERSION = 1
CHUNK_CHARS = 1 << 18  # long texts are cut into pieces of about this size to encode in parallel


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


# --- the character "tokenizer" ---------------------------------------------------------


class CharTokenizer:
    kind = "char"

    def __init__(self, vocab: CharVocab, corpus: dict[str, Any] | None = None, split: str | None = None):
        self.vocab = vocab
        self.corpus = corpus
        self.split = split
        self.eot_id = vocab.size  # one past ESC
        self.vocab_size = vocab.size + 1
        self.hash = _sha256(json.dumps(vocab.to_json(), sort_keys=True, ensure_ascii=False).encode())

    def encode(self, text: str) -> np.ndarray:
        return self.vocab.encode(text)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [self.vocab.encode(t) for t in texts]

    def decode(self, ids: Sequence[int] | np.ndarray, rng: np.random.Generator | None = None) -> str:
        """The text of `ids` (eot dropped); ESC becomes a random unseen character drawn from
        `rng`, or U+FFFD without one."""
        ids = [int(i) for i in ids if int(i) != self.eot_id]
        return self.vocab.decode(ids, rng)

    def stream_decoder(self, rng: np.random.Generator):
        """unit -> its text, one unit at a time (lmladder.generate); escapes spelled from `rng`
        (the same draws as decode(ids, rng) makes), end-of-text nothing."""
        chars, escape = self.vocab.chars, self.vocab.escape_id

        def piece(unit: int) -> str:
            if unit < escape:
                return chars[unit]
            return self.vocab.random_unseen(rng) if unit == escape else ""

        return piece

    def spelling_logprob(self, ids: np.ndarray) -> np.ndarray:
        return self.vocab.spelling_logprob(np.asarray(ids))

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "sha256": self.hash, "vocab_size": self.vocab_size}

    def save(self, folder: str | Path) -> None:
        with atomic_dir(folder) as tmp:
            self.vocab.save(tmp / "vocab.json")
            write_json(tmp / MARKER, artifacts.header(
                FORMAT, kind=self.kind, corpus=self.corpus, split=self.split,
                vocab_size=self.vocab_size, eot_id=self.eot_id, sha256=self.hash))


# --- byte-level BPE --------------------------------------------------------------------

_CUT = re.compile(r"(?<=\S)\n")


def chunks(text: str, size: int = CHUNK_CHARS) -> list[str]:
    r"""Cut `text` into pieces of about `size` characters, each cut just before a newline that
    follows a non-space character.

    GPT-2's split pattern (the byte-level pre-tokeniser's) always ends a piece there: no
    alternative holds a non-space and then a newline. And nothing before the cut looks past
    it, since the only lookahead, in `\s+(?!\S)`, belongs to runs of spaces. (A cut *after* a
    newline would not be safe: "\n\n\nA" splits as "\n\n", "\n", "A" but "\n\n\n" alone
    as one piece.) So the pieces' ids, joined, are exactly the ids of the whole. Python's
    `\S` is narrower than the pattern's, which only makes the cut rarer."""
    if len(text) <= size:
        return [text]
    out, start = [], 0
    while len(text) - start > size:
        m = _CUT.search(text, start + size)
        if m is None:
            break
        out.append(text[start : m.start()])
        start = m.start()
    out.append(text[start:])
    return out


class BPETokenizer:
    kind = "bpe"

    def __init__(self, raw: Any, json_bytes: bytes, header: dict[str, Any] | None = None):
        self.raw = raw  # a tokenizers.Tokenizer
        # literal "<|endoftext|>" in a text is ordinary text; eot is only ever inserted by id
        raw.encode_special_tokens = True
        self.json_bytes = json_bytes
        self.header = header or {}
        self.hash = _sha256(json_bytes)
        self.vocab_size = raw.get_vocab_size(with_added_tokens=True)
        eot = raw.token_to_id(EOT)
        if eot is None:
            raise LadderError(f"the tokenizer has no {EOT} token; retrain it with lmladder tokenizer train")
        self.eot_id = int(eot)
        self.dtype = id_dtype(self.vocab_size)

    @classmethod
    def from_json_bytes(cls, data: bytes, header: dict[str, Any] | None = None,
                        source: str = "tokenizer.json") -> "BPETokenizer":
        from tokenizers import Tokenizer

        try:
            raw = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as exc:  # the library raises plain Exception on a bad file
            raise LadderError(f"{source} is corrupt ({str(exc).splitlines()[0][:120]}); retrain the tokenizer") from None
        return cls(raw, data, header)

    def _encode_flat(self, pieces: list[str]) -> list[np.ndarray]:
        encode = getattr(self.raw, "encode_batch_fast", self.raw.encode_batch)
        encodings = encode(pieces, add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int64) for e in encodings]

    def encode(self, text: str) -> np.ndarray:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Ids of each text, encoded in parallel by the library (long texts cut by `chunks`)."""
        pieces, owner = [], []
        for i, text in enumerate(texts):
            for piece in chunks(text):
                pieces.append(piece)
                owner.append(i)
        out: list[list[np.ndarray]] = [[] for _ in texts]
        for i, ids in zip(owner, self._encode_flat(pieces)):
            out[i].append(ids)
        return [np.concatenate(parts) if len(parts) != 1 else parts[0] for parts in out]

    def decode(self, ids: Sequence[int] | np.ndarray, rng: np.random.Generator | None = None) -> str:
        """The text of `ids` (eot dropped). Ids that end mid-character decode to U+FFFD."""
        return self.raw.decode([int(i) for i in ids], skip_special_tokens=True)

    def stream_decoder(self, rng: np.random.Generator | None = None):
        """unit -> the text it completes, one unit at a time (lmladder.generate): a byte-level
        token can end inside a character, so tokens wait until they decode to whole characters
        (at most 4 bytes, so at most 4 tokens)."""
        pending: list[int] = []

        def piece(unit: int) -> str:
            pending.append(int(unit))
            text = self.decode(pending)
            if text.endswith("\ufffd") and len(pending) < 4:
                return ""
            pending.clear()
            return text

        def flush() -> str:
            """What still waits (the sample ended inside a character): U+FFFD for its bytes."""
            text = self.decode(pending) if pending else ""
            pending.clear()
            return text

        piece.flush = flush  # type: ignore[attr-defined]
        return piece

    def spelling_logprob(self, ids: np.ndarray) -> np.ndarray:
        return np.zeros(np.shape(ids), dtype=np.float64)

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "sha256": self.hash, "vocab_size": self.vocab_size}

    def save(self, folder: str | Path) -> None:
        header = dict(self.header) or artifacts.header(FORMAT, kind=self.kind)
        header.update(kind=self.kind, vocab_size=self.vocab_size, eot_id=self.eot_id, sha256=self.hash)
        with atomic_dir(folder) as tmp:
            (tmp / "tokenizer.json").write_bytes(self.json_bytes)
            write_json(tmp / MARKER, header)


Tokenizer = CharTokenizer | BPETokenizer


# --- loading ---------------------------------------------------------------------------


def load_folder(folder: str | Path) -> Tokenizer:
    folder = Path(folder)
    header = artifacts.read_header(folder, FORMAT, what="tokenizer")
    kind = header.get("kind")
    if kind == "char":
        vocab = CharVocab.load(folder / "vocab.json")
        tok = CharTokenizer(vocab, header.get("corpus"), header.get("split"))
        if header.get("sha256") not in (None, tok.hash):
            raise LadderError(f"{folder / 'vocab.json'} does not match its {MARKER}; retrain the tokenizer")
        return tok
    if kind == "bpe":
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise LadderError(f"{path} is missing; retrain the tokenizer with lmladder tokenizer train")
        data = path.read_bytes()
        if header.get("sha256") not in (None, _sha256(data)):
            raise LadderError(f"{path} is corrupt (its sha256 does not match {MARKER}); retrain the tokenizer")
        return BPETokenizer.from_json_bytes(data, header, str(path))
    raise LadderError(f"{folder} holds a tokenizer of unknown kind {kind!r}; known: char, bpe")


def char_tokenizer(corpus: Any = None, split: Any = None) -> CharTokenizer:
    """The character vocabulary of a corpus's train split (a Corpus, a name or a path)."""
    from lmladder import corpora

    data = corpus if isinstance(corpus, corpora.Corpus) else corpora.load(corpus)
    splits = data.split(split)
    vocab = CharVocab.from_texts(splits.require("train"))
    return CharTokenizer(vocab, data.identity(), str(splits.spec))


def load_tokenizer(spec: Any, corpus: Any = None, split: Any = None) -> Tokenizer:
    """`spec` is "char" (built from `corpus`'s train split), a tokenizer folder, or a tokenizer."""
    if isinstance(spec, (CharTokenizer, BPETokenizer)):
        return spec
    if isinstance(spec, str) and spec == "char":  # a folder named char: give it as ./char
        return char_tokenizer(corpus, split)
    return load_folder(spec)


# --- whole splits, encoded once and cached ------------------------------------------------


def cache_key(tokenizer: Tokenizer, corpus_sha256: str, split_spec: str, split_name: str) -> str:
    text = f"v{CACHE_VERSION}|{corpus_sha256}|{split_spec}|{split_name}|{tokenizer.kind}|{tokenizer.hash}"
    return _sha256(text.encode())[:32]


def encode_documents(tokenizer: Tokenizer, documents: Sequence[str], batch_chars: int = 1 << 23) -> np.ndarray:
    """[eot] doc1 [eot] doc2 ... as one array of the smallest id dtype, encoded in parallel batches."""
    dtype = id_dtype(tokenizer.vocab_size)
    pieces, starts = [], []
    for doc in documents:
        starts.append(len(pieces))
        pieces.extend(chunks(doc))
    eot = np.array([tokenizer.eot_id], dtype=dtype)
    encoded: list[np.ndarray] = []
    with progress() as bar:
        task = bar.add_task(f"encode ({tokenizer.kind})", total=sum(len(p) for p in pieces))
        i = 0
        while i < len(pieces):
            j, size = i, 0
            while j < len(pieces) and (j == i or size + len(pieces[j]) <= batch_chars):
                size += len(pieces[j])
                j += 1
            encoded.extend(ids.astype(dtype) for ids in tokenizer.encode_batch(pieces[i:j]))
            bar.advance(task, size)
            i = j
    out: list[np.ndarray] = []
    doc_starts = set(starts)  # every document has at least one piece, if only ""
    for k, ids in enumerate(encoded):
        if k in doc_starts:
            out.append(eot)
        out.append(ids)
    return np.concatenate(out) if out else np.zeros(0, dtype=dtype)


def encoded_split(tokenizer: Tokenizer, corpus: Any, split_spec: Any = None, split_name: str = "train") -> np.ndarray:
    """The ids of one split ([eot] before each document) as a read-only memory map, encoded on
    first use and cached under $LMLADDER_HOME/cache/tokens."""
    from lmladder import corpora
    from lmladder.splits import SplitSpec

    data = corpus if isinstance(corpus, corpora.Corpus) else corpora.load(corpus)
    spec = str(SplitSpec.parse(split_spec or data.default_split))
    path = home.cache_dir("tokens") / f"{cache_key(tokenizer, data.sha256, spec, split_name)}.npy"
    if path.is_file():
        try:
            return np.load(path, mmap_mode="r")
        except (ValueError, OSError):
            log(f"[yellow]{path} is unreadable; encoding again[/]")
    docs = data.split(spec).require(split_name)
    ids = encode_documents(tokenizer, docs)
    with atomic_file(path) as handle:
        np.save(handle, ids)
    write_json(path.with_suffix(".json"), {
        "corpus": data.identity(), "split": spec, "split_name": split_name,
        "tokenizer": tokenizer.identity(), "tokens": int(ids.size), "dtype": str(ids.dtype)})
    return np.load(path, mmap_mode="r")
