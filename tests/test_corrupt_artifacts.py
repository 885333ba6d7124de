"""A model folder changed by hand or damaged (a header that no longer fits its weights, counts
that are not counts, the weights its header names gone) is one `error:` line when scored or
sampled, never a traceback; and whatever a library's message holds, the error stays one line."""

from __future__ import annotations

import json
import shutil

import pytest

from lmladder.errors import LadderError
from tests.conftest import assert_error


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A unigram and a tiny GPT trained on a small text, once for the module."""
    from typer.testing import CliRunner

    from lmladder.cli import app

    root = tmp_path_factory.mktemp("corrupt")
    text = root / "small.txt"
    text.write_text("".join(f"line {i} of the small corpus, with words.\n" for i in range(300)))
    runner = CliRunner()
    for name, extra in (("uni", ["--model", "unigram"]),
                        ("gpt", ["--preset", "gpt-tiny", "--max-steps", "2", "--eval-interval", "2", "--device", "cpu"])):
        result = runner.invoke(app, ["train", str(text), *extra, "--out", str(root / name)])
        assert result.exit_code == 0, result.stderr
    return root


def _copy(runs, name, tmp_path):
    return shutil.copytree(runs / name, tmp_path / name)


def _edit_header(folder, change):
    header = json.loads((folder / "lmladder.json").read_text())
    change(header)
    (folder / "lmladder.json").write_text(json.dumps(header))


@pytest.mark.parametrize("counts", ["abc", [-1], None])
def test_a_unigram_whose_counts_are_not_counts(cli, runs, tmp_path, counts):
    folder = _copy(runs, "uni", tmp_path)

    def change(header):
        header["counts"] = counts if counts != [-1] else [-1] + header["counts"][1:]

    _edit_header(folder, change)
    assert_error(cli("score", folder, "--json"), "counts", "corrupt")


def test_a_gpt_header_that_no_longer_fits_its_weights(cli, runs, tmp_path):
    folder = _copy(runs, "gpt", tmp_path)
    _edit_header(folder, lambda h: h["config"]["model"].update(n_embd=64))
    for command in (["score", folder], ["sample", folder, "--max-new-chars", "5"]):
        assert_error(cli(*command), "does not fit the model of its config", "the config makes it (")


def test_the_weights_a_header_names_are_gone(cli, runs, tmp_path):
    folder = _copy(runs, "gpt", tmp_path)
    named = json.loads((folder / "lmladder.json").read_text())["weights"]
    (folder / named).unlink()
    assert_error(cli("score", folder), named, "is missing")


def test_a_library_message_of_several_lines_is_one_error_line(cli, runs, monkeypatch):
    from lmladder import registry

    def broken(*args, **kwargs):
        raise LadderError("the file is bad:\n  line two of the library's message\n")

    monkeypatch.setattr(registry, "load_model", broken)
    result = cli("score", runs / "uni")
    assert_error(result, "the file is bad: line two of the library's message")


@pytest.mark.parametrize("config", ["{not json", '{"n_layer": 2}'])
def test_a_transformers_folder_whose_config_is_broken(cli, tmp_path, config):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(config)
    for command in (["score", folder], ["sample", folder]):
        assert_error(cli(*command), "config.json", "not a transformers config")


def _flip_a_weight_byte(path):
    """Change one byte of the tensor data (not the header) in place: the file keeps its size."""
    data = bytearray(path.read_bytes())
    header = int.from_bytes(data[:8], "little") + 8
    data[header + (len(data) - header) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_weights_changed_in_place_are_caught_by_their_checksum(cli, runs, tmp_path):
    folder = _copy(runs, "gpt", tmp_path)
    named = json.loads((folder / "lmladder.json").read_text())["weights"]
    _flip_a_weight_byte(folder / named)
    assert_error(cli("score", folder), named, "checksum does not match")
    latest = _copy(runs, "gpt", tmp_path / "again") / "latest" / "optimizer.safetensors"
    _flip_a_weight_byte(latest)
    assert_error(cli("train", "--resume", latest.parent.parent, "--max-steps", "3"), "optimizer.safetensors",
                 "checksum")


def test_a_safetensors_file_without_a_checksum_still_loads(tmp_path):
    """Files written without lmladder's checksum (transformers', older runs') are read as they are."""
    import torch
    from safetensors.torch import save_file

    from lmladder.checkpoint import load_tensors, save_tensors

    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, dtype=torch.bfloat16)}
    save_file(tensors, str(tmp_path / "plain.safetensors"))
    save_tensors(tensors, tmp_path / "ours.safetensors")
    for name in ("plain", "ours"):
        back = load_tensors(tmp_path / f"{name}.safetensors")
        assert all(torch.equal(back[k], tensors[k]) for k in tensors)


def test_the_same_tensors_and_settings_make_the_same_bytes_in_every_process(tmp_path):
    """safetensors orders metadata keys by a hash map seeded per process: with two keys (the
    checksum and the model settings) the same weights came out as one of two files. Written in
    separate processes, they are now the same bytes, their keys in a fixed order."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    script = ("import sys, torch; from lmladder.checkpoint import save_tensors; "
              "save_tensors({'w': torch.arange(12.0).reshape(3, 4), 'b': torch.ones(3)}, sys.argv[1], "
              "{'n_head': 2, 'n_embd': 4, 'bias': True, 'position': 'rotary'})")
    paths = [tmp_path / f"{i}.safetensors" for i in range(4)]
    for path in paths:
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert len({p.read_bytes() for p in paths}) == 1
    data = paths[0].read_bytes()
    header = data[8 : 8 + int.from_bytes(data[:8], "little")].decode()
    assert header.index('"lmladder.crc32"') < header.index('"lmladder.model"')
