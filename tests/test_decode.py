"""KV-cache decoding gives the logits of a full re-run, and the same samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmladder.decode import KVCache, StaticDecoder, forward_cached, generate
from lmladder.gpt import GPT, GPTConfig
from lmladder.sampling import SampleSettings, sample_rngs


@pytest.fixture(params=[("learned", 1), ("rotary", 1), ("learned", 2)], ids=["learned", "rotary", "looped"])
def model(request):
    torch.manual_seed(0)
    position, n_loop = request.param
    return GPT(GPTConfig(block_size=16, vocab_size=11, n_layer=2, n_head=2, n_embd=16, position=position,
                         n_loop=n_loop)).eval()


def test_cached_steps_match_full_forward(model):
    idx = torch.randint(0, 11, (3, 12))
    cache = KVCache(model, 3, "cpu", torch.float32)
    logits = [forward_cached(model, idx[:, :5], cache, 0)]
    for t in range(5, 12):
        logits.append(forward_cached(model, idx[:, t:t + 1], cache, t))
    full = model(idx)
    for j, t in enumerate(range(4, 12)):
        torch.testing.assert_close(logits[j], full[:, t], atol=1e-5, rtol=1e-5)


def test_generation_with_and_without_cache_agree_within_a_block(model):
    settings = SampleSettings(temperature=1.0)
    a = generate(model, [1, 2, 3], 12, settings, sample_rngs(4, 2), vocab_size=11, use_cache=True)
    b = generate(model, [1, 2, 3], 12, settings, sample_rngs(4, 2), vocab_size=11, use_cache=False)
    assert a == b and len(a[0]) == 12  # 3 + 12 < block 16: both see the same context


def test_generation_slides_past_the_block(model):
    out = generate(model, [1], 60, SampleSettings(0.0), sample_rngs(0, 1), vocab_size=11)
    assert len(out[0]) == 60 and all(0 <= t < 11 for t in out[0])


def test_stop_and_ban(model):
    greedy = generate(model, [1, 2], 5, SampleSettings(0.0), sample_rngs(0, 1), vocab_size=11)[0]
    first = greedy[0]
    assert generate(model, [1, 2], 5, SampleSettings(0.0), sample_rngs(0, 1), vocab_size=11, stop_id=first) == [[]]
    banned = generate(model, [1, 2], 5, SampleSettings(0.0), sample_rngs(0, 1), vocab_size=11, ban_id=first)[0]
    assert first not in banned[:1]


def test_batch_does_not_change_a_sample(model):
    one = generate(model, [3], 20, SampleSettings(0.9, top_k=5), sample_rngs(9, 1), vocab_size=11)
    four = generate(model, [3], 20, SampleSettings(0.9, top_k=5), sample_rngs(9, 4), vocab_size=11)
    assert four[0] == one[0]


def test_static_feed_matches_the_growing_cache(model):
    """The fixed-shape step (what a GPU replays as a CUDA graph) gives forward_cached's logits."""
    idx = torch.randint(0, 11, (2, 16))
    a, b = KVCache(model, 2, "cpu", torch.float32), KVCache(model, 2, "cpu", torch.float32)
    forward_cached(model, idx[:, :4], a, 0)
    forward_cached(model, idx[:, :4], b, 0)
    dec = StaticDecoder(model, b, SampleSettings(0.0), torch.zeros(1, 2, dtype=torch.float64), vocab_size=11)
    dec.pos.fill_(4)
    for t in range(4, 16):
        want = forward_cached(model, idx[:, t:t + 1], a, t)
        dec.tok.copy_(idx[:, t:t + 1])
        dec._feed()
        torch.testing.assert_close(dec.logits, want, atol=1e-5, rtol=1e-5)
    assert int(dec.pos) == 16
    torch.testing.assert_close(b.k, a.k)


