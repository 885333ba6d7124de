"""Building n-gram models lean: narrow streams and tables, counting and estimation that are the
same bit for bit however they are chunked, and the process-wide allocator settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from lmladder import counts, ngram
from lmladder.ngrammodel import NgramConfig
from lmladder.ngramunits import kenlm_units, letter_units

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 30) + "zq\n"
DOCS = [TEXT[:700], "x", TEXT[700:], "ab\n" * 40]


def test_streams_and_tables_are_narrow():
    units, bos, _, _, seq = letter_units(DOCS)
    assert seq.dtype == np.uint8 and seq[0] == bos
    assert kenlm_units(["a b\nb a b\n"])[4].dtype == np.uint8
    c = counts.count(seq, 4, len(units), bos)
    for t in c.tables:
        assert {t.ctx.dtype, t.word.dtype, t.count.dtype, t.adjusted.dtype} == {np.dtype(np.uint32)}
    assert c.tables[-1].adjusted is c.tables[-1].count  # the top order's adjusted counts are its raw ones


def test_counting_letters_takes_about_one_key_a_position():
    """The packed path holds one uint64 window a position (plus a byte); the old per-order
    sorts held ~58 bytes a position."""
    units, bos, _, _, seq = letter_units([TEXT * 100] * 32)  # ~5.9M positions, few distinct n-grams
    tracemalloc.start()
    try:
        counts.count(seq, 3, len(units), bos)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12 * len(seq), peak / len(seq)


@pytest.mark.parametrize("unit,kenlm", [("char", False), ("word", True)])
def test_models_are_identical_whatever_the_chunk_and_memory(monkeypatch, unit, kenlm):
    config = NgramConfig(unit=unit, order=4, kenlm_compat=kenlm, min_count=1)
    whole = ngram.train(config, DOCS)
    monkeypatch.setattr(counts, "CHUNK", 3)  # estimation and suffix search in tiny steps
    pieces = ngram.train(config, DOCS, memory_bytes=1)  # counted in pieces of 256 units, merged
    for a, b in zip(whole.tables, pieces.tables):
        assert np.array_equal(a.keys, b.keys)
        assert a.logp.tobytes() == b.logp.tobytes() and a.backoff.tobytes() == b.backoff.tobytes()
    assert whole.meta["discounts"] == pieces.meta["discounts"]


def test_estimation_releases_the_counts():
    from lmladder.ngramestimate import from_counts

    units, bos, esc, _, seq = letter_units(DOCS)
    c = counts.count(seq, 3, len(units), bos)
    sizes = [len(t) for t in c.tables]
    model = from_counts(NgramConfig(order=3), units, bos, esc, None, c, {})
    assert [len(t.keys) for t in model.tables] == sizes
    assert all(len(t) == 0 for t in c.tables)


def _settings(env: dict[str, str], numpy_first: bool = False) -> dict:
    code = ("import json\n" + ("import numpy\n" if numpy_first else "") +
            "from lmladder import runtime\nruntime.configure()\n"
            "import numpy, pyarrow\n"
            "print(json.dumps({'huge': bool(numpy._core.multiarray._get_madvise_hugepage()),"
            " 'pool': pyarrow.default_memory_pool().backend_name}))")
    base = {k: v for k, v in os.environ.items() if k not in ("NUMPY_MADVISE_HUGEPAGE", "ARROW_DEFAULT_MEMORY_POOL")}
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the settings are Linux (glibc, THP) ones")
def test_runtime_settings_and_user_overrides():
    assert _settings({}) == {"huge": False, "pool": "system"}
    assert _settings({}, numpy_first=True)["huge"] is False  # numpy already loaded: its runtime switch
    assert _settings({"NUMPY_MADVISE_HUGEPAGE": "1", "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}) == \
        {"huge": True, "pool": "mimalloc"}


def test_the_command_line_applies_the_settings(monkeypatch):
    from lmladder import cli, runtime

    called = []
    monkeypatch.setattr(runtime, "configure", lambda: called.append(1))
    monkeypatch.setattr(cli, "make_app", lambda names=None: lambda: None)
    cli.main()
    assert called == [1]


def test_glibc_thresholds_only_for_ngram_builds(cli, tmp_path, monkeypatch):
    """lean_malloc (fixed mmap and trim thresholds) is the n-gram builds' own: a CPU training run
    is a third slower under it (torch's tensors are mapped afresh each step)."""
    from lmladder import runtime

    called = []
    monkeypatch.setattr(runtime, "lean_malloc", lambda: called.append(1))
    assert cli("ngram", "train", "tinyshakespeare", "--order", "2", "--out", tmp_path / "ng").exit_code == 0
    assert cli("ngram", "count", "tinyshakespeare", "--order", "2", "--out", tmp_path / "nc").exit_code == 0
    assert called == [1, 1]
    result = cli("train", "tinyshakespeare", "--preset", "gpt-tiny", "--max-steps", "1", "--out", tmp_path / "gpt")
    assert result.exit_code == 0 and called == [1, 1]
