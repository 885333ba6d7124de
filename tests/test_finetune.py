"""`lmladder train --init-from SOURCE`: fine-tuning starts from the source GPT's weights,
architecture and tokenizer, whether the source is a lmladder run or a transformers folder."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_error

TINY = ["--preset", "gpt-tiny", "--device", "cpu", "--dropout", "0"]


@pytest.fixture
def source(cli, tmp_path):
    out = tmp_path / "source"
    result = cli("train", "markov", *TINY, "--max-steps", "3", "--out", out)
    assert result.exit_code == 0, result
    return out


@pytest.fixture
def other_text(tmp_path):
    path = tmp_path / "other.txt"
    path.write_text("".join(f"abc cab {i % 7} bca, a b c.\n" for i in range(3000)))
    return path


def _first_loss(run) -> float:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return next(r["train_loss"] for r in rows if "train_loss" in r)


def _source_loss_on_first_batch(source, run) -> float:
    """The source model's loss on the fine-tuning run's first batch, computed here."""
    import torch
    import torch.nn.functional as F

    from lmladder import artifacts, corpora, registry, tokens
    from lmladder.config import TrainConfig
    from lmladder.train.step import draw_batch

    rung = registry.load_model(source)
    header = artifacts.read_header(run, "lmladder-model")
    config = TrainConfig.from_dict(header["config"])
    corpus = corpora.load(header["corpus"]["name"])
    ids = tokens.encoded_split(rung.tokenizer, corpus, header["split"], "train")
    xy = draw_batch(ids, 0, config, 0, 1, "cpu")
    with torch.no_grad():
        logits = rung.model(xy[:, :-1])
        return float(F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), xy[:, 1:].reshape(-1)))


def test_fine_tuning_starts_from_the_source_weights(cli, source, other_text, tmp_path):
    run = tmp_path / "tuned"
    result = cli("train", other_text, "--init-from", source, *TINY, "--max-steps", "1", "--log-interval", "1",
                 "--out", run)
    assert result.exit_code == 0, result
    assert _first_loss(run) == pytest.approx(_source_loss_on_first_batch(source, run), abs=1e-5)
    tuned = json.loads((run / "lmladder.json").read_text())
    made = json.loads((source / "lmladder.json").read_text())
    assert tuned["config"]["model"] == made["config"]["model"]  # the source's architecture
    assert tuned["tokenizer"] == made["tokenizer"]  # and its tokenizer


def test_fine_tuning_from_a_transformers_folder(cli, source, other_text, tmp_path):
    pytest.importorskip("transformers", reason="the hf extra is not installed")
    hf_folder = tmp_path / "hf"
    assert cli("export", source, "--format", "hf", "--out", hf_folder).exit_code == 0
    runs = []
    for name, start in (("from-run", source), ("from-hf", hf_folder)):
        run = tmp_path / name
        result = cli("train", other_text, "--init-from", start, *TINY, "--max-steps", "1", "--log-interval", "1",
                     "--out", run)
        assert result.exit_code == 0, result
        runs.append(_first_loss(run))
    assert runs[0] == pytest.approx(runs[1], abs=1e-5)


def test_bad_fine_tuning_requests(cli, source, other_text, tmp_path):
    out = tmp_path / "x"
    assert_error(cli("train", other_text, "--init-from", source, *TINY, "--n-layer", "3", "--out", out),
                 "--n-layer", "architecture")
    assert_error(cli("train", other_text, "--init-from", source, *TINY, "--tokenizer", "char", "--out", out),
                 "own tokenizer")
    assert_error(cli("train", "--resume", source, "--init-from", source), "--init-from")
    unigram = tmp_path / "unigram"
    assert cli("train", "markov", "--model", "unigram", "--out", unigram).exit_code == 0
    assert_error(cli("train", other_text, "--init-from", unigram, *TINY, "--out", out), "unigram")
    assert_error(cli("train", other_text, "--model", "unigram", "--init-from", source, "--out", out), "--init-from")
    assert not out.exists()
