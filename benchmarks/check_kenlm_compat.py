"""Check `lmladder ngram train --kenlm-compat` against KenLM's lmplz itself, entry for entry.

    LMLADDER_MIRROR=../shared/corpora .venv/bin/python benchmarks/check_kenlm_compat.py [--date YYYY-MM-DD]
        [--kenlm-bin DIR | --kenlm-cache DIR]

lmplz is DIR/lmplz with --kenlm-bin DIR, else $LMPLZ, else the one on PATH, else one built from
KenLM's source distribution on the Python package index (kenlm 0.3.0) into a cache folder outside
the repository by benchmarks/kenlm_build.py (which says what it needs: CMake, Debian's Boost
packages, zlib). KenLM is not a dependency and nothing of it is kept in this repository.

Every case writes one text to a file, runs lmplz on it and `lmladder ngram train --unit word
--kenlm-compat --split 1,0,0` on the same text (the CLI, as a user would), then compares the two
models entry for entry (lmladder.arpa.compare: lmladder's float64 values against lmplz's ARPA):

  word3, char5      the Tiny Shakespeare fixtures' train text and its letter rewrite
  gutenberg-char3   the gutenberg-en letter fixture's rewrite (../shared/fixtures/kenlm/README.md)
  gutenberg-word5   gutenberg-en as it is, all 33 books (split 1,0,0; 3,601 no-break spaces);
                    lmladder trains on the corpus by name, lmplz reads its books joined
  whitespace        made-up lines of every separator KenLM knows and of characters it does not split at

The fixture cases are also compared with the fixture's ARPA file (lmplz at commit 4cb443e6). A
case passes when both sides have the same n-grams and every log10 p and backoff is within 1e-6.
One more case, no-final-newline, is reported and not held to that: lmplz drops the </s> of a last
line that has no "\\n" (compat mode does too, so every probability agrees) and then writes some
backoffs to the wrong n-grams: the n-grams at the end, which nothing follows, get one, and other
contexts get a neighbour's (`hast spoken` gets the backoff of `old goat!`, which gets that of
`<s> Senators,`, ...), while its probabilities were interpolated with the right ones.
Scratch files go to $WORK (default /tmp/kenlm-compat-check). Writes kenlm-compat-check-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow

from lmladder import arpa, corpora, registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kenlm_build  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("KENLM_FIXTURES", ROOT.parent / "shared" / "fixtures" / "kenlm"))
LMLADDER = os.environ.get("LMLADDER_BIN", str(ROOT / ".venv" / "bin" / "lmladder"))
WORK = Path(os.environ.get("WORK", "/tmp/kenlm-compat-check"))
CUT = 1_003_856  # the Tiny Shakespeare fixtures' train/test cut
TOLERANCE = 1e-6
NGRAM_PATH = ["lmladder/ngram*.py", "lmladder/counts.py", "lmladder/arpa.py", "lmladder/corpora.py",
              "lmladder/splits.py", "lmladder/textio.py", "lmladder/cli/ngram.py"]  # the code this check runs


def letters(text: str, space: str = "_", nbsp: str | None = None) -> str:
    """A text's characters as tokens, one line per line (the fixtures' rewrites)."""
    out = text.replace(" ", space)
    if nbsp:
        out = out.replace("\u00a0", nbsp)
    return "".join(" ".join(line) + "\n" for line in out[:-1].split("\n"))


def texts() -> dict[str, tuple[str, str, list[str], str | None, str | None]]:
    """case -> (text, what it is, lmplz options, fixture ARPA or None, the corpus lmladder trains
    on when not the text's file)."""
    shakespeare = (Path(os.environ["LMLADDER_MIRROR"]) / "tinyshakespeare.txt").read_text(encoding="utf-8")[:CUT]
    gutenberg = "".join(corpora.load("gutenberg-en").split("1,0,0")["train"])
    separators = ["a\u00a0b c\rd\ve\ff\tg  h", "", "x\u2028y ", " b  a\tc\r", "\u0085z\u2029 a", "c\x1cd\x1de b"]
    head = shakespeare[:shakespeare.index("\n", 100_000) + 1]
    return {
        "word3": (shakespeare, "Tiny Shakespeare train.txt", ["-o", "3", "-S", "100M"], "word3.arpa.gz", None),
        "char5": (letters(shakespeare), "train.char.txt", ["-o", "5", "--discount_fallback", "-S", "100M"],
                  "char5.arpa.gz", None),
        "gutenberg-char3": (letters(gutenberg, "\u2581", "\u2423"), "gut.char2.txt",
                            ["-o", "3", "--discount_fallback", "-S", "500M"], "gutenberg-char3.arpa.gz", None),
        "gutenberg-word5": (gutenberg, "gutenberg-en, 33 books joined", ["-o", "5", "-S", "2G"], None,
                            "gutenberg-en"),
        "whitespace": ("\n".join(separators * 40) + "\n", "made-up separators",
                       ["-o", "4", "--discount_fallback", "-S", "100M"], None, None),
        "no-final-newline": (head.rsplit(" ", 1)[0], "Tiny Shakespeare's first 100 kB, the last line cut to "
                             "`Than thou hast spoken` with no \\n",
                             ["-o", "4", "--discount_fallback", "-S", "100M"], None, None),
    }


def run_lmplz(lmplz: str, options: list[str], text_file: Path, arpa_file: Path) -> dict:
    start = time.perf_counter()
    with open(text_file, "rb") as stdin, open(arpa_file, "wb") as stdout:
        proc = subprocess.run([lmplz, *options, "-T", str(WORK)], stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
    log = proc.stderr.decode("utf-8", "replace")
    if proc.returncode:
        raise SystemExit(f"lmplz {' '.join(options)} failed:\n{log[-2000:]}")
    stats = re.findall(r"^(\d+) (\d+) D1=(\S+) D2=(\S+) D3\+=(\S+)$", log, re.M)
    return {"command": "lmplz " + " ".join(options), "seconds": time.perf_counter() - start,
            "ngrams": [int(s[1]) for s in stats], "discounts": [[float(x) for x in s[2:]] for s in stats]}


def run_lmladder(order: int, source: str, out: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([LMLADDER, "ngram", "train", source, "--unit", "word", "--order", str(order),
                           "--kenlm-compat", "--split", "1,0,0", "--out", str(out), "--json"],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"lmladder ngram train {source} failed:\n{proc.stderr[-2000:]}")
    trained = json.loads(proc.stdout)
    return {"command": f"lmladder ngram train {Path(source).name} --unit word --order {order} --kenlm-compat "
                       "--split 1,0,0", "seconds": time.perf_counter() - start, "train_seconds": trained["seconds"],
            "ngrams": trained["ngrams"],
            "discounts": [[d["D1"], d["D2"], d["D3+"]] for d in trained["discounts"]]}


def passes(rows: list[dict]) -> bool:
    return all(r["ours"] == r["theirs"] and r["only_ours"] == r["only_theirs"] == 0
               and r["max_abs_log10p"] <= TOLERANCE and r["max_abs_log10bo"] <= TOLERANCE for r in rows)


def check_case(name: str, text: str, what: str, options: list[str], fixture: str | None, corpus: str | None,
               lmplz: str) -> dict:
    text_file, arpa_file, out = WORK / f"{name}.txt", WORK / f"{name}.arpa", WORK / f"m_{name}"
    text_file.write_bytes(text.encode("utf-8"))
    order = int(options[options.index("-o") + 1])
    print(f"{name}: lmplz ...", file=sys.stderr)
    res: dict = {"text": what, "bytes": len(text.encode("utf-8")), "sha256": hashlib.sha256(text.encode()).hexdigest(),
                 "lmplz": run_lmplz(lmplz, options, text_file, arpa_file)}
    print(f"{name}: lmladder ...", file=sys.stderr)
    res["lmladder"] = run_lmladder(order, corpus or str(text_file), out)
    model = registry.load_model(str(out))
    ours = arpa.model_orders(model)
    res["vs_lmplz"] = arpa.compare_orders(ours, arpa.read_orders(arpa_file))
    res["pass"] = passes(res["vs_lmplz"])
    if fixture:
        fixed = arpa.read_orders(FIXTURES / fixture)
        res["fixture"] = fixture
        res["vs_fixture"] = arpa.compare_orders(ours, fixed)
        res["lmplz_vs_fixture"] = arpa.compare_orders(arpa.read_orders(arpa_file), fixed)
        res["pass"] = res["pass"] and passes(res["vs_fixture"])
    return res


def environment(lmplz: str) -> dict:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    pkg_info = Path(lmplz).resolve().parents[2] / "PKG-INFO"  # <sdist>/build/bin/lmplz
    version = re.search(r"^Version: (\S+)", pkg_info.read_text(), re.M).group(1) if pkg_info.is_file() else None
    return {"machine": f"{cpu}, {os.cpu_count()} cores, "
                       f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB",
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "os": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
            "pyarrow": pyarrow.__version__, "kenlm": f"{version} (PyPI sdist, built from source, Release)"
            if version else "unknown", "lmplz_sha256": hashlib.sha256(Path(lmplz).read_bytes()).hexdigest(),
            "lmladder_commit": git("rev-parse", "HEAD").strip(),
            "lmladder_dirty": [line[3:] for line in git("status", "--porcelain", "--", *NGRAM_PATH).splitlines()]}


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


def markdown(report: dict) -> str:
    env = report["environment"]
    rows = [f"# --kenlm-compat against KenLM's lmplz, entry for entry, {report['date']}", "",
            f"{env['machine']}; {env['os']}; KenLM {env['kenlm']}; Python {env['python']}, numpy {env['numpy']}, "
            f"pyarrow {env['pyarrow']}; lmladder at {env['lmladder_commit'][:10]}"
            + (f" with uncommitted changes in {', '.join(env['lmladder_dirty'])} (the n-gram path)"
               if env["lmladder_dirty"] else "")
            + ". Made by benchmarks/check_kenlm_compat.py.", "",
            "Each case: lmplz and `lmladder ngram train --unit word --kenlm-compat --split 1,0,0` on the same text, "
            f"every n-gram's log10 p and backoff compared (lmladder's float64 against lmplz's ARPA; pass: the same "
            f"n-grams, every difference <= {TOLERANCE:g}). Fixture: lmplz at commit 4cb443e6 "
            "(../shared/fixtures/kenlm). Seconds are wall time of one run each, the CLI's whole process and its "
            f"training alone, on a machine shared with other jobs (load average {env['load_average'][0]} at the "
            "start): not a speed comparison (benchmarks/bench_ngram.py is).", "",
            "| case | text | lmplz | pass | lmplz s | lmladder s (train) |", "|---|---|---|---|---:|---:|"]
    for name, r in report["cases"].items():
        rows.append(f"| {name} | {r['text']} ({r['bytes']:,} bytes) | `{r['lmplz']['command']}` | "
                    f"{'yes' if r['pass'] else 'no'} | {r['lmplz']['seconds']:.1f} | "
                    f"{r['lmladder']['seconds']:.1f} ({r['lmladder']['train_seconds']:.1f}) |")
    for name, r in report["cases"].items():
        rows += ["", f"## {name}", "",
                 "| order | n-grams, lmplz | n-grams, lmladder | one side only | max abs log10 p | max abs backoff | "
                 "D1 D2 D3+, lmplz | D1 D2 D3+, lmladder |", "|---:|---:|---:|---:|---:|---:|---|---|"]
        for row, kd, ld in zip(r["vs_lmplz"], r["lmplz"]["discounts"], r["lmladder"]["discounts"]):
            rows.append(f"| {row['order']} | {row['theirs']:,} | {row['ours']:,} | "
                        f"{row['only_ours'] + row['only_theirs']} | {fmt(row['max_abs_log10p'])} | "
                        f"{fmt(row['max_abs_log10bo'])} | {' '.join(f'{x:g}' for x in kd)} | "
                        f"{' '.join(f'{x:.6g}' for x in ld)} |")
        if "vs_fixture" in r:
            worst = [(fmt(max(x["max_abs_log10p"] for x in r[k])), fmt(max(x["max_abs_log10bo"] for x in r[k])),
                      sum(x["only_ours"] + x["only_theirs"] for x in r[k])) for k in ("vs_fixture", "lmplz_vs_fixture")]
            rows += ["", f"Against the fixture {r['fixture']}: lmladder max abs log10 p {worst[0][0]}, backoff "
                     f"{worst[0][1]}, {worst[0][2]} n-grams on one side only; lmplz 0.3.0 vs the fixture "
                     f"{worst[1][0]}, {worst[1][1]}, {worst[1][2]}."]
        if name == "no-final-newline":
            bad = [row["order"] for row in r["vs_lmplz"] if (row["max_abs_log10bo"] or 0) > TOLERANCE]
            rows += ["", "Not held to the tolerance: lmplz gives the last line no </s> (nor does compat mode), so "
                     "every probability agrees; then it writes backoffs of orders "
                     f"{', '.join(map(str, bad)) or '(none)'} to the wrong n-grams (`hast spoken`, which nothing "
                     "follows, gets the backoff of `old goat!`, which gets that of `<s> Senators,`, ...), though its "
                     "probabilities were interpolated with the right ones. End a text for lmplz with a newline."]
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--date", default=time.strftime("%Y-%m-%d"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--only", action="append", help="run only this case (repeatable)")
    kenlm_build.add_arguments(parser)
    args = parser.parse_args()
    lmplz = None if args.kenlm_bin else os.environ.get("LMPLZ") or shutil.which("lmplz")
    if not lmplz:
        lmplz = kenlm_build.from_arguments(args, tools=("lmplz",)).tool("lmplz")
    WORK.mkdir(parents=True, exist_ok=True)
    for folder in WORK.glob("m_*"):
        shutil.rmtree(folder)
    report = {"date": args.date, "tolerance": TOLERANCE, "environment": environment(lmplz), "cases": {}}
    for name, (text, what, options, fixture, corpus) in texts().items():
        if args.only and name not in args.only:
            continue
        report["cases"][name] = check_case(name, text, what, options, fixture, corpus, lmplz)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"kenlm-compat-check-{args.date}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"kenlm-compat-check-{args.date}.md").write_text(markdown(report))
    print(markdown(report))
    held = [name for name, r in report["cases"].items() if name != "no-final-newline" and not r["pass"]]
    if held:
        raise SystemExit(f"not entry for entry: {', '.join(held)}")


if __name__ == "__main__":
    main()
