"""The corpus registry: checksums, resolution order, normalisation, local paths, bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lmladder import corpora
from lmladder.errors import LadderError
from tests.conftest import MIRROR, assert_error


def _sums(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        digest, name = line.split()
        out[name.lstrip("*")] = digest
    return out


@pytest.mark.skipif(not (MIRROR / "SHA256SUMS").is_file(), reason="needs ../shared/corpora beside the checkout")
def test_registry_matches_shared_checksums():
    reg = corpora.registry()
    assert corpora.DEFAULT_CORPUS == "tinyshakespeare"
    top = _sums(MIRROR / "SHA256SUMS")
    books = _sums(MIRROR / "gutenberg-en" / "SHA256SUMS")
    ts = reg["tinyshakespeare"]["files"]
    assert len(ts) == 1 and ts[0]["sha256"] == top["tinyshakespeare.txt"] and ts[0]["bytes"] == 1115394
    files = reg["gutenberg-en"]["files"]
    assert len(files) == 33
    assert {f["path"].split("/")[1]: f["sha256"] for f in files} == books
    assert sum(f["bytes"] for f in files) == 26087472
    for entry in reg.values():
        for f in entry.get("files", []):
            assert f["url"].startswith("https://") and len(f["sha256"]) == 64
    for name in ("markov", "parens"):
        assert "generator" in reg[name]


def test_get_installs_verified_copy_from_mirror(cli, fresh_home):
    result = cli("corpus", "get", "tinyshakespeare")
    assert result.exit_code == 0, result
    installed = fresh_home / "corpora" / "tinyshakespeare.txt"
    assert result.stdout.strip() == str(installed)
    assert hashlib.sha256(installed.read_bytes()).hexdigest().startswith("86c4e6aa")
    assert not [p for p in installed.parent.iterdir() if p.name.startswith(".")]  # no temp files left
    from lmladder.atomic import _umask

    assert installed.stat().st_mode & 0o777 == 0o666 & ~_umask()  # a new file's mode, not mkstemp's 0600


def test_get_without_mirror_or_network_fails_cleanly(cli, fresh_home, monkeypatch):
    monkeypatch.delenv("LMLADDER_MIRROR")
    result = cli("corpus", "get", "tinyshakespeare")
    assert_error(result, "tinyshakespeare.txt", "86c4e6aa9db7c042", "LMLADDER_MIRROR")
    assert not (fresh_home / "corpora" / "tinyshakespeare.txt").exists()


def test_corrupt_home_copy_is_replaced(cli, fresh_home):
    target = fresh_home / "corpora" / "tinyshakespeare.txt"
    target.parent.mkdir(parents=True)
    target.write_text("tampered\n")
    assert cli("corpus", "get", "tinyshakespeare").exit_code == 0
    assert hashlib.sha256(target.read_bytes()).hexdigest().startswith("86c4e6aa")


def _fake_registry(tmp_path: Path, monkeypatch, data: bytes, sha: str) -> Path:
    source = tmp_path / "remote" / "tiny.txt"
    source.parent.mkdir()
    source.write_bytes(data)
    reg = tmp_path / "registry.toml"
    reg.write_text(f'[tiny]\nnormalise = "none"\nsplit = "0.5,0.25,0.25"\n[[tiny.files]]\npath = "tiny.txt"\n'
                   f'url = "{source.as_uri()}"\nbytes = {len(data)}\nsha256 = "{sha}"\n')
    monkeypatch.setenv("LMLADDER_REGISTRY", str(reg))
    monkeypatch.delenv("LMLADDER_OFFLINE")
    monkeypatch.delenv("LMLADDER_MIRROR")
    return source


def test_download_is_verified_and_atomic(cli, fresh_home, tmp_path, monkeypatch):
    data = b"one\ntwo\nthree\nfour\n"
    _fake_registry(tmp_path, monkeypatch, data, hashlib.sha256(data).hexdigest())
    result = cli("corpus", "get", "tiny")
    assert result.exit_code == 0, result
    assert (fresh_home / "corpora" / "tiny.txt").read_bytes() == data


def test_download_checksum_mismatch_leaves_nothing(cli, fresh_home, tmp_path, monkeypatch):
    _fake_registry(tmp_path, monkeypatch, b"one\ntwo\n", "0" * 64)
    result = cli("corpus", "get", "tiny")
    assert_error(result, "tiny.txt", "expected " + "0" * 64, "LMLADDER_MIRROR")
    folder = fresh_home / "corpora"
    assert not folder.exists() or not list(folder.iterdir())


def test_mirror_copy_with_wrong_checksum_is_refused(cli, fresh_home, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tinyshakespeare.txt").write_text("not shakespeare\n")
    monkeypatch.setenv("LMLADDER_MIRROR", str(mirror))
    assert_error(cli("corpus", "get", "tinyshakespeare"), "does not match sha256")


GUTENBERG_FIXTURE = (
    "\ufeffThe Project Gutenberg EBook of A Test\r\n"
    "Title: A Test\r\n"
    "\r\n"
    "*** START OF THIS PROJECT GUTENBERG EBOOK A TEST\r\n"
    "THAT WRAPS ***\r\n"
    "\r\n"
    "Chapter 1\r\n"
    "It was a dark night.\r\n"
    "\r\n"
    "*** END OF THIS PROJECT GUTENBERG EBOOK A TEST ***\r\n"
    "licence text\r\n"
)


def test_gutenberg_normalisation_by_hand():
    assert corpora.strip_gutenberg(GUTENBERG_FIXTURE) == "Chapter 1\nIt was a dark night.\n"
    squashed = GUTENBERG_FIXTURE.replace("*** START OF", "***START OF").replace("*** END OF", "***END OF")
    assert corpora.strip_gutenberg(squashed) == "Chapter 1\nIt was a dark night.\n"
    with pytest.raises(LadderError, match="START OF"):
        corpora.strip_gutenberg("no markers here\n")
    with pytest.raises(LadderError, match="END OF"):
        corpora.strip_gutenberg("*** START OF X ***\nbody\n")


def test_gutenberg_corpus_is_normalised():
    corpus = corpora.load("gutenberg-en")
    assert len(corpus.documents) == 33
    for doc in corpus.documents:
        assert "\r" not in doc and not doc.startswith("\ufeff")
        assert "*** START OF" not in doc and "*** END OF" not in doc and "PROJECT GUTENBERG EBOOK" not in doc.upper()[:200]
    alice = corpus.documents[corpus.doc_names.index("gutenberg-en/11.txt")]
    assert alice.startswith("ALICE’S ADVENTURES IN WONDERLAND")


def test_info_json(cli):
    result = cli("corpus", "info", "tinyshakespeare", "--json")
    assert result.exit_code == 0, result
    data = json.loads(result.stdout)
    assert data["chars"] == data["bytes"] == 1115394 and data["lines"] == 40000 and data["alphabet_size"] == 65
    assert set(data["splits"]) == {"train", "val", "test"}
    assert sum(s["chars"] for s in data["splits"].values()) == 1115394
    assert all(set(s) >= {"chars", "bytes", "lines"} for s in data["splits"].values())


def test_info_markov_reports_true_entropy(cli):
    data = json.loads(cli("corpus", "info", "markov", "--json").stdout)
    assert 0 < data["entropy_bits_per_char"] < 2.33  # 5 symbols: log2(5) = 2.32
    assert data["chars"] == 1_000_000


def test_list(cli):
    result = cli("corpus", "list", "--json")
    names = [row["name"] for row in json.loads(result.stdout)]
    assert names[:2] == ["tinyshakespeare", "gutenberg-en"] and {"markov", "parens"} <= set(names)
    assert cli("corpus", "list").exit_code == 0


def test_local_file_and_folder(cli, tmp_path):
    (tmp_path / "a.txt").write_text("alpha beta\ngamma\n", encoding="utf-8")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "b.txt").write_text("delta é\n", encoding="utf-8")
    one = corpora.load(tmp_path / "a.txt")
    assert one.kind == "local" and one.documents == ["alpha beta\ngamma\n"]
    folder = corpora.load(tmp_path)
    assert folder.doc_names == ["a.txt", "sub/b.txt"]
    data = json.loads(cli("corpus", "info", str(tmp_path / "a.txt"), "--json", "--split", "0.5,0.5,0").stdout)
    assert data["splits"]["train"]["chars"] + data["splits"]["val"]["chars"] == len("alpha beta\ngamma\n")


@pytest.mark.parametrize("content, fragment", [
    (b"", "is empty"),
    (b"abc\x00def\n", "looks binary"),
    (b"caf\xe9\n", "not valid UTF-8"),
])
def test_bad_files(cli, tmp_path, content, fragment):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    assert_error(cli("corpus", "info", str(path)), fragment)


def test_missing_path_and_empty_folder(cli, tmp_path):
    assert_error(cli("corpus", "info", str(tmp_path / "nope.txt")), "unknown corpus")
    (tmp_path / "empty").mkdir()
    assert_error(cli("corpus", "info", str(tmp_path / "empty")), "no .txt files")
    assert_error(cli("corpus", "get", "nope"), "unknown corpus")
