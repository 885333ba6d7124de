"""benchmarks/bench_ngram.py's own parts, fast: the texts it writes for lmladder and for lmplz, one
measured child process, the alternation and the median/spread table; KenLM's side only where its
binaries are built (skipped otherwise)."""

from __future__ import annotations

import hashlib
import json
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = script("bench_ngram")
kenlm_build = script("kenlm_build")


def test_letters_writes_each_line_as_space_separated_characters():
    assert bench.letters("ab c\u00a0d\n\nx!\n") == "a b \u2581 c \u2423 d\n\nx !\n"
    assert bench.letters("no end") == "n o \u2581 e n d\n"  # a last line without "\n" still ends one
    assert bench.letters("\n") == "\n"


def test_head_keeps_whole_lines():
    assert bench.head("ab\ncd\nef\n", 7) == "ab\ncd\n"
    assert bench.head("ab\ncd\n", 100) == "ab\ncd\n"
    assert bench.head("abcdef", 3) == "abc"


def test_write_pair_writes_the_text_and_its_letter_form(tmp_path):
    text = "Alice was\u00a0beginning\nto get very tired\n"
    info = bench.write_pair(tmp_path, "t", text)
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == text
    letters = (tmp_path / "t.char.txt").read_text(encoding="utf-8")
    assert letters.splitlines()[0] == "A l i c e \u2581 w a s \u2423 b e g i n n i n g"
    assert letters.split() == [c.replace(" ", "\u2581").replace("\u00a0", "\u2423") for c in text if c != "\n"]
    assert info["chars"] == len(text) and info["lines"] == 2 and info["bytes"] == len(text.encode())
    assert info["char_sha256"] == hashlib.sha256(letters.encode()).hexdigest()


def test_measure_reports_the_childs_own_time_memory_and_exit_code():
    """Measured from a small parent (a child's peak RSS starts at its parent's size when it is
    forked, and pytest's is hundreds of MiB by now), as bench_ngram measures from its own."""
    code = (f"import json, sys; sys.path.insert(0, {str(BENCHMARKS)!r}); import bench_ngram as b; "
            "big = b.measure([sys.executable, '-c', 'import time; b = bytes(range(256)) * (200 * 2**12); time.sleep(0.2)']); "
            "small = b.measure([sys.executable, '-c', 'import sys; sys.exit(3)']); print(json.dumps([big, small]))")
    big, small = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                           check=True).stdout)
    assert big["rc"] == 0 and big["seconds"] >= 0.2 and big["peak_mib"] >= 200
    assert small["rc"] == 3 and small["peak_mib"] < 100  # that child's own, not a maximum over all children


def test_alternate_runs_the_two_in_turn_and_takes_medians(tmp_path):
    trace = tmp_path / "trace"
    pair = {side: {"cmd": ["sh", "-c", f"echo {side} >> {trace}"]} for side in ("lmladder", "kenlm")}
    out = bench.alternate(pair, 3, "test")
    assert trace.read_text().split() == ["lmladder", "kenlm"] * 3
    for side in ("lmladder", "kenlm"):
        s = out[side]["seconds"]
        assert len(s["runs"]) == 3 and s["min"] <= s["median"] <= s["max"]
    assert out["ratio"]["seconds"] == out["lmladder"]["seconds"]["median"] / out["kenlm"]["seconds"]["median"]
    with pytest.raises(SystemExit, match="exit code 1"):
        bench.alternate({"lmladder": {"cmd": ["false"]}, "kenlm": {"cmd": ["true"]}}, 1, "test")


def fake_step(lm: list[float], ken: list[float]) -> dict:
    runs = {"lmladder": [{"seconds": s, "peak_mib": 100 * s, "cpu_seconds": s} for s in lm],
            "kenlm": [{"seconds": s, "peak_mib": 100 * s, "cpu_seconds": s} for s in ken]}
    out = {side: bench.summarise(r) for side, r in runs.items()}
    out["ratio"] = {k: out["lmladder"][k]["median"] / out["kenlm"][k]["median"] for k in ("seconds", "peak_mib")}
    return out


