"""Self-describing folders: every folder lmladder writes carries `lmladder.json`, and this is
the one place their layouts are written down.

    {"format": "lmladder-model", "format_version": 1, "kind": "unigram", ...}

`format` says what the folder is; `format_version` changes when the layout does, and a folder of
another version is refused with a clear error rather than misread. Models are loaded by kind
through lmladder.registry. Everything is written under a temporary name and renamed into place.

A model (format lmladder-model; `kind` from the registry; `corpus`, `split`, `config`,
`parameters` always):

    uniform, unigram   vocab.json            the training alphabet (lmladder.vocab), the counts
                                             in lmladder.json
    ngram              vocab.parquet         id -> unit
                       order{n}.parquet      n = 1..order: ngram (units), ctx, word, logp, backoff
                                             (natural logs; schema lmladder.schemas.NGRAM_MODEL):
                                             the readable, exchangeable form
                       ngram.bin             the same tables as a memory-mapped trie, what scoring
                                             loads (lmladder.ngrambin: magic, version, directory,
                                             64-byte-aligned arrays); lmladder.json's model.binary
                                             records its bytes and CRC-32 and the tables' sizes.
                                             Folders written before it, and --kenlm-compat models
                                             (which cannot be scored), have none: they load from
                                             Parquet
                       spelling-*.parquet    word models: the letter model that spells rare words
                       spelling-ngram.bin    (its binary form)
    gpt, mlp           config.json           the resolved run config (lmladder.config)
    (a training run)   tokenizer/            the tokenizer folder it was trained with
                       metrics.jsonl         one JSON line per log interval (train loss, tokens/s,
                                             MFU) and per evaluation (val loss, val bits/char)
                       latest/               the last checkpoint: model.safetensors, optimizer
                                             state, ema.safetensors (with --ema), lmladder.json
                                             (step, tokens, RNG states; lmladder.checkpoint)
                       best/                 the weights of the best val loss (the average's with
                                             --ema), what the run scores and samples with
                       lmladder.json         also `status` (training, interrupted, trained,
                                             diverged), `weights` (which file is the model),
                                             `step`, `best_val` and, when finished, `test`

A transformers export (format lmladder-hf-export; lmladder.hf), which AutoModelForCausalLM and
AutoTokenizer load:

    config.json, model.safetensors      GPT-2's config and weights (float32, Conv1D layout, zero
                                         biases for a GPT without them, the head tied to wte)
    tokenizer.json, tokenizer_config.json, special_tokens_map.json
    generation_config.json              <|endoftext|> as bos/eos/pad; padding ids suppressed
    README.md                           the model card
    lmladder.json                       `source`: the run's name, corpus, split, config, test,
                                         tokenizer, step, status (carried on re-export); a folder
                                         not made by lmladder reads as {"transformers": NAME}

Other folders: a tokenizer (format lmladder-tokenizer: tokenizer.json that Hugging Face
tokenizers loads, or vocab.json for characters), n-gram counts (lmladder-ngram-counts:
order{n}.parquet counts tables), a scaling study (lmladder-scale: results.json with the plan,
runs, fits with bootstrap intervals, prediction, verification, compute_ratio and, on a synthetic
corpus, the truth; runs.parquet one row a run; scale.md; compute.png; isoflop.png; its runs are
cached under $LMLADDER_HOME/cache/scale), a bench run (lmladder-bench: results.json, results.md,
results.parquet, manifest.json, ladder.png, curves.png).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmladder import __version__
from lmladder.atomic import MARKER
from lmladder.errors import LadderError

FORMAT_VERSION = 1

def header(fmt: str, **fields: Any) -> dict[str, Any]:
    return {"format": fmt, "format_version": FORMAT_VERSION, "lmladder_version": __version__, **fields}


def read_header(folder: str | Path, fmt: str, what: str = "model") -> dict[str, Any]:
    folder = Path(folder)
    if not folder.is_dir():
        raise LadderError(f"{folder} is not a folder; give the {what.removesuffix(' folder')} folder written by "
                          "lmladder")
    marker = folder / MARKER
    if not marker.is_file():
        raise LadderError(f"{folder} is not an lmladder {what} (no {MARKER} in it)")
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LadderError(f"{marker} is corrupt (not JSON); rebuild the {what}") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        found = data.get("format") if isinstance(data, dict) else None
        raise LadderError(f"{folder} is not an lmladder {what} (it is {found or 'something else'})")
    if data.get("format_version") != FORMAT_VERSION:
        raise LadderError(
            f"{folder} was written by lmladder {data.get('lmladder_version', '?')} in format version "
            f"{data.get('format_version')}; this lmladder {__version__} reads version {FORMAT_VERSION}: rebuild it"
        )
    return data
