"""N-gram models: normalisation, open-vocabulary exactness, save/load, the CLI and bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from lmladder import metrics, ngram
from lmladder.generate import generate
from lmladder.sampling import SampleSettings
from tests.conftest import assert_error

TEXT = "the cat sat on the mat.\nthe dog sat on the log!\na cat and a dog.\n" * 3 + "zebra quux\n"


@pytest.mark.parametrize("unit,order,smoothing", [("char", 3, "kn"), ("char", 2, "addk"), ("word", 3, "kn")])
def test_every_context_sums_to_one(unit, order, smoothing):
    model = ngram.train(ngram.NgramConfig(unit=unit, order=order, smoothing=smoothing, min_count=2), [TEXT])
    contexts = [[model.bos]]
    for n in range(1, order):  # every stored n-gram of order < N as a context
        contexts += model.ngram_ids(n).tolist()
    probs = np.exp(model.next_logprobs(contexts)).sum(axis=1)
    assert np.allclose(probs, 1.0, atol=1e-9), probs.min()
    if model.spelling is not None:
        sp = model.spelling
        assert np.allclose(np.exp(sp.next_logprobs([[sp.bos], [sp.bos, 0], [0, 1]])).sum(axis=1), 1.0)


@pytest.mark.parametrize("unit,order,smoothing", [("char", 4, "kn"), ("char", 1, "kn"), ("char", 3, "addk"),
                                                  ("word", 3, "kn")])
def test_next_logprobs_scores_each_context_as_its_own_stream(unit, order, smoothing):
    """The batched next_logprobs (contexts of any length side by side) equals scoring
    `last n-1 units, candidate` for each context alone, as a stream cut off before its start."""
    model = ngram.train(ngram.NgramConfig(unit=unit, order=order, smoothing=smoothing, min_count=2), [TEXT])
    prompt = model.prompt_units("the cat")
    assert prompt[0] == model.bos and len(prompt) > 2
    contexts = [[], [model.bos], prompt, prompt[:2], [3, model.bos, 4], list(range(8))]
    batched = model.next_logprobs(contexts)
    assert batched.shape == (len(contexts), model.V) and np.all(batched[:, model.bos] == -np.inf)
    for ctx, row in zip(contexts, batched):
        hist = ctx[max(0, len(ctx) - (order - 1)):]
        for w in range(model.V):
            if w == model.bos:
                continue
            seq = np.array(hist + [w])
            starts = np.arange(len(seq)) == 0
            assert row[w] == model.unit_logprob(seq, starts)[-1], (ctx, w)
    decode = model.stream_decoder(np.random.default_rng(0))
    assert decode(model.escape) != "" and model.stop_unit is None
    assert "".join(decode(u) for u in prompt[1:]) == "the cat"


def test_open_vocabulary_word_model_is_exact():
    model = ngram.train(ngram.NgramConfig(unit="word", order=2, min_count=2), [TEXT])
    test = "the zebra sat on a quux mat, xylophone!\n"
    scores = model.score([test])
    m = metrics.compute(scores, [test])  # checks every character is covered
    assert m.chars == len(test) and np.all(np.isfinite(scores.logprob))
    seq, texts = model.encode([test])
    unk = (seq[1:] == model.escape)
    assert unk.sum() >= 3  # zebra, quux, xylophone and "," are spelled out
    plain = model.unit_logprob(seq)[1:]
    spelled = scores.logprob - plain
    assert np.all(spelled[~unk] == 0) and np.all(spelled[unk] < 0)


def test_a_kenlm_compat_sample_keeps_its_tokens_apart():
    """A --kenlm-compat model's units are whitespace tokens and line ends (no spaces among them):
    its samples put a space between the tokens of a line, none at a line's start."""
    model = ngram.train(ngram.NgramConfig(unit="word", order=2, kenlm_compat=True), [TEXT])
    known = set(model.units) | {"<unk>"}
    for prompt, temperature in (("", 0.0), ("", 1.0), ("the", 0.0), ("the cat\n", 1.0), ("the ", 1.0)):
        text = generate(model, prompt, max_new_tokens=60, settings=SampleSettings(temperature), seed=3)[0]
        assert text.startswith(prompt) and set(text.split()) <= known, (prompt, text)
        new = text[len(prompt):]
        assert " \n" not in new and "\n " not in new and "  " not in new, (prompt, text)
        assert not new.startswith(" ") or not (prompt == "" or prompt[-1].isspace())
    assert generate(model, "the", max_new_tokens=2, settings=SampleSettings(0.0))[0].startswith("the ")


def test_auto_min_count_tunes_on_val():
    model = ngram.train(ngram.NgramConfig(unit="word", order=2, min_count=0), [TEXT], val=[TEXT[:60]])
    assert model.config.min_count in (2, 3, 4, 6)


