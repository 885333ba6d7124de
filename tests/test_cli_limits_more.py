"""Bad input refused up front with one `error:` line (exit code 2): absurd numbers, options that
contradict each other or would be ignored, unusable homes and inputs, corrupt artifacts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import assert_error


# --- lmladder scale ------------------------------------------------------------------------------


@pytest.mark.parametrize("budgets", ["inf", "nan", "1e300", "1e10,-1"])
def test_scale_refuses_non_finite_or_absurd_budgets(cli, budgets):
    r = cli("scale", "--profile", "tiny", "--plan", "--budgets", budgets)
    assert_error(r, "--budgets", "1e+30")
    assert len(r.stderr) < 300  # numbers in short %g form, never a 300-digit integer


@pytest.mark.parametrize("option, value", [("--target-tokens", "inf"), ("--target-tokens", "1e30")])
def test_scale_refuses_non_finite_or_absurd_target_tokens(cli, option, value):
    assert_error(cli("scale", "--profile", "tiny", "--plan", "--target-preset", "gpt-char", option, value), option)


def test_scale_refuses_absurd_target_flops_and_sizes(cli):
    assert_error(cli("scale", "--profile", "tiny", "--plan", "--target-flops", "inf"), "--target-flops")
    assert_error(cli("scale", "--profile", "tiny", "--plan", "--sizes", "1e300"), "--sizes")


@pytest.mark.parametrize("line", ["n_layer = -3", "n_head = 0", "n_embd = -66"])
def test_scale_refuses_an_impossible_target_config_before_loading(cli, tmp_path, line):
    config = tmp_path / "target.toml"
    config.write_text(f"[model]\n{line}\n")
    r = cli("scale", "no-such-corpus", "--profile", "tiny", "--plan", "--target-config", config,
            "--target-tokens", "1e6")
    assert_error(r, line.split()[0], "at least 1")


def test_scale_refuses_a_looped_target(cli, tmp_path):
    """The sweep trains GPTs that go through their blocks once; a target with n_loop would be
    trained and predicted as one that does not."""
    config = tmp_path / "looped.toml"
    config.write_text("[model]\nn_layer = 2\nn_head = 2\nn_embd = 32\nn_loop = 3\n")
    r = cli("scale", "no-such-corpus", "--profile", "tiny", "--plan", "--target-config", config,
            "--target-tokens", "1e6")
    assert_error(r, "n_loop = 3", "once")


def test_scale_refuses_a_target_past_the_flops_bound(cli, tmp_path):
    config = tmp_path / "huge.toml"
    config.write_text("[model]\nn_layer = 1000\nn_embd = 8192\nn_head = 64\n")
    r = cli("scale", "--profile", "tiny", "--plan", "--target-config", config, "--target-tokens", "1e18")
    assert_error(r, "FLOPs", "1e+30")


# --- the home folder -----------------------------------------------------------------------------


def test_home_that_is_a_file(cli, monkeypatch, tmp_path):
    home = tmp_path / "home"
    home.write_text("not a folder\n")
    monkeypatch.setenv("LMLADDER_HOME", str(home))
    assert_error(cli("corpus", "get", "tinyshakespeare"), "LMLADDER_HOME", "is a file")
    monkeypatch.setenv("LMLADDER_HOME", str(home / "below"))
    assert_error(cli("corpus", "get", "tinyshakespeare"), "LMLADDER_HOME", "cannot be created")


def test_home_that_is_not_writable(cli, monkeypatch, fresh_home):
    import lmladder.home

    fresh_home.mkdir()
    monkeypatch.setattr(lmladder.home.os, "access", lambda path, mode: False)  # (the tests may run as root)
    assert_error(cli("corpus", "get", "tinyshakespeare"), "LMLADDER_HOME", "not writable")


def test_folder_in_the_way_of_a_corpus_file(cli, fresh_home):
    (fresh_home / "corpora" / "tinyshakespeare.txt").mkdir(parents=True)
    assert_error(cli("corpus", "get", "tinyshakespeare"), "tinyshakespeare.txt", "in the way")


# --- lmladder ngram ------------------------------------------------------------------------------


@pytest.mark.parametrize("k", ["inf", "nan", "-1", "0"])
def test_ngram_train_refuses_a_bad_k(cli, small_corpus, tmp_path, k):
    r = cli("ngram", "train", small_corpus, "--smoothing", "addk", "--k", k, "--order", "3", "--out", tmp_path / "m")
    assert_error(r, "--k")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--k", "0.5"], "--k"),
    (["--smoothing", "mle", "--k", "0.5"], "--k"),
    (["--min-count", "2"], "--min-count"),
    (["--unit", "word", "--kenlm-compat", "--min-count", "2"], "--min-count"),
    (["--unit", "word", "--kenlm-compat", "--smoothing", "addk"], "Kneser-Ney"),
])
def test_ngram_train_refuses_options_that_would_be_ignored(cli, small_corpus, tmp_path, args, fragment):
    assert_error(cli("ngram", "train", small_corpus, "--order", "2", "--out", tmp_path / "m", *args), fragment)


@pytest.mark.parametrize("memory", ["1", "1K", "1M"])
def test_ngram_refuses_a_tiny_memory_budget(cli, small_corpus, tmp_path, memory):
    assert_error(cli("ngram", "count", small_corpus, "--out", tmp_path / "c", "--memory", memory), "--memory", "8M")


def _damage_footer(path: Path) -> None:
    """Flip the first bytes of a Parquet file's footer metadata (just before its length and PAR1)."""
    data = bytearray(path.read_bytes())
    length = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - length
    for i in range(start, start + 32):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_ngram_stats_of_damaged_counts_is_one_line(cli, small_corpus, tmp_path):
    counts = tmp_path / "c"
    assert cli("ngram", "count", small_corpus, "--order", "2", "--out", counts).exit_code == 0
    _damage_footer(counts / "order2.parquet")
    assert_error(cli("ngram", "stats", counts), "order2.parquet", "rebuild")


