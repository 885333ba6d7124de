"""The corpus registry: named corpora, local paths and synthetic sources, all as documents.

A named corpus's files are found, in order, in $LMLADDER_HOME/corpora, in $LMLADDER_MIRROR (a
local folder laid out like the registry's paths, e.g. ../shared/corpora) and at their public
address. Every copy is checked against the registry's sha256 before use; a download goes to a
temporary name and is renamed only once verified.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from lmladder import home, textio
from lmladder.home import DATA
from lmladder.console import log, progress
from lmladder.errors import LadderError
from lmladder.splits import DEFAULT_SPLIT, Splits, SplitSpec, split_documents

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]

DEFAULT_CORPUS = "tinyshakespeare"


@dataclass
class Corpus:
    name: str  # the registered name, or the path as given
    kind: str  # "registered", "local" or "synthetic"
    doc_names: list[str]
    documents: list[str]
    sha256: str
    default_split: str
    meta: dict[str, Any] = field(default_factory=dict)

    def split(self, spec: str | SplitSpec | None = None) -> Splits:
        return split_documents(self.doc_names, self.documents, spec or self.default_split)

    def identity(self) -> dict[str, Any]:
        """What an artifact records about the corpus it was built from."""
        return {"name": self.name, "kind": self.kind, "sha256": self.sha256}


def registry_path() -> Path:
    """The corpus registry: $LMLADDER_REGISTRY, else the one inside the package (lmladder/data)."""
    path = Path(os.environ.get("LMLADDER_REGISTRY") or DATA / "corpora.toml")
    if not path.is_file():
        raise LadderError(f"the corpus registry {path} was not found; reinstall lmladder or fix LMLADDER_REGISTRY")
    return path


@lru_cache(maxsize=8)
def _load_registry(path: str, mtime: float) -> dict[str, Any]:
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def registry() -> dict[str, Any]:
    path = registry_path()
    return _load_registry(str(path), path.stat().st_mtime)


def entry(name: str) -> dict[str, Any]:
    reg = registry()
    if name not in reg:
        raise LadderError(f"unknown corpus {name!r}; registered corpora: {', '.join(reg)}")
    return reg[name]


# --- finding and verifying files -------------------------------------------------------


def _fix_hint(spec: dict[str, Any]) -> str:
    return (
        f"set LMLADDER_MIRROR to a folder holding {spec['path']} (e.g. a copy of shared/corpora), "
        f"or download {spec['url']} to {home.corpora_dir() / spec['path']}"
    )


def _verified(path: Path, spec: dict[str, Any]) -> bool:
    return path.is_file() and textio.sha256_file(path) == spec["sha256"]


def _as_new_file(path: str) -> None:
    """mkstemp makes a file 0600; an installed corpus gets a new file's usual mode (as atomic_file)."""
    from lmladder.atomic import _umask

    os.chmod(path, 0o666 & ~_umask())


