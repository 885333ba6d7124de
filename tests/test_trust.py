"""Numbers that cannot silently be wrong: the bench cache follows the code, a rung cut short is
never a result, a model is scored on its own corpus, broken weights are refused, and text from a
corpus is never read as console markup."""

from __future__ import annotations

import json

import pytest
from safetensors.numpy import load_file, save_file

from lmladder import bench
from tests.conftest import assert_error

LADDER = '[[rung]]\nname = "unigram"\nkind = "unigram"\n'


def test_a_change_of_code_is_a_new_cache_entry(cli, small_corpus, tmp_path, fresh_home, monkeypatch):
    ladder = tmp_path / "ladder.toml"
    ladder.write_text(LADDER)
    first = json.loads(cli("bench", small_corpus, "--ladder", ladder, "--json").stdout)["results"][0]
    again = json.loads(cli("bench", small_corpus, "--ladder", ladder, "--json").stdout)["results"][0]
    assert not first["cached"] and again["cached"]
    monkeypatch.setattr(bench, "code_digest", lambda: "other code")
    changed = json.loads(cli("bench", small_corpus, "--ladder", ladder, "--json").stdout)["results"][0]
    assert not changed["cached"]


def test_a_neural_rung_cut_short_is_an_error_and_not_cached(cli, small_corpus, tmp_path, fresh_home, monkeypatch):
    from lmladder import neural_ladder

    def stopped(job):
        return {"stopped": "SIGTERM", "steps": 3}

    monkeypatch.setattr(neural_ladder, "train", stopped)
    ladder = tmp_path / "ladder.toml"
    ladder.write_text(LADDER + '[[rung]]\nname = "gpt"\nkind = "gpt"\n')
    result = cli("bench", small_corpus, "--ladder", ladder)
    assert result.exit_code == 143
    assert result.stderr.strip().splitlines()[-1].startswith("error: the gpt rung was stopped by SIGTERM")
    cached = [p for p in (fresh_home / "cache" / "bench").glob("*/result.json")]
    assert len(cached) == 1 and json.loads(cached[0].read_text())["rung"] == "unigram"


def test_score_and_tokenizer_stats_default_to_the_models_own_corpus(cli, tmp_path):
    out = tmp_path / "unigram"
    assert cli("train", "markov", "--model", "unigram", "--out", out).exit_code == 0
    scored = json.loads(cli("score", out, "--json").stdout)
    assert scored["corpus"] == "markov" and scored["bits_per_char"] < 3
    tok = tmp_path / "tok"
    assert cli("tokenizer", "train", "markov", "--kind", "char", "--out", tok).exit_code == 0
    stats = json.loads(cli("tokenizer", "stats", tok, "--json").stdout)
    assert stats["corpus"]["name"] == "markov"


def test_a_model_whose_corpus_is_gone_asks_for_one(cli, tmp_path):
    text = tmp_path / "gone.txt"
    text.write_text("some words to learn from\n" * 50)
    out = tmp_path / "unigram"
    assert cli("train", text, "--model", "unigram", "--out", out).exit_code == 0
    text.unlink()
    assert_error(cli("score", out), "gone.txt", "give the corpus")


@pytest.fixture
def tiny_gpt(cli, tmp_path):
    out = tmp_path / "gpt"
    result = cli("train", "markov", "--preset", "gpt-tiny", "--max-steps", "2", "--eval-interval", "1",
                 "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result
    return out


def test_weights_that_are_not_numbers_are_refused(cli, tiny_gpt):
    header = json.loads((tiny_gpt / "lmladder.json").read_text())
    path = tiny_gpt / header["weights"]
    tensors = load_file(path)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] * float("nan")
    save_file(tensors, path)
    assert_error(cli("sample", tiny_gpt), "not finite", "NaN")
    assert_error(cli("score", tiny_gpt), "not finite")


def test_a_run_without_named_weights_uses_best(cli, tiny_gpt):
    header = json.loads((tiny_gpt / "lmladder.json").read_text())
    header["weights"] = None  # as a run killed before it finished leaves it
    (tiny_gpt / "lmladder.json").write_text(json.dumps(header))
    assert cli("sample", tiny_gpt, "--max-new-chars", "10").exit_code == 0
    for sub in ("best", "latest"):
        for file in (tiny_gpt / sub).iterdir():
            file.unlink()
    assert_error(cli("sample", tiny_gpt), "no weights yet", "--resume")


def test_an_infinite_temperature_is_refused(cli, tiny_gpt):
    assert_error(cli("sample", tiny_gpt, "--temperature", "inf"), "--temperature")
    assert_error(cli("sample", tiny_gpt, "--temperature", "nan"), "--temperature")


def test_text_is_never_read_as_markup(cli, tmp_path):
    text = tmp_path / "brackets.txt"
    text.write_text("[bold]not bold[/] and [/] alone, [test] too\n" * 300)
    toured = cli("tour", text, "--length", "40", "--seed-word", "[/]")
    assert toured.exit_code == 0, toured
    assert "[/]" in toured.stdout
    out = tmp_path / "unigram"
    assert cli("train", text, "--model", "unigram", "--out", out).exit_code == 0
    table = cli("score", out)
    assert table.exit_code == 0 and "[test]" in table.stdout


def test_tour_on_text_without_letters(cli, tmp_path):
    parens = tmp_path / "parens.txt"
    parens.write_text("(()(()))\n(())()\n" * 2000)
    result = cli("tour", parens, "--length", "30")
    assert result.exit_code == 0, result
    assert "1. Letters by frequency" in result.stdout


