"""The CUDA-graph paths against their eager selves, on a GPU (skipped without one; the CPU tests
run the same arithmetic eagerly: test_decode.py, test_canonical.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmladder import canonical
from lmladder.decode import KVCache, StaticDecoder, generate
from lmladder.gpt import GPT, GPTConfig
from lmladder.sampling import SampleSettings, sample_rngs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
V, EOT, BLOCK = 500, 499, 32


@pytest.fixture(scope="module", params=[1, 2], ids=["one-pass", "looped"])
def model(request):
    torch.manual_seed(0)
    config = GPTConfig(block_size=BLOCK, vocab_size=512, n_layer=2, n_head=2, n_embd=32, n_loop=request.param)
    return GPT(config).to("cuda").eval()


@pytest.fixture(scope="module")
def table():
    """A random pair table (each token may be followed by ~1% of the others, and by end-of-text)."""
    t = np.random.default_rng(0).random((V, V)) < 0.01
    t[EOT], t[:, EOT] = True, True
    return t


def _decode(model, prompt, settings, graphs: bool, can=None, n=100):
    """A StaticDecoder's tokens, replayed as CUDA graphs or run eagerly (the same kernels)."""
    history = torch.tensor([prompt] * 4, device="cuda")[:, -BLOCK:]
    u = torch.as_tensor(np.stack([g.random(n) for g in sample_rngs(1, 4)], axis=1), device="cuda")
    dec = StaticDecoder(model, KVCache(model, 4, "cuda", torch.float32), settings, u, vocab_size=V,
                        canonical=can)
    dec.start(history)
    if graphs:
        dec.capture(None)
    pos = history.shape[1]
    for _ in range(n):
        if pos == BLOCK:
            dec.slide()
            pos = dec.keep
        else:
            dec.step()
            pos += 1
    return dec.made.cpu()


@pytest.mark.parametrize("prompt_len", [3, 40])  # 40 fills the block: the capture's warm-up once wrote past it
@pytest.mark.parametrize("settings", [SampleSettings(1.0), SampleSettings(0.9, top_p=0.95)])
def test_replayed_graphs_draw_what_eager_steps_draw(model, table, prompt_len, settings):
    prompt = [EOT] + list(range(5, 5 + prompt_len - 1))
    for can in (None, canonical.Canonical(table, "cuda")):
        assert torch.equal(_decode(model, prompt, settings, True, can), _decode(model, prompt, settings, False, can))


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_canonical_graph_sampling_keeps_to_the_table(model, table, dtype):
    """Through generate() (graphs on a GPU), from a prompt longer than the block: EPS = 0.1% of
    the mass is left on refused pairs, so a few hundred tokens draw almost none."""
    can = canonical.Canonical(table, "cuda")
    out = generate(model, [EOT] * 40, 150, SampleSettings(0.9), sample_rngs(2, 8), vocab_size=V,
                   static=True, dtype=dtype, canonical=can)
    refused = sum(not table[a, b] for s in out for a, b in zip([EOT] + s[:-1], s))
    assert sum(map(len, out)) == 8 * 150 and refused <= 10


@torch.no_grad()
def test_compression_steps_replayed_match_eager(model, table):
    """The coder's fixed-shape steps (compress), replayed as graphs or run eagerly: the same
    probabilities, which sum to 1 (the random table has rows whose only follower is end-of-text,
    which the coder masks: there the model's own distribution stands)."""
    from lmladder.compress.neural import _GPTSteps

    can = canonical.Canonical(table, "cuda")
    runs = []
    for graphs in (False, True):
        steps = _GPTSteps(model, 4, V, EOT, "cuda", can)
        if graphs:
            steps.capture()
        g = torch.Generator().manual_seed(1)
        probs = []
        for _ in range(80):  # past the block: slides too
            steps.feed(torch.randint(0, V - 1, (4,), generator=g).to("cuda"))
            probs.append(steps.probs.clone())
        runs.append(torch.stack(probs))
    assert torch.equal(runs[0], runs[1])
    torch.testing.assert_close(runs[1].sum(-1), torch.ones(80, 4, device="cuda"))
