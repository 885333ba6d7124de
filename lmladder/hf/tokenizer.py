"""The tokenizer files of a transformers folder for lmladder's two tokenizers, and back.

transformers' AutoTokenizer reads tokenizer.json (the whole pipeline of Hugging Face
tokenizers) with tokenizer_config.json and special_tokens_map.json:

- bpe: the run's own tokenizer.json, byte for byte (lmladder trains byte-level BPE with that
  library, so it encodes every text exactly).
- char: a pipeline built to give lmladder's ids: a BPE model without merges over the run's
  characters (sorted by code point, ids 0..V-1), so each character is one token; the escape
  (id V) is its unknown token, so each character outside the vocabulary becomes one escape,
  as lmladder encodes it; <|endoftext|> is id V+1; the Fuse decoder joins tokens without
  spaces. The escape is written U+FFFD (what lmladder's decode writes for it when no random
  generator spells it), or ESCAPE where U+FFFD is itself one of the characters.

Both: <|endoftext|> is bos and eos; split_special_tokens makes a literal "<|endoftext|>" in a
text ordinary text, as lmladder reads it (it inserts end-of-text only by id); tokenization
spaces are not cleaned up, so decoding gives the text back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmladder import artifacts
from lmladder.errors import LadderError
from lmladder.tokens import EOT, FORMAT, BPETokenizer, CharTokenizer, Tokenizer
from lmladder.vocab import CharVocab

ESCAPE = "<|escape|>"
REPLACEMENT = "\ufffd"


def escape_token(chars: str) -> str:
    return REPLACEMENT if REPLACEMENT not in chars else ESCAPE


def char_tokenizer_json(tokenizer: CharTokenizer) -> bytes:
    """tokenizer.json of a pipeline that encodes every text to the ids lmladder's does."""
    from tokenizers import AddedToken, decoders, models
    from tokenizers import Tokenizer as Pipeline

    chars = tokenizer.vocab.chars
    escape = escape_token(chars)
    vocab = {c: i for i, c in enumerate(chars)}
    vocab[escape] = tokenizer.vocab.escape_id
    pipeline = Pipeline(models.BPE(vocab=vocab, merges=[], unk_token=escape))
    pipeline.decoder = decoders.Fuse()
    pipeline.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (escape, EOT)])
    if pipeline.token_to_id(EOT) != tokenizer.eot_id:
        raise LadderError(f"the character tokenizer's end-of-text id {tokenizer.eot_id} cannot be kept")
    return (pipeline.to_str(pretty=True) + "\n").encode("utf-8")


def files(tokenizer: Tokenizer, block_size: int) -> dict[str, bytes]:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json."""
    special = {"bos_token": EOT, "eos_token": EOT}
    if isinstance(tokenizer, CharTokenizer):
        pipeline = char_tokenizer_json(tokenizer)
        special["unk_token"] = escape_token(tokenizer.vocab.chars)
    else:
        pipeline = tokenizer.json_bytes
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **special, "model_max_length": block_size,
              "split_special_tokens": True, "clean_up_tokenization_spaces": False}
    dump = lambda obj: (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")  # noqa: E731
    return {"tokenizer.json": pipeline, "tokenizer_config.json": dump(config), "special_tokens_map.json": dump(special)}


def read(folder: Path, corpus: dict[str, Any] | None = None, split: str | None = None) -> Tokenizer:
    """lmladder's tokenizer for a transformers folder's tokenizer.json: a character tokenizer
    for a pipeline `char_tokenizer_json` wrote, a BPETokenizer for byte-level BPE."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise LadderError(f"{folder} has no tokenizer.json; write one with transformers "
                          "(AutoTokenizer.from_pretrained(FOLDER).save_pretrained(FOLDER))")
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
        model, decoder = data["model"], data.get("decoder") or {}
        kind = model["type"]
    except (ValueError, KeyError, TypeError):
        raise LadderError(f"{path} is corrupt (not a tokenizers pipeline); export the model again") from None
    if kind == "BPE" and not model.get("merges") and decoder.get("type") == "Fuse":
        return _char(data, path, corpus, split)
    if kind == "BPE" and _byte_level(data.get("pre_tokenizer")) and decoder.get("type") == "ByteLevel":
        header = artifacts.header(FORMAT, kind="bpe", corpus=corpus, split=split)
        return BPETokenizer.from_json_bytes(raw, header, str(path))
    raise LadderError(f"{path} is neither byte-level BPE nor an lmladder character vocabulary; lmladder reads those "
                      "two, which give every text an exact encoding")


def _byte_level(pre: Any) -> bool:
    if not isinstance(pre, dict):
        return False
    if pre.get("type") == "Sequence":
        return any(_byte_level(p) for p in pre.get("pretokenizers", []))
    return pre.get("type") == "ByteLevel"


def _char(data: dict[str, Any], path: Path, corpus: dict[str, Any] | None, split: str | None) -> CharTokenizer:
    """The character tokenizer of a pipeline char_tokenizer_json wrote: the characters by id,
    then the escape, then end-of-text."""
    vocab = data["model"].get("vocab") or {}
    by_id = sorted(vocab, key=vocab.get)
    chars, escape = by_id[:-1], by_id[-1] if by_id else None
    tokenizer = CharTokenizer(CharVocab("".join(chars)), corpus, split)
    added = {t.get("content"): t.get("id") for t in data.get("added_tokens") or []}
    if (any(len(c) != 1 for c in chars) or list(tokenizer.vocab.chars) != chars
            or [vocab[c] for c in by_id] != list(range(len(by_id))) or data["model"].get("unk_token") != escape
            or added.get(EOT) != tokenizer.eot_id):
        raise LadderError(f"{path} is not a character vocabulary lmladder wrote (characters sorted by code point, "
                          f"then the escape, then {EOT})")
    return tokenizer