def test_table_gives_median_spread_and_ratio():
    assert bench.spread([3.0, 1.0, 2.0, 10.0, 2.5]) == {"median": 2.5, "min": 1.0, "max": 10.0,
                                                        "runs": [3.0, 1.0, 2.0, 10.0, 2.5]}
    report = {"cases": {"char8": {"build": fake_step([2.0, 4.0, 3.0], [1.0, 1.5, 2.0]),
                                  "score": fake_step([1.0], [0.5])}}}
    rows = bench.table(report)
    assert rows[2].startswith("| char8 | build | 3.00 (2.00–4.00) | 1.50 (1.00–2.00) | 2.00 | 300 (200–400) | "
                              "150 (100–200) | 2.00 |")
    assert rows[3].startswith("| char8 | score | 1.00 (1.00–1.00) | 0.50 (0.50–0.50) | 2.00 |")


def test_parsing_lmplz_and_query_reports(tmp_path):
    log = tmp_path / "lmplz.log"
    log.write_text("Unigram tokens 968330 types 67\n=== 2/5 Calculating ===\n"
                   "Discount fallback\n1 67 D1=0.5 D2=1 D3+=1.5\n2 1435 D1=0.46 D2=0.93 D3+=1.2\n")
    assert bench.lmplz_counts(log) == [67, 1435]
    summary = bench.query_summary("Perplexity including OOVs:\t4.5\nPerplexity excluding OOVs:\t4.0\n"
                                  "OOVs:\t2\nTokens:\t100\n")
    assert summary == {"ppl_incl": 4.5, "ppl_excl": 4.0, "oovs": 2, "tokens": 100}
    assert bench.kenlm_bits_per_char({"ppl_incl": 4.0, "tokens": 100}, 100) == pytest.approx(2.0)


def test_kenlm_build_reads_a_builds_version_and_max_order(tmp_path):
    bin_dir = tmp_path / "kenlm-9.9" / "build" / "bin"
    bin_dir.mkdir(parents=True)
    (tmp_path / "kenlm-9.9" / "PKG-INFO").write_text("Metadata-Version: 2.4\nName: kenlm\nVersion: 9.9\n")
    (bin_dir.parent / "CMakeCache.txt").write_text("KENLM_MAX_ORDER:STRING=8\n")
    with pytest.raises(kenlm_build.KenLMError, match="lmplz, query, build_binary"):
        kenlm_build.find(bin_dir)
    for tool in kenlm_build.TOOLS:
        (bin_dir / tool).write_text("#!/bin/sh\n")
        (bin_dir / tool).chmod(0o755)
    found = kenlm_build.find(bin_dir)
    assert (found.version, found.max_order, found.origin) == ("9.9", 8, "given")
    assert found.tool("query") == str(bin_dir / "query")


def built_kenlm():
    """KenLM's binaries from $KENLM_BIN, else the benchmark's default build, else None."""
    candidates = [os.environ.get("KENLM_BIN"),
                  kenlm_build.default_cache() / f"kenlm-{kenlm_build.VERSION}" / f"build-max{kenlm_build.MAX_ORDER}"
                  / "bin"]
    for candidate in filter(None, candidates):
        try:
            return kenlm_build.find(candidate)
        except kenlm_build.KenLMError:
            continue
    return None


def test_kenlm_reads_the_letter_text_one_token_per_character(tmp_path):
    kenlm = built_kenlm()
    if kenlm is None:
        pytest.skip("no KenLM binaries (set KENLM_BIN, or run benchmarks/kenlm_build.py once)")
    text = "the cat sat on\u00a0the mat\nthe dog sat\n\non the cat\n" * 20
    bench.write_pair(tmp_path, "t", text)
    arpa, binary, log = tmp_path / "t.arpa", tmp_path / "t.bin", tmp_path / "lmplz.log"
    run = bench.measure([kenlm.tool("lmplz"), "-o", "3", "--discount_fallback", "-S", "100M", "-T", str(tmp_path)],
                        stdin=tmp_path / "t.char.txt", stdout=arpa, stderr=log)
    assert run["rc"] == 0, log.read_text()
    assert bench.lmplz_counts(log)[0] == len(set(text) - {"\n"}) + 3  # the characters, <s>, </s>, <unk>
    assert bench.measure([kenlm.tool("build_binary"), "probing", str(arpa), str(binary)])["rc"] == 0
    out = tmp_path / "query.txt"
    assert bench.measure([kenlm.tool("query"), "-v", "summary", str(binary)], stdin=tmp_path / "t.char.txt",
                         stdout=out)["rc"] == 0
    summary = bench.query_summary(out.read_text())
    assert summary["tokens"] == len(text) and summary["oovs"] == 0  # a token per character, </s> the newline
