"""The n-gram model's binary form (lmladder.ngrambin): it scores exactly as the Parquet tables
do, is memory-mapped, and refuses a damaged file with one error line."""

from __future__ import annotations

import json
import mmap
import shutil

import numpy as np
import pytest

from lmladder import ngram, ngrambin, ngrammodel, ngramtrie, registry
from lmladder.ngramio import load as load_folder
from tests.conftest import assert_error

TEXT = "the cat sat on the mat.\nthe dog sat on the log!\na cat and a dog.\n" * 3 + "zebra quux\n"
OTHER = ["the cat sat on a zebra; qx café!\n", "", "a dog. the quux the mat\nlog\n" * 4]
CORPUS = {"name": "x", "kind": "local", "sha256": "0"}
CONFIGS = {
    "char-kn": dict(unit="char", order=4),
    "char-addk": dict(unit="char", order=3, smoothing="addk"),
    "char-mle": dict(unit="char", order=2, smoothing="mle"),
    "word-kn": dict(unit="word", order=3, min_count=2),  # unknown words spelled by a letter model
}


def saved(tmp_path, name: str):
    model = ngram.train(ngram.NgramConfig(**CONFIGS[name]), [TEXT])
    ngram.save(model, tmp_path / name, CORPUS, "1,0,0")
    return tmp_path / name


def from_parquet(folder):
    """The folder's model read from its Parquet tables, as a folder without a binary is."""
    head = json.loads((folder / "lmladder.json").read_text())
    for part in ("model", "spelling"):
        if head.get(part):
            head[part].pop("binary")
    return load_folder(folder, head)


def per_unit(model, docs):
    if model.config.smoothing == "mle":  # which refuses to score a text with unseen n-grams
        return model.unit_logprob(model.encode(docs)[0])
    return model.score(docs).logprob


@pytest.mark.parametrize("name", list(CONFIGS))
def test_binary_scores_every_unit_as_the_parquet_tables(tmp_path, monkeypatch, name):
    folder = saved(tmp_path, name)
    binary, tables = registry.load_model(folder), from_parquet(folder)
    assert isinstance(binary.tables[-1], ngramtrie.MappedTable) and isinstance(tables.tables[-1], ngrammodel.Tables)
    if binary.spelling is not None:
        assert isinstance(binary.spelling.tables[0], ngramtrie.MappedTable)
    want = per_unit(tables, OTHER)
    assert np.array_equal(per_unit(binary, OTHER), want, equal_nan=True)  # bit for bit, unseen letters and words included
    # in small chunks and pieces, every unit still sees its whole context
    monkeypatch.setattr(ngrammodel, "CHUNK", 5)
    monkeypatch.setattr(ngrammodel, "LETTER_PIECE", 9)
    monkeypatch.setattr(ngrammodel, "WORD_PIECE", 9)
    assert np.array_equal(per_unit(binary, OTHER), want, equal_nan=True)
    assert np.array_equal(per_unit(tables, OTHER), want, equal_nan=True)
    # what the rest of lmladder reads whole (export, compression) decodes to the same tables
    for mine, theirs in zip(binary.tables, tables.tables):
        for field in ("keys", "logp", "backoff"):
            assert np.array_equal(getattr(mine, field), getattr(theirs, field))
    assert binary.parameters == tables.parameters


@pytest.mark.parametrize("name", ["char-kn", "char-addk", "word-kn"])
def test_every_context_sums_to_one_through_the_binary(tmp_path, name):
    model = registry.load_model(saved(tmp_path, name))
    for part in (model, model.spelling):
        if part is None:
            continue
        contexts = [[part.bos]] + [ids for n in range(1, part.order) for ids in part.ngram_ids(n).tolist()]
        probs = np.exp(part.next_logprobs(contexts)).sum(axis=1)
        assert np.allclose(probs, 1.0, atol=1e-9), probs.min()


