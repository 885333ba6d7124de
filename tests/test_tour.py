"""`lmladder tour`: every step shows, figures are real PNGs, the walk is reproducible."""

from __future__ import annotations

import pytest

from lmladder import corpora
from tests.conftest import assert_error

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def small_shakespeare(tmp_path):
    path = tmp_path / "shakespeare-head.txt"
    path.write_text(corpora.load("tinyshakespeare").documents[0][:60_000])
    return path


def test_tour_steps_and_figures(cli, small_shakespeare, tmp_path):
    out = tmp_path / "figs"
    result = cli("tour", small_shakespeare, "--out", out, "--length", "40")
    assert result.exit_code == 0, result
    for title in ("1. Letters by frequency", "2. Letter pairs", "3. Letter n-grams", "4. Words",
                  "5. Why counting stops working"):
        assert title in result.stdout
    for name in ("letters.png", "letter-pairs.png", "words.png"):
        assert (out / name).read_bytes()[:8] == PNG
    assert "order 6" in result.stdout and "word pairs from 'cat'" in result.stdout


def test_q_is_followed_by_u(small_shakespeare):
    from lmladder import tour

    steps = tour.run(str(small_shakespeare), length=20)
    pairs = {row["first"]: row for row in steps[1].table}
    assert "q" not in pairs or pairs["q"]["most likely next"] == "u"
    counts = steps[4].table
    assert [row["order"] for row in counts] == [1, 2, 3, 4]
    unseen = [row["val n-grams never seen"] for row in counts]
    assert unseen == sorted(unseen)  # longer n-grams are ever more often new


def test_tour_is_reproducible(cli, small_shakespeare):
    a = cli("tour", small_shakespeare, "--length", "30", "--seed", "5")
    b = cli("tour", small_shakespeare, "--length", "30", "--seed", "5")
    assert a.exit_code == 0 and a.stdout == b.stdout


def test_tour_bad_inputs(cli, small_shakespeare, tmp_path):
    assert_error(cli("tour", small_shakespeare, "--length", "0"), "--length")
    assert_error(cli("tour", small_shakespeare, "--gpt", tmp_path), "not an lmladder model")
    assert_error(cli("tour", tmp_path / "missing.txt"), "unknown corpus")


def test_chart_labels_tell_units_apart():
    from lmladder.tour import _label

    assert _label("I") != _label(" I") == "␣I"
    assert _label("\n") == "\\n" and _label("") == "∅"
