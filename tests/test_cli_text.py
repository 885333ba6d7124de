"""Text given on the command line that is not UTF-8 (bytes Python keeps as lone surrogates) is
refused with one error line, before any work: it used to crash (an internal error) or be
echoed back as invalid bytes."""

from __future__ import annotations

import pytest

from tests.conftest import assert_error

BAD = "caf\udce9"  # b"caf\xe9" (Latin-1) read from argv


@pytest.fixture(scope="module")
def unigram(tmp_path_factory):
    from typer.testing import CliRunner

    from lmladder.cli import app

    root = tmp_path_factory.mktemp("text")
    (root / "c.txt").write_text("".join(f"line {i} of a corpus\n" for i in range(300)))
    runner = CliRunner()
    for args in (["train", root / "c.txt", "--model", "unigram", "--out", root / "uni"],
                 ["tokenizer", "train", root / "c.txt", "--kind", "char", "--out", root / "tok"]):
        assert runner.invoke(app, [str(a) for a in args]).exit_code == 0
    return root


@pytest.mark.parametrize("args, fragment", [
    (["sample", "{root}/uni", "--prompt", BAD], "--prompt holds bytes that are not UTF-8"),
    (["sample", "{root}/uni", "--stop", BAD], "--stop"),
    (["tokenizer", "encode", "{root}/tok", BAD], "holds bytes that are not UTF-8"),
    (["tour", "{root}/c.txt", "--seed-word", BAD], "--seed-word holds bytes that are not UTF-8"),
])
def test_text_that_is_not_utf8_is_refused(cli, unigram, args, fragment):
    assert_error(cli(*[a.format(root=unigram) for a in args]), fragment)
    good = [a.format(root=unigram) if a != BAD else "café" for a in args]
    if args[0] != "tour":  # the same command with UTF-8 text works
        assert cli(*good).exit_code == 0