def test_save_load_round_trip(tmp_path):
    model = ngram.train(ngram.NgramConfig(unit="word", order=3, min_count=2), [TEXT])
    ngram.save(model, tmp_path / "m", {"name": "x", "kind": "local", "sha256": "0"}, "1,0,0")
    from lmladder import registry

    back = registry.load_model(tmp_path / "m")
    doc = ["the cat sat on a zebra\n"]
    assert np.allclose(back.score(doc).logprob, model.score(doc).logprob)
    assert generate(back, "the", max_new_chars=20, seed=3) == generate(model, "the", max_new_chars=20, seed=3)


def test_mle_refuses_to_score_unseen():
    model = ngram.train(ngram.NgramConfig(unit="char", order=3, smoothing="mle"), [TEXT])
    assert len(generate(model, "the", max_new_chars=30, seed=1)[0]) == 33
    with pytest.raises(Exception, match="probability 0"):
        model.score(["qqq"])


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text(TEXT * 20, encoding="utf-8")
    return path


def test_cli_count_stats_train_score_export(cli, corpus_file, tmp_path):
    r = cli("ngram", "count", corpus_file, "--unit", "char", "--order", "3", "--out", tmp_path / "c", "--json")
    assert r.exit_code == 0, r
    r = cli("ngram", "stats", tmp_path / "c", "--json")
    assert r.exit_code == 0, r
    rows = json.loads(r.stdout)["orders"]
    assert [x["order"] for x in rows] == [1, 2, 3] and rows[0]["val_unseen"] is not None
    assert cli("ngram", "stats", tmp_path / "c").exit_code == 0
    r = cli("ngram", "count", corpus_file, "--unit", "word", "--order", "2", "--out", tmp_path / "cw",
            "--memory", "10M")
    assert r.exit_code == 0, r
    r = cli("ngram", "train", corpus_file, "--unit", "char", "--order", "4", "--out", tmp_path / "m", "--json")
    assert r.exit_code == 0, r
    r = cli("score", tmp_path / "m", corpus_file, "--split", "test", "--json")
    assert r.exit_code == 0, r
    assert 0 < json.loads(r.stdout)["bits_per_char"] < 3
    r = cli("export", tmp_path / "m", "--format", "arpa", "--out", tmp_path / "m.arpa")
    assert r.exit_code == 0, r
    text = (tmp_path / "m.arpa").read_text()
    assert text.startswith("\\data\\") and "\n-99\t</s>\t0\n" in text  # KenLM refuses a file without </s>
    n1 = int(text.split("ngram 1=")[1].split()[0])
    assert n1 == len(text.split("\\1-grams:\n")[1].split("\n\n")[0].splitlines())
    assert (tmp_path / "m.arpa").stat().st_mode & 0o044 == 0o044 & ~_umask()  # readable as new files are
    # a .gz name gets gzip (as KenLM and arpa.read take it), the same text, the same bytes each time
    import gzip

    from lmladder import arpa

    for k in (1, 2):
        assert cli("export", tmp_path / "m", "--format", "arpa", "--out", tmp_path / f"{k}.arpa.gz").exit_code == 0
    packed = (tmp_path / "1.arpa.gz").read_bytes()
    assert packed[:2] == b"\x1f\x8b" and packed == (tmp_path / "2.arpa.gz").read_bytes()
    assert gzip.decompress(packed).decode() == text
    assert arpa.read(tmp_path / "1.arpa.gz") == arpa.read(tmp_path / "m.arpa")
    assert not list(tmp_path.glob(".*.tmp"))
    (tmp_path / "1.arpa.gz").write_bytes(packed[:12] + b"\xff" * 40)  # a damaged gzip (zlib.error was not caught)
    assert_error(cli("export", tmp_path / "m", "--format", "arpa", "--out", tmp_path / "1.arpa.gz", "--force"),
                 "cannot be read")
    r = cli("ngram", "train", corpus_file, "--unit", "word", "--order", "2", "--kenlm-compat", "--split", "1,0,0",
            "--out", tmp_path / "k")
    assert r.exit_code == 0, r
    assert_error(cli("score", tmp_path / "k", corpus_file, "--split-spec", "0.9,0.05,0.05"), "kenlm-compat")
    for smoothing in ("addk", "mle"):
        r = cli("ngram", "train", corpus_file, "--order", "2", "--smoothing", smoothing, "--out", tmp_path / smoothing)
        assert r.exit_code == 0, r
    assert_error(cli("export", tmp_path / "addk", "--format", "arpa", "--out", tmp_path / "x.arpa"), "Kneser-Ney")


@pytest.mark.parametrize("args", [[], ["count"], ["stats"], ["train"]])
def test_help(cli, args):
    r = cli("ngram", *args, "--help")
    assert r.exit_code == 0 and "Usage" in r.stdout


