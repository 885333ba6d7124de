"""The one sampling loop (lmladder.generate): limits, stop strings, streaming, the fast path, and
byte-level tokens that end inside a character."""

from __future__ import annotations

import numpy as np
import pytest

from lmladder.errors import LadderError
from lmladder.generate import _draw_units, generate
from lmladder.rung import DEFAULT_MAX_NEW_CHARS
from lmladder.sampling import SampleSettings, sample_rngs


class Cycle:
    """A toy rung over units 'a', 'b', 'c', '.' (3 ends a sample when `stops`): after unit u
    the next is u + 1 mod 4 with probability 0.97."""

    def __init__(self, stops: bool = False):
        self.stop_unit = 3 if stops else None
        self.parameters = 0

    def prompt_units(self, prompt: str) -> list[int]:
        return ["abc.".index(ch) for ch in prompt] or [3]

    def next_logprobs(self, contexts):
        out = np.full((len(contexts), 4), np.log(0.01))
        for i, ctx in enumerate(contexts):
            out[i, (ctx[-1] + 1) % 4] = np.log(0.97)
        return out

    def stream_decoder(self, rng, settings=None, prompt=""):
        return lambda unit: "abc."[unit]


def test_default_length_and_prompt():
    text = generate(Cycle(), "ab", settings=SampleSettings(0))[0]
    assert text.startswith("abc.abc") and len(text) == 2 + DEFAULT_MAX_NEW_CHARS


def test_max_new_tokens_and_max_new_chars():
    assert generate(Cycle(), "", max_new_tokens=6, settings=SampleSettings(0)) == ["abc.ab"]
    assert generate(Cycle(), "", max_new_chars=3, settings=SampleSettings(0)) == ["abc"]


def test_stop_unit_ends_a_sample_and_is_not_text():
    assert generate(Cycle(stops=True), "", max_new_chars=50, settings=SampleSettings(0)) == ["abc"]


def test_stop_strings_cut_the_text_and_streaming_holds_back_their_heads():
    plain = generate(Cycle(), "", max_new_chars=40, settings=SampleSettings(0), stop=["c.a"])
    assert plain == ["ab"]
    pieces = []
    streamed = generate(Cycle(), "", max_new_chars=40, settings=SampleSettings(0), stop=["c.a"],
                        on_text=lambda i, p: pieces.append(p))
    assert streamed == plain and "".join(pieces) == "ab"
    # the earliest of several stop strings wins; a stop string never seen changes nothing
    assert generate(Cycle(), "", max_new_chars=40, settings=SampleSettings(0), stop=["zz", "a.", "bc"]) == ["a"]
    assert generate(Cycle(), "", max_new_chars=8, settings=SampleSettings(0), stop=["zz"]) == ["abc.abc."]


def test_samples_do_not_depend_on_the_batch_or_streaming():
    settings = SampleSettings(1.5)
    batch = generate(Cycle(), "a", max_new_chars=30, settings=settings, seed=4, num_samples=3)
    alone = generate(Cycle(), "a", max_new_chars=30, settings=settings, seed=4, num_samples=1)
    assert alone[0] == batch[0] and len(set(batch)) > 1
    seen: dict[int, str] = {}
    streamed = generate(Cycle(), "a", max_new_chars=30, settings=settings, seed=4, num_samples=3,
                        on_text=lambda i, p: seen.__setitem__(i, seen.get(i, "") + p))
    assert streamed == batch and [("a" + seen[i]) for i in range(3)] == batch


@pytest.mark.parametrize("kwargs, fragment", [
    ({"max_new_chars": 0}, "--max-new-chars"), ({"max_new_tokens": -1}, "--max-new-tokens"),
    ({"max_new_chars": 3, "max_new_tokens": 3}, "not both"), ({"num_samples": 0}, "--num-samples"),
    ({"seed": -1}, "--seed"), ({"stop": [""]}, "--stop"),
])
def test_bad_requests(kwargs, fragment):
    with pytest.raises(LadderError, match=fragment):
        generate(Cycle(), "", **kwargs)


