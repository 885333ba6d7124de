"""Reversible word units, in the style of GPT-2's pre-tokeniser.

A unit is one of: an English contraction suffix ('s 't 're 've 'm 'll 'd), a run of letters, a
run of digits or a run of other symbols (punctuation, `_`), each taking one leading space if
there is one; a single newline; or a run of other whitespace (a run before a word gives its last
space to the word). Every character belongs to exactly one unit, so

    "".join(units(text)) == text

and word rungs can be scored in bits per character. Tokenising is one regular-expression pass.
"""

from __future__ import annotations

import re

RULE = "gpt2-style: contractions | ' '?letters | ' '?digits | ' '?symbols | newline | whitespace"
PATTERN = re.compile(
    r"""'(?:s|t|re|ve|m|ll|d)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\n|[^\S\n]+(?!\S)|[^\S\n]+"""
)


def units(text: str) -> list[str]:
    """The word units of `text`; concatenated they give `text` back exactly."""
    return PATTERN.findall(text)
