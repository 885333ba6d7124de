"""README.md of an exported folder: a model card that says what the model is, how well it did
and how it was made, from the run's own header (so it is the same each time it is written)."""

from __future__ import annotations

import textwrap
from typing import Any

from lmladder.config import GPTConfig
from lmladder.hf.tokenizer import escape_token
from lmladder.tokens import EOT, CharTokenizer, Tokenizer


def _number(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def model_card(source: dict[str, Any], config: GPTConfig, tokenizer: Tokenizer, version: str) -> str:
    """The card of a GPT exported from `source` (lmladder.json's `source`) by lmladder `version`."""
    name = source.get("run") or source.get("transformers") or "model"
    corpus = source.get("corpus") or {}
    test = source.get("test") or {}
    v, padded = tokenizer.vocab_size, config.vocab_size
    if isinstance(tokenizer, CharTokenizer):
        esc, escape = tokenizer.vocab.escape_id, escape_token(tokenizer.vocab.chars)
    looped = (f" (lmladder's {config.n_layer} blocks gone through {config.n_loop} times, unrolled)"
              if config.n_loop > 1 else "")
    rows = [("architecture", f"GPT-2 (transformers' GPT2LMHeadModel), {config.depth} layers{looped}, "
                             f"{config.n_head} heads, width {config.n_embd}, context {config.block_size} tokens"),
            ("corpus", f"{corpus['name']} (sha256 {corpus.get('sha256', '?')[:12]}...)" if corpus.get("name")
             else "not recorded (not trained by lmladder)"),
            ("split", source.get("split") or "not recorded")]
    if test:
        rows.append(("test bits/char", f"{_number(test['bits_per_char'])} (bits/byte {_number(test['bits_per_byte'])}, "
                                       f"word perplexity {_number(test['word_perplexity'], 1)}, "
                                       f"{_number(test['chars'])} characters)"))
    else:
        rows.append(("test bits/char", "not scored (the run did not finish, or was not trained by lmladder)"))
    if source.get("step") is not None:
        rows.append(("training", f"{_number(source['step'])} steps, status {source.get('status', '?')}"))
    if isinstance(tokenizer, CharTokenizer):
        rows.append(("tokenizer", f"characters: {esc} of them, an escape (id {esc}, {escape!r}) and {EOT} "
                                  f"(id {tokenizer.eot_id})"))
    else:
        rows.append(("tokenizer", f"byte-level BPE, {v:,} ids, {EOT} id {tokenizer.eot_id}"))
    rows.append(("vocab_size", f"{padded:,} ({v:,} used; {padded - v:,} rows of padding)"))
    rows.append(("config", f"dropout {config.dropout}, bias {config.bias}, position {config.position}, "
                           f"residual_dtype {config.residual_dtype}"))
    trained = source.get("lmladder_version")
    rows.append(("lmladder", f"trained with {trained}, exported with {version}" if trained
                 else f"exported with {version}"))
    origin = "trained with lmladder" if source.get("run") else "read by lmladder from a transformers folder"
    table = "\n".join(f"| {k} | {val.replace('|', chr(92) + '|')} |" for k, val in rows)  # a | would end the cell
    notes = [f"**End of text.** lmladder trains on `{EOT} document {EOT} document ...` and scores each "
             f"document after a `{EOT}` (id {tokenizer.eot_id}, the bos and eos token): start inputs with it. "
             f"lmladder's bits/char count the text only, with the probability of `{EOT}` removed and the rest "
             f"renormalised. A literal `{EOT}` inside a text is text (`split_special_tokens`), as in lmladder."]
    if isinstance(tokenizer, CharTokenizer):
        notes.append(f"**Characters outside the vocabulary.** The vocabulary is the characters of the training split. "
                     f"Any other character is encoded as the escape, id {esc} (one per character, as lmladder "
                     f"encodes it), and the escape decodes as {escape!r}: the character itself is lost. lmladder "
                     f"prices an unseen character as P(escape) / (1,112,064 - {esc}), a uniform choice among the "
                     f"Unicode scalar values the vocabulary lacks, and its sampler spells a drawn escape as a random "
                     f"such character; transformers knows only the escape.")
    if padded > v:
        notes.append(f"**Padding ids.** lmladder pads the output layer to a multiple of 64: ids {v:,} to "
                     f"{padded - 1:,} stand for no token (no training text ever had one next). "
                     f"generation_config.json lists them in `suppress_tokens`, so `generate` never draws them; to "
                     f"score text yourself, drop `logits[..., {v}:]` before the softmax, as lmladder does.")
    notes += [f"**Context.** {config.block_size} tokens (`n_positions`). transformers' GPT-2 cannot read past them; "
              "lmladder's sampler keeps going by sliding its key-value cache back to 3/4 of a block when it fills.",
              "**Exactness.** The activation is `gelu_pytorch_tanh`, the tanh approximation of GELU that lmladder's "
              "GPT computes (GPT-2's own `gelu_new` is the same function written out); LayerNorm eps 1e-5; the head "
              "is tied to the token embedding. A GPT trained without biases has zero biases here, which add nothing. "
              "lmladder reads this folder back (`lmladder score FOLDER`, `lmladder sample FOLDER`) as the same model."]
    intro = textwrap.fill(f"A GPT {origin} and exported as a transformers GPT-2 folder: "
                          "`AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained` load it with no "
                          "other code, and it computes the same logits as the lmladder model (to float32 rounding).",
                          100, break_long_words=False, break_on_hyphens=False)
    wrap = lambda text: textwrap.fill(text, 100, initial_indent="- ", subsequent_indent="  ",  # noqa: E731
                                      break_long_words=False, break_on_hyphens=False)
    made = ("from a run of `lmladder train`; the run's whole config is in lmladder.json, under `source.config`."
            if source.get("run") else "from a transformers folder.")
    return f"""---
library_name: transformers
pipeline_tag: text-generation
tags:
- lmladder
- gpt2
---

# {name}

{intro}

| | |
|---|---|
{table}

## Use

```python
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")
model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")
ids = [tokenizer.eos_token_id] + tokenizer.encode("ROMEO:", add_special_tokens=False)
out = model.generate(torch.tensor([ids]), max_new_tokens=100, do_sample=False)
print(tokenizer.decode(out[0, 1:], skip_special_tokens=True))
```

## What to know

{chr(10).join(wrap(n) for n in notes)}

## How it was made

`lmladder export {name} --format hf --out FOLDER`, {made}
"""