def _tiny_gpt_rung(tokenizer):
    import torch

    from lmladder.config import resolve
    from lmladder.neural import NeuralRung, build_model

    config = resolve("gpt", "gpt-tiny", None, {"model": {"vocab_size": 64, "block_size": 16}})
    torch.manual_seed(0)
    return NeuralRung(build_model(config), tokenizer, config)


def test_the_gpt_fast_path_draws_what_the_loop_draws():
    """decode_units (key-value cache) against next_logprobs through the plain loop, past the block."""
    from lmladder.tokens import CharTokenizer
    from lmladder.vocab import CharVocab

    rung = _tiny_gpt_rung(CharTokenizer(CharVocab("abcdefgh \n")))
    settings = SampleSettings(0.9, top_k=6)
    for use_fast in (True, False):
        got = []
        prompt = rung.prompt_units("abc")

        def book(ids, alive):
            got.append(np.where(alive, ids, -1))  # what a finished sample draws is nobody's text
            return False

        if use_fast:
            rung.decode_units(prompt, 60, settings, sample_rngs(3, 6), book)
        else:
            _draw_units(rung, prompt, 60, settings, sample_rngs(3, 6), book)
        if use_fast:
            fast = np.array(got)
        else:
            slow = np.array(got)
    assert fast.shape == slow.shape and np.array_equal(fast, slow)
    assert len(prompt) + (fast >= 0).sum(axis=0).max() > 16 + 5 + 1  # a sample slid its cache twice


def test_byte_level_tokens_stream_whole_characters():
    from lmladder import bpe

    text = ["naïve café — ünïcödé 😀 " * 40]
    tok = bpe.train(text, bpe.BPESettings(vocab_size=300))
    ids = tok.encode("café 😀 ünï").tolist()
    piece = tok.stream_decoder(np.random.default_rng(0))
    out = [piece(i) for i in ids]
    assert "".join(out) == "café 😀 ünï"
    assert all("\ufffd" not in p for p in out)


class Bytes(Cycle):
    """A rung over a BPE's tokens that draws a fixed list of them (greedy), then stops at `stop`."""

    def __init__(self, tok, units: list[int]):
        self.tok, self.units, self.stop_unit, self.parameters = tok, units, tok.eot_id, 0

    def prompt_units(self, prompt: str) -> list[int]:
        return [self.tok.eot_id]

    def next_logprobs(self, contexts):
        out = np.full((len(contexts), self.tok.vocab_size), -30.0)
        for i, ctx in enumerate(contexts):
            out[i, self.units[min(len(ctx) - 1, len(self.units) - 1)]] = 0.0
        return out

    def stream_decoder(self, rng, settings=None, prompt=""):
        return self.tok.stream_decoder(rng)


def test_a_sample_ending_inside_a_character_keeps_its_bytes():
    """A sample that ends (its token limit, or end-of-text) after a token that stops inside a
    character used to lose that token's bytes; they come out as U+FFFD, as decode gives them."""
    from lmladder import bpe

    tok = bpe.train(["café 😀 " * 40], bpe.BPESettings(vocab_size=270))
    smile = tok.encode("😀").tolist()
    first = next(u for u in range(tok.vocab_size) if tok.decode([u]) == "\ufffd" and u != tok.eot_id)
    cases = [([first], {"max_new_tokens": 1}), ([first, tok.eot_id], {"max_new_chars": 9}),
             ([tok.encode("a").tolist()[0], first], {"max_new_tokens": 2})]
    for units, limits in cases:
        pieces = []
        out = generate(Bytes(tok, units), "", settings=SampleSettings(0), on_text=lambda i, p: pieces.append(p),
                       **limits)[0]
        drawn = [u for u in units if u != tok.eot_id][: limits.get("max_new_tokens", 9)]
        assert out == tok.decode(drawn) == "".join(pieces) and out.endswith("\ufffd")
    # a whole character split over tokens still comes out whole; a cut by max_new_chars stays a cut
    assert len(smile) > 1 and generate(Bytes(tok, smile), "", max_new_tokens=len(smile),
                                       settings=SampleSettings(0)) == ["😀"]
    assert generate(Bytes(tok, [tok.encode("a").tolist()[0], first]), "", max_new_chars=1,
                    settings=SampleSettings(0)) == ["a"]