@pytest.mark.parametrize("block, position", [(4, "learned"), (16, "learned"), (40, "learned"), (16, "rotary")])
def test_static_decoding_gives_the_same_samples(block, position):
    """Device steps (draw, feed, draw, ...) and fixed-shape slides (draw, re-encode the last 3/4
    of the block) give the host loop's samples."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=block, vocab_size=11, n_layer=2, n_head=2, n_embd=16, position=position)).eval()
    for settings in (SampleSettings(temperature=0.9), SampleSettings(0.0), SampleSettings(1.1, top_k=3)):
        for prompt in ([1, 2, 3], list(range(11)) * 4):  # the second fills the block at once
            a = generate(model, prompt, 130, settings, sample_rngs(2, 3), vocab_size=11, static=False)
            b = generate(model, prompt, 130, settings, sample_rngs(2, 3), vocab_size=11, static=True)
            assert a == b and len(a[0]) == 130


@pytest.mark.parametrize("settings", [SampleSettings(0.0), SampleSettings(0.8), SampleSettings(1.0, top_k=3),
                                      SampleSettings(0.7, top_p=0.6), SampleSettings(1.3, top_k=4, top_p=0.9)])
def test_device_sampler_picks_what_the_host_sampler_picks(settings):
    from lmladder.sampling import choose, choose_torch

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(400, 9)).astype(np.float32)
    logits[:50, 2:5] = 1.5  # ties, for top-k and argmax
    want = choose(logits, settings, [np.random.default_rng([1, i]) for i in range(400)])
    u = torch.tensor([np.random.default_rng([1, i]).random() for i in range(400)], dtype=torch.float64)
    got = choose_torch(torch.from_numpy(logits), settings, u).numpy()
    assert (got == want).all()


def test_static_decoding_stops_bans_and_streams_like_the_host_loop(model):
    first = generate(model, [1, 2], 5, SampleSettings(0.0), sample_rngs(0, 1), vocab_size=11, static=False)[0][0]
    for static in (False, True):
        kw = dict(vocab_size=11, static=static)
        assert generate(model, [1, 2], 40, SampleSettings(0.0), sample_rngs(0, 1), stop_id=first, **kw) == [[]]
        assert first not in generate(model, [1, 2], 5, SampleSettings(0.0), sample_rngs(0, 1), ban_id=first, **kw)[0][:1]
    seen = {}
    for static in (False, True):
        steps = []
        out = generate(model, [3], 70, SampleSettings(0.9), sample_rngs(5, 2), vocab_size=11, static=static,
                       on_tokens=lambda ids, alive: steps.append(ids.copy()) or len(steps) == 45)
        seen[static] = (out, [s.tolist() for s in steps])
    assert seen[True] == seen[False] and len(seen[True][0][0]) == 45


def test_blocks_stored_in_bf16_give_autocast_logits(model):
    """The GPU decoder stores the blocks' Linear weights in bf16 so autocast need not cast them at
    every token; autocast would round them the same way, so the logits do not change (checked
    with the CPU's bf16 autocast)."""
    import copy

    from lmladder.decode import cast_block_linears

    idx = torch.randint(0, 11, (2, 9))
    twin = cast_block_linears(copy.deepcopy(model), torch.bfloat16)
    assert twin.transformer.h[0].attn.c_attn.weight.dtype == torch.bfloat16
    assert twin.transformer.wte.weight.dtype == torch.float32
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(model(idx), twin(idx))


def test_cached_steps_match_full_forward_with_a_bf16_residual_stream():
    """With residual_dtype "autocast" under (the CPU's bf16) autocast, the cached decoder's stream
    is bf16 like the full forward's, and its logits are the full forward's."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=11, n_layer=2, n_head=2, n_embd=16,
                          residual_dtype="autocast")).eval()
    idx = torch.randint(0, 11, (2, 10))
    cache = KVCache(model, 2, "cpu", torch.bfloat16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.embed(idx, torch.arange(10)).dtype == torch.bfloat16
        logits = [forward_cached(model, idx[:, :4], cache, 0)]
        logits += [forward_cached(model, idx[:, t:t + 1], cache, t) for t in range(4, 10)]
        full = model(idx)
    for j, t in enumerate(range(3, 10)):
        torch.testing.assert_close(logits[j].float(), full[:, t].float(), atol=0.03, rtol=0.03)


@pytest.mark.parametrize("prompt_len", [3, 16])
def test_capture_warm_up_runs_from_any_prompt_and_undoes_itself(model, prompt_len):
    """A GPU capture first runs step() and slide() once; a prompt that fills the block left the
    cache full, where a step from there wrote past its end (a device assert on the H200, with
    `lmladder sample` given a long prompt). The warm-up runs from a valid position and undoes
    its writes, so the samples after it are the host loop's."""
    prompt = torch.arange(prompt_len).remainder(11).view(1, -1).repeat(2, 1)
    u = torch.as_tensor(np.stack([g.random(40) for g in sample_rngs(3, 2)], axis=1))
    runs = []
    for warm in (False, True):
        cache = KVCache(model, 2, "cpu", torch.float32)
        dec = StaticDecoder(model, cache, SampleSettings(0.9), u.clone(), vocab_size=11)
        dec.start(prompt)
        before = [x.clone() for x in (cache.k, dec.logits, dec.pos, dec.ctx)]
        if warm:
            dec.warm_up()
            for a, b in zip(before, (cache.k, dec.logits, dec.pos, dec.ctx)):
                assert torch.equal(a, b)
        pos = prompt_len
        for _ in range(40):
            if pos == 16:
                dec.slide()
                pos = dec.keep
            else:
                dec.step()
                pos += 1
        runs.append(dec.made.clone())
    assert torch.equal(runs[0], runs[1])
