"""The command line as a whole: every command's --help, --version, start-up weight, errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import assert_error


def _all_command_paths():
    import typer

    from lmladder.cli import app

    root = typer.main.get_command(app)
    paths = []

    def walk(cmd, prefix):
        paths.append(prefix)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, prefix + [name])

    walk(root, [])
    return paths


def test_command_tree_has_the_foundation_commands():
    paths = {" ".join(p) for p in _all_command_paths()}
    for expected in ("corpus list", "corpus get", "corpus info", "train", "score", "bench"):
        assert expected in paths


@pytest.mark.parametrize("path", _all_command_paths(), ids=lambda p: " ".join(p) or "lmladder")
def test_every_command_has_help(cli, path):
    result = cli(*path, "--help")
    assert result.exit_code == 0, result
    assert "Usage:" in result.stdout
    assert "--help" in result.stdout


def test_version(cli):
    from lmladder import __version__

    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"lmladder {__version__}"


def test_cli_import_is_light():
    code = "import sys, lmladder.cli; print('torch' in sys.modules, 'tokenizers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_help_and_version_are_fast():
    import time

    for args in (["--help"], ["--version"]):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lmladder", *args], capture_output=True, check=True)
        assert time.perf_counter() - start < 3.0  # generous for a loaded CI box; ~0.15 s here


def test_unknown_command_is_one_error_line(cli):
    assert_error(cli("corpus", "bogus"), "No such command", "lmladder corpus --help")
    assert_error(cli("nonsense"), "No such command")


def test_bad_option_value_is_one_error_line(cli):
    assert_error(cli("bench", "--tolerance", "x"), "--tolerance")


def test_errors_have_no_traceback_unless_debug(cli, monkeypatch):
    result = cli("corpus", "info", "no-such-corpus")
    assert_error(result, "unknown corpus 'no-such-corpus'")
    monkeypatch.setenv("LMLADDER_DEBUG", "1")
    result = cli("corpus", "info", "no-such-corpus")
    assert result.exit_code != 0 and result.exception is not None


def test_error_line_through_real_process(tmp_path):
    missing = tmp_path / "missing.txt"
    out = subprocess.run([sys.executable, "-m", "lmladder", "corpus", "info", str(missing)],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1
    out = subprocess.run([sys.executable, "-m", "lmladder", "--debug", "corpus", "info", str(missing)],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_ctrl_c_in_a_command_is_one_error_line(cli, tmp_path, monkeypatch):
    """A KeyboardInterrupt outside training (here in an n-gram build) is one `error:` line and
    exit code 130, not typer's silent 130, and leaves no output folder."""
    from lmladder import counts

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(counts, "count", interrupted)
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be\n" * 50)
    result = cli("ngram", "train", text, "--unit", "char", "--order", "3", "--split", "1,0,0", "--out",
                 tmp_path / "m")
    assert result.exit_code == 130, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: interrupted"), result
    assert not (tmp_path / "m").exists()