def test_ngram_stats_of_no_folder(cli, tmp_path):
    r = cli("ngram", "stats", tmp_path / "nothing")
    assert_error(r, "not a folder", "the n-gram counts folder")
    assert "folder folder" not in r.stderr


# --- lmladder bench ------------------------------------------------------------------------------


@pytest.mark.parametrize("tolerance", ["nan", "inf", "-0.1"])
def test_bench_refuses_a_bad_tolerance(cli, small_corpus, tmp_path, tolerance):
    baseline = tmp_path / "base.json"
    baseline.write_text("{}")
    r = cli("bench", small_corpus, "--only", "unigram", "--check", baseline, "--tolerance", tolerance)
    assert_error(r, "--tolerance")


def test_bench_refuses_tolerance_without_check(cli, small_corpus):
    assert_error(cli("bench", small_corpus, "--only", "unigram", "--tolerance", "0.1"), "--tolerance", "--check")


def test_bench_names_the_ngram_rung_and_its_order(cli, small_corpus, tmp_path):
    ladder = tmp_path / "ladder.toml"
    ladder.write_text('[[rung]]\nname = "unigram"\nkind = "unigram"\n\n'
                      '[[rung]]\nname = "big"\nkind = "ngram"\norder = 99\n')
    r = cli("bench", small_corpus, "--ladder", ladder)
    assert_error(r, "rung big", "order = 99")
    assert "--order" not in r.stderr


def test_ngram_rung_settings_checked_in_the_library():
    from lmladder import ngram
    from lmladder.errors import LadderError

    with pytest.raises(LadderError, match="order = 'x'"):
        ngram.check_ladder("ngram", {"order": "x"}, "cpu")
    with pytest.raises(LadderError, match="min_count applies only"):
        ngram.check_ladder("ngram", {"order": 2, "min_count": 3}, "cpu")
    ngram.check_ladder("ngram", {"order": "best", "max_order": 4}, "cpu")


# --- corpus input --------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_corpus_refuses_a_device(cli):
    assert_error(cli("corpus", "info", "/dev/zero"), "/dev/zero", "not a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_corpus_reads_a_pipe(cli, tmp_path):
    """A pipe ends (`lmladder corpus info <(...)`), so it is read, unlike a device."""
    import threading

    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("a line of text through a pipe\n" * 50))
    writer.start()
    result = cli("corpus", "info", fifo, "--json")
    writer.join()
    assert result.exit_code == 0, result


def test_binary_refused_from_its_first_block(monkeypatch, tmp_path):
    from lmladder import textio
    from lmladder.errors import LadderError

    path = tmp_path / "blob.txt"
    path.write_bytes(b"text\x00" + b"x" * (4 * textio.FIRST_BLOCK))
    reads = []
    real_open = open

    class Counting:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def read(self, size=-1):
            reads.append(size)
            return self.handle.read(size)

    monkeypatch.setattr("builtins.open", lambda *a, **k: Counting(real_open(*a, **k)))
    with pytest.raises(LadderError, match="looks binary"):
        textio.read_bytes(path)
    assert reads == [textio.FIRST_BLOCK]  # the rest was never read


# --- lmladder export -----------------------------------------------------------------------------


def test_export_force_replaces_only_an_arpa_file(cli, small_corpus, tmp_path):
    model = tmp_path / "ng2"
    assert cli("ngram", "train", small_corpus, "--order", "2", "--out", model).exit_code == 0
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    r = cli("export", model, "--format", "arpa", "--out", notes, "--force")
    assert_error(r, "not an ARPA file", "--force")
    assert notes.read_text() == "my notes\n"
    arpa = tmp_path / "m.arpa"
    assert cli("export", model, "--format", "arpa", "--out", arpa).exit_code == 0
    assert cli("export", model, "--format", "arpa", "--out", arpa, "--force").exit_code == 0
    assert arpa.read_text().startswith("\\data\\")