def _install_from(source: Path, target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise LadderError(f"cannot install {target.name} into {target.parent}: {exc.strerror}; "
                          "set LMLADDER_HOME to a folder you can write to") from None
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        _as_new_file(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise LadderError(f"cannot install {target}: {exc.strerror}; free some space or set LMLADDER_HOME to a "
                          "folder you can write to") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _download(spec: dict[str, Any], target: Path) -> None:
    import urllib.error  # (here: urllib.request takes ~12 ms to import, which reading a local text should not pay)
    import urllib.request

    url = spec["url"]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or spec.get("bytes") or 0)
            with progress("bytes") as bar:
                task = bar.add_task(f"download {spec['path']}", total=total or None)
                while block := response.read(1 << 16):
                    out.write(block)
                    bar.advance(task, len(block))
        got = textio.sha256_file(tmp)
        if got != spec["sha256"]:
            raise LadderError(
                f"{spec['path']} downloaded from {url} has sha256 {got}, expected {spec['sha256']}; "
                f"{_fix_hint(spec)}"
            )
        _as_new_file(tmp)
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise LadderError(
            f"could not download {spec['path']} (sha256 {spec['sha256']}) from {url}: {reason}; "
            f"{_fix_hint(spec)}"
        ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def resolve_file(spec: dict[str, Any]) -> Path:
    """A verified local copy of one registry file, installing it into the home if needed."""
    target = home.corpora_dir() / spec["path"]
    if target.exists() and not target.is_file():
        raise LadderError(f"{target} is in the way of corpus file {spec['path']}: it is not a file (a folder?); "
                          "move it away or set LMLADDER_HOME to another folder")
    if _verified(target, spec):
        return target
    if target.exists():
        log(f"[yellow]{target} does not match its sha256; fetching it again[/]")
    mirror = home.mirror()
    if mirror is not None:
        candidate = mirror / spec["path"]
        if candidate.is_file():
            if not _verified(candidate, spec):
                raise LadderError(
                    f"{candidate} in LMLADDER_MIRROR does not match sha256 {spec['sha256']}; "
                    "replace it with a good copy or unset LMLADDER_MIRROR"
                )
            _install_from(candidate, target)
            return target
    if home.offline():
        raise LadderError(
            f"{spec['path']} (sha256 {spec['sha256']}) is not in {home.corpora_dir()} and "
            f"LMLADDER_OFFLINE is set; {_fix_hint(spec)}"
        )
    _download(spec, target)
    return target


def get(name: str) -> list[Path]:
    """Install every file of a registered corpus (verified) and return their paths."""
    spec = entry(name)
    if "generator" in spec:
        return [_synthetic_path(name, spec)]
    return [resolve_file(f) for f in spec["files"]]


# --- normalisation ---------------------------------------------------------------------


def strip_gutenberg(text: str, source: str = "text") -> str:
    """Keep the book between Project Gutenberg's START and END markers (see registry.toml)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.replace("\r\n", "\n").split("\n")

    def is_marker(line: str, word: str) -> bool:
        compact = line.replace(" ", "")
        return compact.startswith(f"***{word}OF")

    start = next((i for i, line in enumerate(lines) if is_marker(line, "START")), None)
    if start is None:
        raise LadderError(f"{source} has no '*** START OF' marker; is it a Project Gutenberg text?")
    while start < len(lines) and not lines[start].rstrip().endswith("***"):
        start += 1
    end = next((i for i in range(start + 1, len(lines)) if is_marker(lines[i], "END")), None)
    if end is None:
        raise LadderError(f"{source} has no '*** END OF' marker after its START marker")
    body = lines[start + 1 : end]
    while body and not body[0].strip():
        body.pop(0)
    while body and not body[-1].strip():
        body.pop()
    if not body:
        raise LadderError(f"{source} has no text between its START and END markers")
    return "\n".join(body) + "\n"


NORMALISERS = {"none": lambda text, source: text, "gutenberg": strip_gutenberg}


# --- loading ---------------------------------------------------------------------------


def _synthetic_path(name: str, spec: dict[str, Any]) -> Path:
    from lmladder import synthetic

    key = synthetic.settings_hash(spec)[:16]
    path = home.corpora_dir() / "synthetic" / f"{name}-{key}.txt"
    if not path.is_file():
        source = synthetic.build_source(spec)
        text = source.generate(int(spec["chars"]), int(spec["seed"]))
        from lmladder.atomic import write_text

        write_text(path, text)
    return path


def _load_registered(name: str) -> Corpus:
    spec = entry(name)
    if "generator" in spec:
        from lmladder import synthetic

        data = textio.read_bytes(_synthetic_path(name, spec))
        source = synthetic.build_source(spec)
        meta = {k: v for k, v in spec.items() if k not in ("split",)}
        meta["entropy_bits_per_char"] = source.entropy_rate()
        return Corpus(name, "synthetic", [name], [data.decode("utf-8")], textio.sha256_bytes(data),
                      spec.get("split", DEFAULT_SPLIT), meta)
    normalise = NORMALISERS[spec.get("normalise", "none")]
    names, docs = [], []
    for file_spec in spec["files"]:
        path = resolve_file(file_spec)
        text = textio.decode_utf8(path.read_bytes(), str(path))
        names.append(file_spec["path"])
        docs.append(normalise(text, str(path)))
    if len(spec["files"]) == 1:
        sha = spec["files"][0]["sha256"]
    else:
        sha = textio.sha256_bytes("".join(f"{f['path']} {f['sha256']}\n" for f in spec["files"]).encode())
    meta = {k: spec[k] for k in ("description", "licence") if k in spec}
    return Corpus(name, "registered", names, docs, sha, spec.get("split", DEFAULT_SPLIT), meta)


def _load_local(path: Path) -> Corpus:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise LadderError(f"folder {path} holds no .txt files; give a .txt file or a folder of them")
    else:
        files = [path]
    names, docs, digests = [], [], []
    for file in files:
        data = textio.read_bytes(file)
        if not data:
            raise LadderError(f"{file} is empty; give a file with some text in it")
        docs.append(textio.decode_utf8(data, str(file)))
        rel = file.name if file == path else str(file.relative_to(path))
        names.append(rel)
        digests.append(f"{rel} {textio.sha256_bytes(data)}\n")
    sha = digests[0].split()[-1] if len(files) == 1 else textio.sha256_bytes("".join(digests).encode())
    return Corpus(str(path), "local", names, docs, sha, DEFAULT_SPLIT, {})


def load_recorded(identity: dict[str, Any] | None, what: str) -> Corpus:
    """The corpus an artifact records it was built from (its `corpus` identity), checked by
    sha256; DEFAULT_CORPUS for an artifact that records none."""
    if not identity or not identity.get("name"):
        return load(DEFAULT_CORPUS)
    name = identity["name"]
    try:
        corpus = load(name)
    except LadderError:
        raise LadderError(f"{what} was built from corpus {name!r}, which is not here; give the corpus to use "
                          "as an argument") from None
    if identity.get("sha256") and corpus.sha256 != identity["sha256"]:
        raise LadderError(f"{what} was built from corpus {name!r} with sha256 {identity['sha256'][:12]}..., but "
                          f"{name!r} now has {corpus.sha256[:12]}...; give the corpus to use as an argument")
    return corpus


def load(name_or_path: str | os.PathLike | None = None) -> Corpus:
    """A registered corpus by name, or a local .txt file or folder of them."""
    name = str(name_or_path or DEFAULT_CORPUS)
    if name in registry():
        return _load_registered(name)
    path = Path(name).expanduser()
    if path.exists():
        return _load_local(path)
    raise LadderError(
        f"unknown corpus {name!r}: not a registered name ({', '.join(registry())}) nor an existing path"
    )
