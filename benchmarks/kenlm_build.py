"""Find or build KenLM's lmplz, query and build_binary for the benchmarks and checks.

    python benchmarks/kenlm_build.py [--kenlm-bin DIR] [--kenlm-cache DIR] [--max-order 8]

KenLM is not a dependency of lmladder and nothing of it is kept in this repository. Its source
distribution on the Python package index (`kenlm`) holds the whole C++ tree, lmplz included, and
builds with CMake and Debian's Boost packages. `ensure()` uses binaries already built (a folder
given as --kenlm-bin), else builds them once into a cache folder outside the repository
(default ~/.cache/lmladder-bench/kenlm, or $XDG_CACHE_HOME/lmladder-bench/kenlm):

    pip download --no-deps --no-binary :all: kenlm==VERSION   # into the cache
    tar xzf kenlm-VERSION.tar.gz
    cmake -S kenlm-VERSION -B kenlm-VERSION/build-max8 -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER=8
    make -C kenlm-VERSION/build-max8 -j2 lmplz query build_binary

KENLM_MAX_ORDER (6 unless set) is the longest model that query and build_binary can load; lmplz
writes ARPA files of any order. Run as a script, this prints the folder holding the binaries.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

TOOLS = ("lmplz", "query", "build_binary")
VERSION = "0.3.0"  # the sdist the repository's KenLM checks and fixtures were made with
MAX_ORDER = 8  # the longest model the n-gram benchmark loads (a letter 8-gram)
APT = ("cmake", "g++", "make", "libboost-program-options-dev", "libboost-system-dev", "libboost-thread-dev",
       "libboost-test-dev", "zlib1g-dev", "libbz2-dev", "liblzma-dev")
APT_HINT = "sudo apt-get install " + " ".join(APT)


class KenLMError(RuntimeError):
    """KenLM could not be found or built; the message says what to do."""


@dataclass(frozen=True)
class KenLM:
    bin: Path  # the folder holding lmplz, query and build_binary
    version: str | None  # the sdist's version, when known (its PKG-INFO)
    max_order: int | None  # KENLM_MAX_ORDER of the build, when known (its CMakeCache.txt)
    origin: str  # how it was found: "given" or "built"

    def tool(self, name: str) -> str:
        return str(self.bin / name)

    def describe(self) -> str:
        return (f"KenLM {self.version or '(version unknown)'} (PyPI sdist, built from source, Release"
                f"{f', KENLM_MAX_ORDER={self.max_order}' if self.max_order else ''}), {self.bin}")


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lmladder-bench" / "kenlm"


def _build_facts(bin_dir: Path) -> tuple[str | None, int | None]:
    """The version (<source>/PKG-INFO) and KENLM_MAX_ORDER (<build>/CMakeCache.txt) of a build whose
    binaries are in <source>/<build>/bin, when those files are there."""
    version = max_order = None
    pkg_info = bin_dir.resolve().parent.parent / "PKG-INFO"
    if pkg_info.is_file():
        found = re.search(r"^Version: (\S+)", pkg_info.read_text(errors="replace"), re.M)
        version = found.group(1) if found else None
    cache = bin_dir.resolve().parent / "CMakeCache.txt"
    if cache.is_file():
        found = re.search(r"^KENLM_MAX_ORDER:\w+=(\d+)", cache.read_text(errors="replace"), re.M)
        max_order = int(found.group(1)) if found else None
    return version, max_order


def find(bin_dir: str | os.PathLike, tools: tuple[str, ...] = TOOLS) -> KenLM:
    """Binaries already built, in one folder."""
    bin_dir = Path(bin_dir).expanduser()
    missing = [t for t in tools if not os.access(bin_dir / t, os.X_OK)]
    if missing:
        raise KenLMError(f"{bin_dir} has no executable {', '.join(missing)}; give the bin folder of a KenLM build "
                         "(e.g. <kenlm source>/build/bin) or leave --kenlm-bin out to build one")
    version, max_order = _build_facts(bin_dir)
    return KenLM(bin_dir, version, max_order, "given")


def _run(cmd: list[str], cwd: Path | None, log_file: Path, what: str) -> None:
    print(f"kenlm_build: {' '.join(cmd)}", file=sys.stderr, flush=True)
    with open(log_file, "ab") as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode:
        tail = log_file.read_text(errors="replace")[-3000:]
        hint = ""
        if what != "download" and re.search(r"Boost|ZLIB|BZip2|LibLZMA|CMAKE_CXX_COMPILER|No such file", tail):
            hint = f"\nMissing build dependencies? On Debian/Ubuntu: {APT_HINT}"
        raise KenLMError(f"KenLM {what} failed (exit {proc.returncode}; full log in {log_file}):\n{tail}{hint}")


def _unpack(archive: Path, into: Path) -> Path:
    with tarfile.open(archive) as tar:
        top = {Path(m.name).parts[0] for m in tar.getmembers() if m.name not in ("", ".")}
        if len(top) != 1:
            raise KenLMError(f"{archive} does not unpack into one folder")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:  # pragma: no cover  (Python before 3.11.4)
            tar.extractall(into)
    return into / top.pop()


def build(cache: str | os.PathLike | None = None, version: str = VERSION, max_order: int = MAX_ORDER,
          jobs: int = 2) -> KenLM:
    """lmplz, query and build_binary built from KenLM's sdist in `cache` (done once; later calls
    find the binaries there)."""
    cache = Path(cache).expanduser() if cache else default_cache()
    source = cache / f"kenlm-{version}"
    bin_dir = source / f"build-max{max_order}" / "bin"
    if all(os.access(bin_dir / t, os.X_OK) for t in TOOLS):
        found_version, found_order = _build_facts(bin_dir)
        return KenLM(bin_dir, found_version or version, found_order or max_order, "built")
    missing = [t for t in ("cmake", "make", "c++") if not shutil.which(t)]
    if missing:
        raise KenLMError(f"building KenLM needs {', '.join(missing)}, not found on PATH. On Debian/Ubuntu: "
                         f"{APT_HINT}; or give --kenlm-bin DIR with lmplz, query and build_binary already built")
    cache.mkdir(parents=True, exist_ok=True)
    log_file = cache / f"build-{version}-max{max_order}.log"
    archive = cache / f"kenlm-{version}.tar.gz"
    if not archive.is_file():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", f"kenlm=={version}",
               "-d", str(cache)]
        try:  # preparing the sdist's metadata needs setuptools; in this environment if it is there
            import setuptools  # noqa: F401

            cmd.insert(4, "--no-build-isolation")
        except ImportError:
            pass
        _run(cmd, None, log_file, "download")
        if not archive.is_file():
            raise KenLMError(f"pip download did not leave {archive} (see {log_file})")
    if not (source / "CMakeLists.txt").is_file():
        unpacked = _unpack(archive, cache)
        if unpacked != source:
            raise KenLMError(f"{archive} unpacked into {unpacked}, expected {source}")
    build_dir = bin_dir.parent
    build_dir.mkdir(exist_ok=True)
    _run(["cmake", "-S", str(source), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
          f"-DKENLM_MAX_ORDER={max_order}"], None, log_file, "configure (cmake)")
    _run(["make", "-C", str(build_dir), f"-j{jobs}", *TOOLS], None, log_file, "build (make)")
    find(bin_dir)  # all three are there
    return KenLM(bin_dir, version, max_order, "built")


def ensure(bin_dir: str | os.PathLike | None = None, cache: str | os.PathLike | None = None,
           version: str = VERSION, max_order: int = MAX_ORDER, jobs: int = 2, tools: tuple[str, ...] = TOOLS) -> KenLM:
    """KenLM's binaries: those in bin_dir when given (`tools` must be there), else a build in the
    cache (made if needed)."""
    if bin_dir:
        return find(bin_dir, tools)
    return build(cache, version, max_order, jobs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options a script that needs KenLM takes (read them back with from_arguments)."""
    parser.add_argument("--kenlm-bin", help="folder with KenLM's lmplz, query and build_binary already built "
                        "(default: build them from the kenlm sdist into --kenlm-cache)")
    parser.add_argument("--kenlm-cache", help=f"where to download and build KenLM (default {default_cache()})")
    parser.add_argument("--kenlm-version", default=VERSION, help="the kenlm sdist to build (default %(default)s)")


def from_arguments(args: argparse.Namespace, max_order: int = MAX_ORDER, tools: tuple[str, ...] = TOOLS) -> KenLM:
    """ensure() with the options add_arguments defined; a failure ends the script with its message."""
    try:
        return ensure(args.kenlm_bin, args.kenlm_cache, args.kenlm_version, max_order, tools=tools)
    except KenLMError as exc:
        raise SystemExit(str(exc)) from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--max-order", type=int, default=MAX_ORDER, help="KENLM_MAX_ORDER (default %(default)s)")
    args = parser.parse_args()
    kenlm = from_arguments(args, args.max_order)
    print(kenlm.describe(), file=sys.stderr)
    print(kenlm.bin)


if __name__ == "__main__":
    main()