def test_bad_input(cli, corpus_file, tmp_path):
    out = tmp_path / "o"
    assert_error(cli("ngram", "train", corpus_file, "--order", "0", "--out", out), "--order")
    assert_error(cli("ngram", "count", corpus_file, "--order", "13", "--out", out), "--order")
    assert_error(cli("ngram", "train", corpus_file, "--smoothing", "wb", "--out", out), "--smoothing")
    assert_error(cli("ngram", "train", corpus_file, "--unit", "byte", "--out", out), "--unit")
    assert_error(cli("ngram", "train", corpus_file, "--memory", "lots", "--out", out), "--memory")
    assert_error(cli("ngram", "count", corpus_file, "--memory", "1000000T", "--out", out), "more than this machine's")
    one = tmp_path / "one.txt"
    one.write_text("aaaaaaaaaa", encoding="utf-8")
    assert_error(cli("ngram", "train", one, "--split", "1,0,0", "--out", out), "one distinct")
    with pytest.raises(Exception, match="empty"):
        ngram.train(ngram.NgramConfig(), [""])
    # a corrupted table, a foreign Parquet file, a folder from another version
    assert cli("ngram", "train", corpus_file, "--order", "2", "--out", out).exit_code == 0
    (out / "order2.parquet").write_bytes(b"not parquet")
    assert_error(cli("score", out, corpus_file), "order2.parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    assert cli("ngram", "train", corpus_file, "--order", "2", "--out", out, "--force").exit_code == 0
    pq.write_table(pa.table({"x": [1]}), out / "order1.parquet")
    assert_error(cli("score", out, corpus_file), "order1.parquet")
    assert cli("ngram", "train", corpus_file, "--order", "2", "--out", out, "--force").exit_code == 0
    head = json.loads((out / "lmladder.json").read_text())
    head["format_version"] = 99
    (out / "lmladder.json").write_text(json.dumps(head))
    assert_error(cli("score", out, corpus_file), "version")
    assert_error(cli("ngram", "stats", out), "not an lmladder n-gram counts folder")
    assert_error(cli("ngram", "stats", tmp_path / "missing"), "not a folder")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_letter_kn_reaches_the_true_entropy_of_the_markov_corpus():
    """On `markov` (each character depends on the two before it), every letter Kneser-Ney model
    whose context covers the source's state (order >= 3) scores the test split within 2% of the
    source's exact entropy rate; the 2-gram, which cannot see the state, is far above it."""
    from lmladder import corpora

    corpus = corpora.load("markov")
    assert corpora.entry("markov")["order"] == 2
    parts = corpus.split()
    truth = corpus.meta["entropy_bits_per_char"]
    for order in (2, 3, 5, 8):
        model = ngram.train(ngram.NgramConfig(unit="char", order=order), parts["train"], val=parts["val"])
        bpc = metrics.evaluate(model, parts["test"]).bits_per_char
        if order == 2:
            assert bpc > 1.3 * truth
        else:
            assert abs(bpc / truth - 1) < 0.02, (order, bpc, truth)


def test_tables_are_written_a_row_group_at_a_time(tmp_path, monkeypatch):
    """The order tables stream out in row groups (so no whole readable column is built): read
    back whole they are the n-grams of the model, each the one its ctx row and word say."""
    import pyarrow.parquet as pq

    from lmladder import ngramio

    monkeypatch.setattr(ngramio, "ROWS_A_GROUP", 7)
    model = ngram.train(ngram.NgramConfig(unit="char", order=3), [TEXT])
    ngram.save(model, tmp_path / "m", {"name": "x", "kind": "local", "sha256": "0"}, "1,0,0")
    unit_id, lower = {u: i for i, u in enumerate(model.units)}, [[]]
    for n, t in enumerate(model.tables, 1):
        f = pq.ParquetFile(tmp_path / "m" / f"order{n}.parquet")
        assert f.metadata.num_row_groups == -(-len(t.keys) // 7)
        chunks = {f.metadata.schema.column(i).path: f.metadata.row_group(0).column(i) for i in range(f.metadata.num_columns)}
        dictionary = {p for p, c in chunks.items() if any("DICTIONARY" in e for e in c.encodings)}
        assert dictionary == {"word", "backoff"}  # ctx and logp are mostly distinct; the units plain (faster)
        assert not chunks["ngram.list.element"].is_stats_set and chunks["logp"].is_stats_set
        table = f.read()
        assert table.column("logp").to_numpy().tolist() == t.logp.tolist()
        grams, ctx, word = (table.column(c).to_pylist() for c in ("ngram", "ctx", "word"))
        assert [c * model.V + w for c, w in zip(ctx, word)] == t.keys.tolist()
        assert all(g[:-1] == lower[c] and unit_id[g[-1]] == w for g, c, w in zip(grams, ctx, word))
        lower = grams