def test_tables_are_memory_mapped_and_handed_back(tmp_path):
    model = registry.load_model(saved(tmp_path, "char-kn"))
    for t in model.tables[1:]:
        for array in (t.start, t.words, t._logp.data):
            base = array
            while isinstance(base, (np.ndarray, memoryview)):
                base = base.obj if isinstance(base, memoryview) else base.base
            assert isinstance(base, mmap.mmap)  # a view of the file, not a copy
    first = model.score(OTHER).logprob
    assert np.array_equal(model.score(OTHER).logprob, first)  # after its pages were handed back


def test_a_folder_without_a_binary_still_loads_and_scores(tmp_path, cli):
    folder = saved(tmp_path, "word-kn")
    want = registry.load_model(folder).score(OTHER).logprob
    head = json.loads((folder / "lmladder.json").read_text())
    for part in ("model", "spelling"):
        del head[part]["binary"]
    (folder / "lmladder.json").write_text(json.dumps(head))
    for name in ("ngram.bin", "spelling-ngram.bin"):
        (folder / name).unlink()
    old = registry.load_model(folder)
    assert isinstance(old.tables[0], ngrammodel.Tables)
    assert np.array_equal(old.score(OTHER).logprob, want)
    text = tmp_path / "t.txt"
    text.write_text(OTHER[0])
    assert cli("score", folder, text).exit_code == 0