def test_tour_with_a_bad_corpus_makes_no_folder(cli, tmp_path):
    out = tmp_path / "figs"
    assert_error(cli("tour", tmp_path / "missing.txt", "--out", out), "unknown corpus")
    assert not out.exists()


# --- folders that get lost or mixed (issue 18, items 6-8) ---------------------------------------


def test_nothing_is_replaced_without_force_and_never_another_kind(cli, tmp_path, tiny_gpt):
    unigram = tmp_path / "unigram"
    assert cli("train", "markov", "--model", "unigram", "--out", unigram).exit_code == 0
    assert_error(cli("train", "markov", "--model", "unigram", "--out", unigram), "already holds", "--force")
    assert cli("train", "markov", "--model", "unigram", "--out", unigram, "--force").exit_code == 0
    # another kind is never replaced, --force or not
    for args in (["train", "markov", "--model", "uniform", "--out", unigram, "--force"],
                 ["tokenizer", "train", "markov", "--kind", "char", "--out", tiny_gpt, "--force"],
                 ["bench", "markov", "--only", "unigram", "--out", tiny_gpt, "--force"],
                 ["train", "markov", "--preset", "gpt-tiny", "--max-steps", "1", "--out", unigram, "--force"]):
        assert_error(cli(*args), "never replaces a folder of another kind")
    assert (tiny_gpt / "latest").is_dir() and (unigram / "vocab.json").is_file()


def test_force_replaces_a_run_only_once_the_new_one_passes_its_checks(cli, tiny_gpt):
    before = sorted(p.name for p in tiny_gpt.iterdir())
    bad = cli("train", "markov", "--preset", "gpt-tiny", "--max-steps", "1", "--device", "cpu", "--tokenizer",
              tiny_gpt.parent / "no-such-tokenizer", "--out", tiny_gpt, "--force")
    assert bad.exit_code == 2, bad
    assert sorted(p.name for p in tiny_gpt.iterdir()) == before  # the old run is back, whole
    again = cli("train", "markov", "--preset", "gpt-tiny", "--max-steps", "1", "--device", "cpu", "--out", tiny_gpt,
                "--force", "--json")
    assert again.exit_code == 0, again
    assert json.loads(again.stdout)["steps"] == 1


def test_a_folder_being_written_is_locked(tmp_path):
    import multiprocessing

    from lmladder.atomic import locked
    from lmladder.errors import LadderError

    out = tmp_path / "run"
    with locked(out):
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            message = pool.apply(_try_lock, (str(out),))
        assert "being written by another lmladder" in message and str(__import__("os").getpid()) in message
        with pytest.raises(LadderError):  # another open of the same lock in this process fails too
            with locked(out):
                pass
    assert not (tmp_path / ".run.lock").exists()
    with locked(out):  # free again
        pass


def _try_lock(path: str) -> str:
    from lmladder.atomic import locked
    from lmladder.errors import LadderError

    try:
        with locked(path):
            return "locked"
    except LadderError as exc:
        return str(exc)


def test_out_that_cannot_be_written_fails_before_the_work(cli, tmp_path, monkeypatch):
    assert_error(cli("train", "markov", "--model", "unigram", "--out", "."), "the folder you are in")
    monkeypatch.chdir(tmp_path)
    assert_error(cli("train", "markov", "--model", "unigram", "--out", ".."), "the folder you are in")
    readonly = tmp_path / "readonly"
    readonly.mkdir()

    def refused(*args, **kwargs):  # as a read-only folder answers (root may write to one, so it is faked)
        raise PermissionError(13, "Permission denied")

    from lmladder import atomic

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refused)
    assert_error(cli("train", "markov", "--model", "unigram", "--out", readonly / "m"), "cannot write",
                 "Permission denied")
    assert_error(cli("bench", "markov", "--only", "unigram", "--out", readonly / "b"), "cannot write")


def test_a_full_disk_is_one_error_line(monkeypatch, tmp_path):
    import errno
    import os

    from lmladder.atomic import atomic_dir
    from lmladder.errors import LadderError

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(LadderError, match="No space left"):
        with atomic_dir(tmp_path / "out") as tmp:
            monkeypatch.setattr(os, "replace", full)
            (tmp / "x").write_text("x")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_ngram_commands_never_replace_another_kind(cli, tmp_path, tiny_gpt):
    assert_error(cli("ngram", "train", "markov", "--order", "2", "--out", tiny_gpt, "--force"),
                 "never replaces a folder of another kind")
    assert_error(cli("ngram", "count", "markov", "--order", "2", "--out", tiny_gpt, "--force"),
                 "never replaces a folder of another kind")
    assert (tiny_gpt / "latest").is_dir()
    model = tmp_path / "char2"
    assert cli("ngram", "train", "markov", "--order", "2", "--out", model).exit_code == 0
    assert_error(cli("ngram", "train", "markov", "--order", "2", "--out", model), "--force")
    assert cli("ngram", "train", "markov", "--order", "3", "--out", model, "--force").exit_code == 0


def test_an_output_file_is_checked_before_any_work(cli, tmp_path, monkeypatch):
    model = tmp_path / "char2"
    assert cli("ngram", "train", "markov", "--order", "2", "--out", model).exit_code == 0
    assert_error(cli("export", model, "--format", "arpa", "--out", tmp_path), "is a folder")
    text = tmp_path / "t.txt"
    text.write_text("some text\n")
    assert_error(cli("compress", model, text, "--out", tmp_path), "is a folder")

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    from lmladder import atomic

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refused)
    assert_error(cli("export", model, "--format", "arpa", "--out", tmp_path / "m.arpa"), "cannot write")
    assert not (tmp_path / "m.arpa").exists()
