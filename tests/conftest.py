"""Shared test setup: the tool's home and caches live in temporary folders, corpora come from
the local mirror (../shared/corpora beside the checkout, or $LMLADDER_MIRROR), and nothing
touches the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MIRROR = Path(os.environ.get("LMLADDER_MIRROR") or SHARED / "corpora")
FIXTURES = SHARED / "fixtures"
USER_CACHE = Path(os.environ.get("LMLADDER_HOME") or Path.home() / ".cache" / "lmladder")


def pytest_sessionstart(session):
    """Without a local mirror (a checkout with no ../shared beside it), fetch the corpora the
    tests need once into the user's own lmladder cache and use that as the mirror."""
    global MIRROR
    if (MIRROR / "tinyshakespeare.txt").is_file():
        return
    os.environ["LMLADDER_HOME"] = str(USER_CACHE)
    from lmladder import corpora
    from lmladder.errors import LadderError

    try:
        for name in ("tinyshakespeare", "gutenberg-en"):
            corpora.get(name)
    except LadderError as exc:  # one clear line, not pytest's INTERNALERROR
        pytest.exit(f"the tests need the corpora: put ../shared/corpora beside the checkout, set LMLADDER_MIRROR "
                    f"to a copy, or allow downloads ({exc})", returncode=2)
    MIRROR = USER_CACHE / "corpora"


@pytest.fixture(scope="session")
def shared_home(tmp_path_factory) -> Path:
    """One home for the whole session, so corpora are copied from the mirror once."""
    return tmp_path_factory.mktemp("lmladder-home")


@pytest.fixture(autouse=True)
def ladder_env(monkeypatch, shared_home):
    monkeypatch.setenv("LMLADDER_HOME", str(shared_home))
    monkeypatch.setenv("LMLADDER_MIRROR", str(MIRROR))
    monkeypatch.setenv("LMLADDER_OFFLINE", "1")
    monkeypatch.setenv("LMLADDER_NO_PROGRESS", "1")
    monkeypatch.delenv("LMLADDER_DEBUG", raising=False)
    monkeypatch.delenv("LMLADDER_REGISTRY", raising=False)


@pytest.fixture
def small_corpus(tmp_path):
    """A 400-line text file: enough for the letter rungs and a ladder of them, read in no time."""
    path = tmp_path / "small.txt"
    path.write_text("".join(f"line {i} of the small corpus, with words.\n" for i in range(400)))
    return path


@pytest.fixture
def fresh_home(monkeypatch, tmp_path) -> Path:
    """An empty home of this test's own."""
    home = tmp_path / "home"
    monkeypatch.setenv("LMLADDER_HOME", str(home))
    return home


class Result:
    def __init__(self, result):
        self.exit_code = result.exit_code
        self.stdout = result.stdout
        self.stderr = result.stderr
        self.exception = result.exception

    def __repr__(self) -> str:
        return f"<exit {self.exit_code}\nstdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-2000:]}>"


@pytest.fixture
def cli():
    """Run `lmladder ARGS...` in-process with Typer's runner; returns exit code, stdout, stderr."""
    from lmladder.cli import app

    runner = CliRunner()

    def run(*args: str) -> Result:
        return Result(runner.invoke(app, [str(a) for a in args]))

    return run


def assert_error(result: Result, *fragments: str) -> None:
    """A bad-input failure: exit code 2 and exactly one `error:` line naming the problem."""
    assert result.exit_code == 2, result
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], result


def plays(folder: Path, chars: int) -> Path:
    """The first `chars` characters of Tiny Shakespeare as a small corpus file in `folder`."""
    path = folder / "plays.txt"
    path.write_text((MIRROR / "tinyshakespeare.txt").read_text(encoding="utf-8")[:chars], encoding="utf-8")
    return path


def train_recipes(root: Path, corpus: Path, recipes: dict[str, list[str]], after=None) -> dict[str, Path]:
    """Each recipe's `lmladder` arguments ({corpus}, {out} and {tokenizer}, a BPE tokenizer of the
    corpus trained first, filled in) run once in-process, in a home of their own under `root`;
    label -> the folder it wrote. `after(invoke, out)` may add more folders with the same CLI."""
    from lmladder.cli import app

    runner = CliRunner()
    mp = pytest.MonkeyPatch()
    mp.setenv("LMLADDER_HOME", str(root / "home"))

    def invoke(*args) -> None:
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, (args, result.stderr)

    try:
        tokenizer = root / "bpe-tokenizer"
        invoke("tokenizer", "train", corpus, "--vocab-size", "300", "--out", tokenizer)
        out = {}
        for label, args in recipes.items():
            invoke(*[a.format(corpus=corpus, out=root / label, tokenizer=tokenizer) for a in args])
            out[label] = root / label
        if after is not None:
            after(invoke, out)
    finally:
        mp.undo()
    return out