def test_a_damaged_binary_is_one_error_line(tmp_path, cli):
    folder = saved(tmp_path, "char-kn")
    other = saved(tmp_path, "char-addk")
    text = tmp_path / "t.txt"
    text.write_text(OTHER[0])
    good = (folder / "ngram.bin").read_bytes()
    assert cli("score", folder, text).exit_code == 0

    def damaged(data: bytes, *fragments: str) -> None:
        (folder / "ngram.bin").write_bytes(data)
        assert_error(cli("score", folder, text), "ngram.bin", *fragments)

    damaged(good[:len(good) // 2], "truncated")
    damaged(good + b"\0" * 64, "bytes")
    flipped = bytearray(good)
    flipped[len(good) - 100] ^= 0x10
    damaged(bytes(flipped), "corrupt")
    # its magic bytes overwritten: the head no longer parses, and the file is reported as corrupt
    # by its CRC-32 (as a damage anywhere else would be), not as some other kind of file
    damaged(bytes(8) + good[8:], "CRC-32")
    damaged((other / "ngram.bin").read_bytes(), "another model")
    (folder / "ngram.bin").unlink()
    assert_error(cli("score", folder, text), "ngram.bin", "missing")
    shutil.copy(other / "ngram.bin", folder / "ngram.bin")  # another model's binary
    head = json.loads((folder / "lmladder.json").read_text())
    head["model"]["binary"] = json.loads((other / "lmladder.json").read_text())["model"]["binary"]
    head["model"]["binary"]["tables"] = {}
    (folder / "lmladder.json").write_text(json.dumps(head))
    assert_error(cli("score", folder, text), "ngram.bin", "another model")


def test_a_binary_of_another_version_is_refused(tmp_path, cli):
    folder = saved(tmp_path, "char-kn")
    data = bytearray((folder / "ngram.bin").read_bytes())
    data[8:12] = (99).to_bytes(4, "little")
    (folder / "ngram.bin").write_bytes(bytes(data))
    head = json.loads((folder / "lmladder.json").read_text())
    import zlib

    head["model"]["binary"]["crc32"] = zlib.crc32(bytes(data))
    (folder / "lmladder.json").write_text(json.dumps(head))
    text = tmp_path / "t.txt"
    text.write_text(OTHER[0])
    assert_error(cli("score", folder, text), "version 99")


def test_scoring_from_the_binary_imports_neither_torch_nor_arrow(tmp_path):
    import os
    import subprocess
    import sys

    folder = saved(tmp_path, "word-kn")
    text = tmp_path / "t.txt"
    text.write_text(OTHER[2])
    code = ("import sys; from lmladder.cli import app\n"
            f"sys.argv = ['lmladder', 'score', {str(folder)!r}, {str(text)!r}, '--json']\n"
            "try:\n    app()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print(sorted(m for m in ('torch', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_kenlm_compat_model_has_no_binary_and_loads_from_parquet(tmp_path):
    """It cannot be scored (its <unk> hides unknown words), so it gets no ngram.bin: its ARPA file
    is what it is for; it loads from Parquet, with lmplz's numbers."""
    model = ngram.train(ngram.NgramConfig(unit="word", order=3, kenlm_compat=True), [TEXT])
    ngram.save(model, tmp_path / "k", CORPUS, "1,0,0")
    assert not (tmp_path / "k" / "ngram.bin").exists()
    assert json.loads((tmp_path / "k" / "lmladder.json").read_text())["model"]["binary"] is None
    back = registry.load_model(tmp_path / "k")
    assert isinstance(back.tables[-1], ngrammodel.Tables)
    assert np.array_equal(back.kenlm_query(OTHER)[0], model.kenlm_query(OTHER)[0])


@pytest.mark.parametrize("V", [5, 64, 65, 130, 300])
def test_the_children_bitmaps_find_what_the_binary_search_finds(monkeypatch, V):
    """Every (context, unit) lookup, found or not, context -1 included, for one to five words of
    bits per context (V up to 300)."""
    monkeypatch.setattr(ngramtrie, "DENSE_MAX", 0)  # no dense tables: the search and the bitmaps
    rng = np.random.default_rng(V)
    contexts = 700
    children = [np.sort(rng.choice(V, size=rng.integers(0, min(V, 40) + 1), replace=False)) for _ in range(contexts)]
    start = np.concatenate([[0], np.cumsum([len(c) for c in children])]).astype(np.uint32)
    words = np.concatenate(children).astype(ngramtrie.uint_for(V - 1))
    rows = len(words)
    rank, cum = ngramtrie.children_bitmaps(start, words, V)
    assert rank.dtype == np.uint64 and len(rank) == contexts * -(-V // 64) and len(cum) == len(rank)
    values = ngramtrie.Column("f64", np.zeros(rows), None, rows)
    search = ngramtrie.MappedTable(V, rows, contexts, start, words, values, None)
    bitmap = ngramtrie.MappedTable(V, rows, contexts, start, words, values, None, rank, cum)
    ctx = rng.integers(-1, contexts, size=20000)
    unit = rng.integers(0, V, size=20000)
    found = search.find(ctx, unit, V)
    assert np.array_equal(bitmap.find(ctx, unit, V), found)
    assert (found >= 0).mean() > 0.05 and (found < 0).mean() > 0.05  # both kinds were asked
    # and the rows are right: each found n-gram is (its context, its unit)
    hit = found >= 0
    assert np.array_equal(words[found[hit]], unit[hit])
    assert np.all((start[ctx[hit]] <= found[hit]) & (found[hit] < start[ctx[hit] + 1]))


def test_the_bitmaps_go_to_the_lowest_orders_within_their_budget():
    # V = 100: two words and two one-byte counts a context, 18 bytes; orders 2 and 3 are dense
    # (100 and 5,000 contexts times 100 units are at most DENSE_MAX)
    rows = [100, 5000, 20000, 60000, 90000]
    assert ngramtrie.rank_orders(100, rows, 400_000) == [4]  # 360,000 bytes; order 5's would be 1.08 M more
    assert ngramtrie.rank_orders(100, rows, 2_000_000) == [4, 5]
    assert ngramtrie.rank_orders(100, rows, 100_000) == []


@pytest.mark.parametrize("name", ["char-kn", "word-kn"])
def test_scores_through_the_bitmaps_are_the_parquet_tables_scores(tmp_path, monkeypatch, name):
    monkeypatch.setattr(ngramtrie, "DENSE_MAX", 0)
    monkeypatch.setattr(ngrambin, "RANK_SHARE", 100.0)  # every order from 2 on gets its bitmaps
    folder = saved(tmp_path, name)
    binary = registry.load_model(folder)
    for part in (binary, binary.spelling):
        if part is not None:
            assert all(t.rank is not None for t in part.tables[1:])
    assert np.array_equal(per_unit(binary, OTHER), per_unit(from_parquet(folder), OTHER), equal_nan=True)


def test_the_program_scores_and_fails_as_the_command_line_does(tmp_path):
    """`python -m lmladder score` (lmladder.cli.run, which skips the interpreter's teardown after
    score): its JSON on stdout and exit 0; a bad model, one error line and exit 2."""
    import os
    import subprocess
    import sys

    folder = saved(tmp_path, "char-kn")
    text = tmp_path / "t.txt"
    text.write_text(OTHER[0])
    want = registry.load_model(folder).score([OTHER[0]]).logprob.sum()
    run = subprocess.run([sys.executable, "-m", "lmladder", "score", str(folder), str(text), "--json"],
                         capture_output=True, text=True, env=os.environ, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["nll_nats"] == pytest.approx(-want, rel=1e-12)
    (folder / "ngram.bin").write_bytes(b"\0" * 10)
    run = subprocess.run([sys.executable, "-m", "lmladder", "score", str(folder), str(text)],
                         capture_output=True, text=True, env=os.environ, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("error: ") and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_a_freshly_loaded_model_scores_the_same_from_its_first_pieces(tmp_path, monkeypatch):
    """Two threads score a letter model's first pieces at once: the code point -> letter table
    they share is built whole before either sees it (it was once filled in after being shared,
    and a thread read all escapes: ~5% of fresh loads scored wrong)."""
    monkeypatch.setattr(ngrammodel, "LETTER_PIECE", 9)
    folder = saved(tmp_path, "char-kn")
    docs = [OTHER[0] * 20, "", OTHER[2] * 10]
    want = registry.load_model(folder).score(docs).logprob
    for _ in range(100):
        assert np.array_equal(registry.load_model(folder).score(docs).logprob, want)


def test_a_checked_binary_is_not_read_again_until_it_changes(tmp_path, monkeypatch, cli):
    """The CRC-32 of a binary that matched is remembered with the file's identity (size, times,
    inode): the next load reads no byte of it for the check; a change of any byte, even with its
    modification time set back, is checked again and found corrupt."""
    import os
    import time

    monkeypatch.setattr(ngrambin, "RECENT_NS", 0)  # (the file was just written)
    folder = saved(tmp_path, "char-kn")
    text = tmp_path / "t.txt"
    text.write_text(OTHER[0])
    reads = []
    real = ngrambin._crc32
    monkeypatch.setattr(ngrambin, "_crc32", lambda path: reads.append(path) or real(path))
    assert cli("score", folder, text).exit_code == 0 and len(reads) == 1
    assert cli("score", folder, text).exit_code == 0 and len(reads) == 1  # remembered: not read again
    registry.load_model(folder)
    assert len(reads) == 1
    binary = folder / "ngram.bin"
    before = binary.stat()
    time.sleep(0.05)  # past a coarse clock tick
    data = bytearray(binary.read_bytes())
    data[len(data) - 100] ^= 0x10
    with open(binary, "r+b") as handle:  # in place: same inode, same size
        handle.write(bytes(data))
    os.utime(binary, ns=(before.st_atime_ns, before.st_mtime_ns))  # its modification time set back
    assert_error(cli("score", folder, text), "ngram.bin", "corrupt")
    assert len(reads) == 2


def test_a_binary_changed_just_before_its_check_is_not_remembered(tmp_path, monkeypatch):
    """A file whose change time is within RECENT_NS of its check is checked again next time
    (change times tick coarsely: a write just after the check could keep the same one)."""
    folder = saved(tmp_path, "char-kn")  # just written
    reads = []
    real = ngrambin._crc32
    monkeypatch.setattr(ngrambin, "_crc32", lambda path: reads.append(path) or real(path))
    registry.load_model(folder)
    registry.load_model(folder)
    assert len(reads) == 2
