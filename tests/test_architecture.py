"""How the package is laid out: no import cycles, short modules, the model apart from the GPU
kernels, one registry that knows every kind, and package data that a built wheel carries."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "lmladder"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    """module -> the lmladder modules it imports anywhere in its body (inside functions too)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                submodules = {f"{base}.{a.name}" for a in node.names} & set(modules)
                found.update(submodules)
                if len(submodules) < len(node.names):  # a name defined in `base` itself
                    found.add(base)
        graph[name] = {m for m in found if m in modules and m != name and m != "lmladder"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_inside_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_no_module_is_long():
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_models_do_not_import_the_gpu_kernels():
    graph = import_graph()
    for model in ("lmladder.gpt", "lmladder.mlp"):
        assert not {m for m in graph[model] if m.startswith("lmladder.kernels")}, graph[model]


def test_every_registered_kind_resolves():
    from lmladder import registry

    for kind in registry.KINDS.values():
        for role in ("ladder", "load"):
            if getattr(kind, role) is not None:
                assert callable(kind.function(role)), (kind.name, role)
    assert set(registry.TRAIN_MODELS) <= set(registry.KINDS)


def test_the_default_ladder_uses_registered_kinds():
    from lmladder import bench

    assert bench.DEFAULT_LADDER.is_relative_to(PACKAGE)
    kinds = {r["kind"] for r in bench.load_ladder(None)}
    assert kinds == {"uniform", "unigram", "compressor", "ngram", "mlp", "gpt"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    env = dict(os.environ, PIP_NO_INDEX="1")  # setuptools is already here (the test extra): no download
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(REPO)], check=True, cwd=out, env=env, capture_output=True, timeout=300)
    return next(out.glob("lmladder-*.whl"))


def test_the_wheel_carries_the_package_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"lmladder/data/corpora.toml", "lmladder/data/default-ladder.toml"} <= names
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


def test_an_installed_lmladder_runs_from_another_folder(wheel, tmp_path):
    """The non-editable install: the wheel's files alone (not this checkout), run elsewhere."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    text = elsewhere / "small.txt"
    text.write_text("".join(f"line {i} of a small corpus, with words and letters.\n" for i in range(400)))
    env = dict(os.environ, PYTHONPATH=str(site), LMLADDER_HOME=str(tmp_path / "home"))
    where = subprocess.run([sys.executable, "-c", "import lmladder; print(lmladder.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(site))
    run = subprocess.run([sys.executable, "-m", "lmladder", "bench", str(text), "--only", "uni*", "--json"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "unigram" in run.stdout
    listed = subprocess.run([sys.executable, "-m", "lmladder", "corpus", "list"], cwd=elsewhere, env=env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "tinyshakespeare" in listed.stdout, listed.stderr
