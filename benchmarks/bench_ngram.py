"""lmladder's n-gram engine against KenLM: both whole processes, the same text, alternating runs.

    LMLADDER_MIRROR=../shared/corpora .venv/bin/python benchmarks/bench_ngram.py \
        [--repeats 5] [--kenlm-bin DIR | --kenlm-cache DIR] [--out benchmarks/results] [--date YYYY-MM-DD] \
        [--work /tmp/lmladder-bench-ngram] [--quality none|tinyshakespeare|all] [--quick]

KenLM: --kenlm-bin DIR (lmplz, query and build_binary already built, with KENLM_MAX_ORDER >= 8),
else built once from the kenlm sdist on the package index (benchmarks/kenlm_build.py).

Texts (written by a child process, so that this one stays small: a child's peak RSS starts at
its parent's RSS at the moment it is spawned, which `floor_mib` in the report measures):
  corpus  gutenberg-en's train split under --split 1,0,0: all 33 books after lmladder's Gutenberg
          normalisation, joined (the training text of the timed builds)
  train   the train split of gutenberg-en's default split (0.9,0.05,0.05; 30 books)
  test    the test split of the default split (2 books)
each as lmladder reads it (`NAME.txt`) and, for the letter model, as lmplz needs it
(`NAME.char.txt`: each line's characters separated by single spaces, a space written U+2581 and a
no-break space U+2423, so that no token is whitespace; one line per line, so KenLM's </s> stands
for the newline). The word model reads NAME.txt on both sides.

Cases, each a pair of commands run alternately (lmladder, KenLM, lmladder, KenLM, ...), --repeats
times; every run is a fresh process whose wall time and peak RSS (os.wait4: that child alone) are
recorded; the report gives medians, min-max and the ratio of the medians (lmladder / KenLM):
  build   char8: `lmladder ngram train corpus.txt --unit char --order 8 --split 1,0,0 --out DIR --force`
                 against `lmplz -o 8 --discount_fallback -S 2G < corpus.char.txt > char8.arpa`
          word5: `... --unit word --order 5 --kenlm-compat ...` against `lmplz -o 5 -S 2G < corpus.txt`
  score   models trained once (not timed) on train.txt (lmladder: --split 1,0,0) and train[.char].txt,
          KenLM's ARPA made binary once with `build_binary probing` (not timed), then
          `lmladder score MODEL test.txt --json` against `query -v summary MODEL.bin < test[.char].txt`.
          Trained on the train split, not the build text, so that what they print is held out.
          char8: the same commands as in build. word5: `lmladder score` refuses a --kenlm-compat
          model (it has no exact bits per character), so lmladder's side is its own word 5-gram,
          open vocabulary with words seen once spelled by a letter 6-gram (--min-count 2),
          against KenLM's closed vocabulary (an unknown word is one <unk>).
Then, in this process, bits per character by order (--quality): letter orders 1..10 and
open-vocabulary word orders 1..5 on tinyshakespeare (and gutenberg-en with --quality all).
--quick: the first 2 M characters of corpus and train and 200 k of test, 1 repeat, no quality
section (a smoke run). The lmladder commands run with LMLADDER_HOME=<work>/home. Writes
ngram-cpu-<date>.json and .md into --out, and prints the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import kenlm_build  # noqa: E402

SPACE, NBSP = "\u2581", "\u2423"  # how the letter files write " " and U+00A0 (as the KenLM fixtures do)
QUICK_CHARS = {"corpus": 2_000_000, "train": 2_000_000, "test": 200_000}
CASES = {
    "char8": {"name": "letter 8-gram, modified Kneser-Ney", "letters": True, "order": 8,
              "lmladder": ["--unit", "char", "--order", "8"], "lmplz": ["-o", "8", "--discount_fallback", "-S", "2G"],
              "score_model": ["--unit", "char", "--order", "8"]},
    "word5": {"name": "word 5-gram, modified Kneser-Ney", "letters": False, "order": 5,
              "lmladder": ["--unit", "word", "--order", "5", "--kenlm-compat"], "lmplz": ["-o", "5", "-S", "2G"],
              # `lmladder score` refuses a --kenlm-compat model (no exact bits per character): its scored
              # word model is the open-vocabulary one, words seen once spelled letter by letter
              "score_model": ["--unit", "word", "--order", "5", "--min-count", "2"]},
}
NGRAM_PATH = ["lmladder/ngram*.py", "lmladder/counts.py", "lmladder/openvocab.py", "lmladder/metrics.py",
              "lmladder/corpora.py", "lmladder/splits.py", "lmladder/textio.py", "lmladder/cli/ngram.py",
              "lmladder/cli/score.py"]  # the code the lmladder commands run


# --- texts ---------------------------------------------------------------------------------


def letters(text: str) -> str:
    """A text as lmplz reads a letter model's training or test text: one line per line of the
    text, its characters separated by single spaces (space -> U+2581, no-break space -> U+2423)."""
    body = text[:-1] if text.endswith("\n") else text
    body = body.replace(" ", SPACE).replace("\u00a0", NBSP)
    return "".join(" ".join(line) + "\n" for line in body.split("\n"))


def head(text: str, chars: int) -> str:
    """The text's lines that end within its first `chars` characters (all of it if shorter)."""
    if len(text) <= chars:
        return text
    cut = text.rfind("\n", 0, chars)
    return text[:cut + 1] if cut >= 0 else text[:chars]


def write_pair(folder: Path, name: str, text: str) -> dict:
    """NAME.txt (the text as is) and NAME.char.txt (its letter form) in folder; what they hold."""
    info = {"chars": len(text), "lines": text.count("\n")}
    for suffix, body in ((".txt", text), (".char.txt", letters(text))):
        data = body.encode("utf-8")
        (folder / f"{name}{suffix}").write_bytes(data)
        info["bytes" if suffix == ".txt" else "char_bytes"] = len(data)
        info["sha256" if suffix == ".txt" else "char_sha256"] = hashlib.sha256(data).hexdigest()
    return info


def write_texts(folder: Path, quick: bool) -> dict:
    """corpus, train and test of gutenberg-en (see the module's docstring), written to folder."""
    from lmladder import corpora

    corpus = corpora.load("gutenberg-en")
    default = corpus.split(None)
    texts = {"corpus": "".join(corpus.split("1,0,0")["train"]), "train": "".join(default["train"]),
             "test": "".join(default["test"])}
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, text in texts.items():
        out[name] = write_pair(folder, name, head(text, QUICK_CHARS[name]) if quick else text)
    out["test"]["books"] = default.names["test"]
    out["train"]["split"] = str(default.spec)
    return out


# --- one measured process ------------------------------------------------------------------


def measure(cmd: list[str], stdin: Path | None = None, stdout: Path | None = None, stderr: Path | None = None,
            env: dict | None = None) -> dict:
    """Run cmd as a child process: its wall seconds, CPU seconds and peak RSS in MiB (os.wait4's
    rusage of that child alone, with any children it waited for), and its exit code."""
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
    fout = open(stdout, "wb") if stdout else subprocess.DEVNULL
    ferr = open(stderr, "wb") if stderr else subprocess.DEVNULL
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, stderr=ferr, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        for f in (fin, fout, ferr):
            if f is not subprocess.DEVNULL:
                f.close()
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "peak_mib": usage.ru_maxrss / 1024, "rc": proc.returncode}  # ru_maxrss is in KiB on Linux


def checked(run: dict, what: str, stderr: Path | None) -> dict:
    if run["rc"]:
        tail = stderr.read_text(errors="replace")[-3000:] if stderr and stderr.is_file() else ""
        raise SystemExit(f"{what} failed with exit code {run['rc']}:\n{tail}")
    return run


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def summarise(runs: list[dict]) -> dict:
    return {key: spread([r[key] for r in runs]) for key in ("seconds", "peak_mib", "cpu_seconds")}


def alternate(pair: dict[str, dict], repeats: int, label: str) -> dict:
    """pair: side -> {"cmd", "stdin", "stdout", "stderr", "env"}; runs lmladder, kenlm, lmladder,
    kenlm, ... and returns each side's runs and summary and the ratios of the medians."""
    runs: dict[str, list[dict]] = {side: [] for side in pair}
    for i in range(repeats):
        for side, job in pair.items():
            run = checked(measure(job["cmd"], job.get("stdin"), job.get("stdout"), job.get("stderr"),
                                  job.get("env")), f"{label} {side} ({' '.join(job['cmd'])})", job.get("stderr"))
            runs[side].append(run)
            print(f"  {label} {side} run {i + 1}/{repeats}: {run['seconds']:.2f} s, {run['peak_mib']:.0f} MiB, "
                  f"CPU {run['cpu_seconds']:.2f} s", file=sys.stderr, flush=True)
    out = {side: summarise(rs) for side, rs in runs.items()}
    lm, ken = out["lmladder"], out["kenlm"]
    out["ratio"] = {key: lm[key]["median"] / ken[key]["median"] if ken[key]["median"] else None
                    for key in ("seconds", "peak_mib")}
    return out


# --- the cases -----------------------------------------------------------------------------


def lmladder_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "lmladder", *args]


def lmplz_job(kenlm: kenlm_build.KenLM, case: dict, text: Path, arpa: Path, tmp: Path, log: Path) -> dict:
    return {"cmd": [kenlm.tool("lmplz"), *case["lmplz"], "-T", str(tmp)], "stdin": text, "stdout": arpa,
            "stderr": log}


def lmplz_counts(log: Path) -> list[int]:
    """The n-gram count per order from lmplz's report on stderr."""
    return [int(m.group(2)) for m in re.finditer(r"^(\d+) (\d+) D1=", log.read_text(errors="replace"), re.M)]


def query_summary(output: str) -> dict:
    """query -v summary's numbers (log10 based perplexities)."""
    keys = {"Perplexity including OOVs": "ppl_incl", "Perplexity excluding OOVs": "ppl_excl", "OOVs": "oovs",
            "Tokens": "tokens"}
    out = {}
    for line in output.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in keys:
            out[keys[name.strip()]] = float(value) if "." in value else int(value)
    return out


def kenlm_bits_per_char(summary: dict, chars: int) -> float:
    """A letter model's bits per character from query's summary (its tokens are the characters)."""
    return math.log2(summary["ppl_incl"]) * summary["tokens"] / chars if summary.get("tokens") else float("nan")


def run_case(key: str, kenlm: kenlm_build.KenLM, work: Path, repeats: int, env: dict) -> dict:
    case, texts, logs, tmp = CASES[key], work / "texts", work / "logs", work / "tmp"
    suffix = ".char.txt" if case["letters"] else ".txt"
    out: dict = {"name": case["name"],
                 "lmladder": f"lmladder ngram train corpus.txt {' '.join(case['lmladder'])} --split 1,0,0 "
                             "--out DIR --force --json",
                 "lmplz": f"lmplz {' '.join(case['lmplz'])} -T TMP < corpus{suffix} > {key}.arpa",
                 "kenlm_text": f"corpus{suffix}"}
    print(f"{key}: build, {repeats} pair(s)", file=sys.stderr, flush=True)
    pair = {"lmladder": {"cmd": lmladder_cmd("ngram", "train", str(texts / "corpus.txt"), *case["lmladder"],
                                             "--split", "1,0,0", "--out", str(work / f"m_{key}_corpus"), "--force",
                                             "--json"),
                         "stdout": logs / f"{key}_corpus.lmladder.json", "stderr": logs / f"{key}_corpus.lmladder.err",
                         "env": env},
            "kenlm": lmplz_job(kenlm, case, texts / f"corpus{suffix}", work / f"{key}_corpus.arpa", tmp,
                               logs / f"{key}_corpus.lmplz.log")}
    out["build"] = alternate(pair, repeats, f"{key} build")
    out["ngrams"] = {"lmladder": json.loads(pair["lmladder"]["stdout"].read_text())["ngrams"],
                     "kenlm": lmplz_counts(pair["kenlm"]["stderr"])}
    (work / f"{key}_corpus.arpa").unlink()
    shutil.rmtree(work / f"m_{key}_corpus")  # scratch: rebuilt by every run

    print(f"{key}: models on the train split for scoring (once, not timed)", file=sys.stderr, flush=True)
    model, arpa, binary = work / f"m_{key}_train", work / f"{key}_train.arpa", work / f"{key}_train.bin"
    once = {"lmladder": checked(measure(lmladder_cmd("ngram", "train", str(texts / "train.txt"), *case["score_model"],
                                                     "--split", "1,0,0", "--out", str(model), "--force", "--json"),
                                        stdout=logs / f"{key}_train.lmladder.json",
                                        stderr=logs / f"{key}_train.lmladder.err", env=env),
                                "lmladder ngram train", logs / f"{key}_train.lmladder.err")}
    job = lmplz_job(kenlm, case, texts / f"train{suffix}", arpa, tmp, logs / f"{key}_train.lmplz.log")
    once["lmplz"] = checked(measure(job["cmd"], job["stdin"], job["stdout"], job["stderr"]), "lmplz", job["stderr"])
    log = logs / f"{key}_train.build_binary.log"
    once["build_binary"] = checked(measure([kenlm.tool("build_binary"), "probing", str(arpa), str(binary)],
                                           stdout=log, stderr=log), "build_binary", log)
    arpa.unlink()
    out["score_models"] = {"text": "train", "runs_once": once,
                           "lmladder": f"lmladder ngram train train.txt {' '.join(case['score_model'])} --split 1,0,0",
                           "lmplz": f"lmplz {' '.join(case['lmplz'])} < train{suffix}",
                           "binary_mib": binary.stat().st_size / 2**20,
                           "lmladder_model_mib": sum(f.stat().st_size for f in model.rglob("*") if f.is_file()) / 2**20}
    print(f"{key}: score, {repeats} pair(s)", file=sys.stderr, flush=True)
    pair = {"lmladder": {"cmd": lmladder_cmd("score", str(model), str(texts / "test.txt"), "--json"),
                         "stdout": logs / f"{key}_score.lmladder.json", "stderr": logs / f"{key}_score.lmladder.err",
                         "env": env},
            "kenlm": {"cmd": [kenlm.tool("query"), "-v", "summary", str(binary)], "stdin": texts / f"test{suffix}",
                      "stdout": logs / f"{key}_score.query.txt", "stderr": logs / f"{key}_score.query.err"}}
    out["score"] = alternate(pair, repeats, f"{key} score")
    out["score"]["lmladder_command"] = "lmladder score MODEL test.txt --json"
    out["score"]["kenlm_command"] = f"query -v summary {key}.bin < test{suffix}"
    scored = json.loads(pair["lmladder"]["stdout"].read_text())
    out["score"]["lmladder_result"] = {k: scored.get(k) for k in ("bits_per_char", "token_perplexity", "tokens",
                                                                   "chars", "word_perplexity", "seconds")}
    out["score"]["kenlm_result"] = query_summary(pair["kenlm"]["stdout"].read_text(errors="replace"))
    return out


# --- bits per character by order (in this process, after every timed run) -------------------


def quality(corpus: str, unit: str, orders: list[int]) -> list[dict]:
    from lmladder import corpora, metrics, ngram

    splits = corpora.load(corpus).split(None)
    rows = []
    for order in orders:
        start = time.perf_counter()
        model = ngram.train(ngram.NgramConfig(unit=unit, order=order, min_count=0), splits.require("train"),
                            val=splits["val"])
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        m = metrics.evaluate(model, splits.require("test"))
        rows.append({"corpus": corpus, "split": str(splits.spec), "unit": unit, "order": order,
                     "bits_per_char": m.bits_per_char, "train_seconds": train_s,
                     "score_seconds": time.perf_counter() - start, "ngrams": model.parameters,
                     "min_count": model.config.min_count if unit == "word" else None})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


# --- the environment and the report ---------------------------------------------------------


def environment(kenlm: kenlm_build.KenLM) -> dict:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
               platform.processor() or platform.machine())
    versions = subprocess.run([sys.executable, "-c", "import importlib.metadata as m; print(*(m.version(p) for p in "
                               "('numpy', 'pyarrow', 'lmladder')))"], capture_output=True, text=True).stdout.split()
    lmplz = Path(kenlm.tool("lmplz"))
    return {"cpu": cpu, "cores": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
            "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1),
            "os": platform.platform(), "python": platform.python_version(),
            **dict(zip(("numpy", "pyarrow", "lmladder"), versions)),
            "kenlm": kenlm.describe(), "kenlm_version": kenlm.version, "kenlm_max_order": kenlm.max_order,
            "lmplz_sha256": hashlib.sha256(lmplz.read_bytes()).hexdigest(),
            "lmladder_commit": git("rev-parse", "HEAD").strip(),
            "lmladder_dirty": [line[3:] for line in git("status", "--porcelain", "--", *NGRAM_PATH).splitlines()],
            "load_average_start": [round(x, 2) for x in os.getloadavg()]}


def cell(s: dict, digits: int = 2) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def table(report: dict) -> list[str]:
    rows = ["| case | step | lmladder s | KenLM s | s ratio | lmladder peak MiB | KenLM peak MiB | MiB ratio | "
            "lmladder CPU s | KenLM CPU s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, r in report["cases"].items():
        for step in ("build", "score"):
            t = r[step]
            rows.append(f"| {key} | {step} | {cell(t['lmladder']['seconds'])} | {cell(t['kenlm']['seconds'])} | "
                        f"{t['ratio']['seconds']:.2f} | {cell(t['lmladder']['peak_mib'], 0)} | "
                        f"{cell(t['kenlm']['peak_mib'], 0)} | {t['ratio']['peak_mib']:.2f} | "
                        f"{t['lmladder']['cpu_seconds']['median']:.2f} | {t['kenlm']['cpu_seconds']['median']:.2f} |")
    return rows


def markdown(report: dict) -> str:
    env, texts = report["environment"], report["texts"]
    lines = [f"# lmladder's n-gram engine against KenLM, {report['date']}", "",
             f"{env['cpu']}, {env['cores']} cores, {env['memory_gib']} GiB; {env['os']}; Python {env['python']}, "
             f"numpy {env.get('numpy')}, pyarrow {env.get('pyarrow')}; lmladder {env.get('lmladder')} at "
             f"{env['lmladder_commit'][:10]}"
             + (f" with uncommitted changes in {', '.join(env['lmladder_dirty'])}" if env["lmladder_dirty"] else "")
             + f"; {env['kenlm']}. Load average {env['load_average_start'][0]} at the start, "
             f"{report['load_average_end'][0]} at the end. Made by benchmarks/bench_ngram.py"
             + (" --quick (a smoke run on a cut text, not a result)" if report["quick"] else "") + ".", "",
             f"Every number is a whole process (its start, imports or loading, reading the text, writing the "
             f"model), timed from spawn to exit; peak memory is that process's peak RSS (os.wait4). The two "
             f"programs ran alternately, lmladder first, {report['repeats']} time(s) each: median (min–max); "
             f"ratio = lmladder's median / KenLM's. A child that does nothing reports {report['floor_mib']:.0f} MiB "
             "(the harness's own size when it spawns one: a lower bound on every peak).", "",
             "Texts (gutenberg-en after lmladder's Gutenberg normalisation; KenLM's letter model reads each line's "
             "characters separated by spaces, space written U+2581, no-break space U+2423):", "",
             "| text | what | characters | bytes | letter file bytes | sha256 |", "|---|---|---:|---:|---:|---|"]
    what = {"corpus": "all 33 books (--split 1,0,0): the build text", "train": f"train split of {texts['train']['split']}",
            "test": f"test split ({', '.join(Path(b).stem for b in texts['test']['books'])})"}
    for name, t in texts.items():
        lines.append(f"| {name}.txt | {what[name]} | {t['chars']:,} | {t['bytes']:,} | {t['char_bytes']:,} | "
                     f"{t['sha256'][:12]} |")
    lines += ["", "## Time and peak memory", "", *table(report), "", "Commands:", ""]
    for key, r in report["cases"].items():
        m = r["score_models"]
        lines += [f"- {key}, {r['name']}: build `{r['lmladder']}` against `{r['lmplz']}`; score "
                  f"`{r['score']['lmladder_command']}` against `{r['score']['kenlm_command']}`, models trained once "
                  f"(not timed) with `{m['lmladder']}` ({m['lmladder_model_mib']:.0f} MiB folder) and `{m['lmplz']}` "
                  f"then `build_binary probing` ({m['binary_mib']:.0f} MiB)."]
    lines += ["", "lmladder counts with its default working memory (a quarter of physical memory); lmplz with -S 2G.",
              "", "## What the two built and scored", "",
              "| case | n-grams per order, lmladder | n-grams per order, lmplz | lmladder on test | KenLM on test |",
              "|---|---|---|---|---|"]
    for key, r in report["cases"].items():
        ours, theirs = r["score"]["lmladder_result"], r["score"]["kenlm_result"]
        lines.append(f"| {key} | {' '.join(f'{n:,}' for n in r['ngrams']['lmladder'])} | "
                     f"{' '.join(f'{n:,}' for n in r['ngrams']['kenlm'])} | "
                     f"{ours['bits_per_char']:.4f} bits/char, token perplexity {ours['token_perplexity']:.4g} over "
                     f"{ours['tokens']:,} tokens | perplexity {theirs.get('ppl_incl', float('nan')):.4g} over "
                     f"{theirs.get('tokens', 0):,} tokens, {theirs.get('oovs', 0):,} OOVs"
                     + (f" ({kenlm_bits_per_char(theirs, ours['chars']):.4f} bits/char)" if CASES[key]["letters"] else "")
                     + " |")
    lines += ["", "n-grams: the build models (lmladder's word5 with --kenlm-compat is lmplz's model, entry for entry; "
              "lmladder's letter n-grams run across line ends, lmplz's stop at each line's </s>). "
              "On test: the scoring models. The letter models' tokens are the same (every character; KenLM's </s> "
              "is the newline), but KenLM scores an unseen character as one <unk>. The word models differ: "
              "lmladder's spells rare and unseen words letter by letter (bits per character over the whole text), "
              "KenLM's perplexity counts an unknown word as one <unk> token."]
    if report["quality"]:
        used = sorted({f"{r['corpus']} {r['split']}" for r in report["quality"]})
        lines += ["", f"## Bits per character on the test split, by order ({'; '.join(used)})", "",
                  "In-process (lmladder.ngram.train, metrics.evaluate) after the timed runs. Letter models: modified "
                  "Kneser-Ney; word models: open vocabulary (rare words spelled by a letter 6-gram, k tuned on val).",
                  "", "| corpus | unit | order | bits/char | n-grams | k | train s | score s |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in report["quality"]:
            lines.append(f"| {r['corpus']} | {r['unit']} | {r['order']} | {r['bits_per_char']:.4f} | "
                         f"{r['ngrams']:,} | {r['min_count'] or '-'} | {r['train_seconds']:.1f} | "
                         f"{r['score_seconds']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    if sys.argv[1:2] == ["--write-texts"]:  # the child that writes the texts
        print(json.dumps(write_texts(Path(sys.argv[2]), sys.argv[3] == "quick")))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--date", default=time.strftime("%Y-%m-%d"))
    parser.add_argument("--repeats", type=int, default=5, help="runs of each program per step (default %(default)s)")
    parser.add_argument("--work", default="/tmp/lmladder-bench-ngram", help="scratch folder (texts, models, logs)")
    parser.add_argument("--quality", choices=("none", "tinyshakespeare", "all"), default=None,
                        help="bits/char by order: on tinyshakespeare (default), also gutenberg-en (all), or none "
                             "(the default with --quick)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated, of %(default)s")
    parser.add_argument("--quick", action="store_true", help="a smoke run: cut texts, 1 repeat, no quality")
    kenlm_build.add_arguments(parser)
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    cases = args.cases.split(",")
    if unknown := [c for c in cases if c not in CASES]:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    needed = max(CASES[c]["order"] for c in cases)
    kenlm = kenlm_build.from_arguments(args, needed)
    if kenlm.max_order is not None and kenlm.max_order < needed:
        raise SystemExit(f"{kenlm.bin} was built with KENLM_MAX_ORDER={kenlm.max_order}: its query and build_binary "
                         f"cannot load an order-{needed} model; rebuild with -DKENLM_MAX_ORDER={needed} (or leave "
                         "--kenlm-bin out to build one)")
    print(kenlm.describe(), file=sys.stderr)
    work = Path(args.work)
    for sub in ("logs", "tmp"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LMLADDER_HOME": str(work / "home")}  # nothing of the user's lmladder cache

    print("writing the texts", file=sys.stderr, flush=True)
    made = subprocess.run([sys.executable, __file__, "--write-texts", str(work / "texts"),
                           "quick" if args.quick else "full"], capture_output=True, text=True)
    if made.returncode:
        raise SystemExit(f"writing the texts failed:\n{made.stderr[-3000:]}")
    report = {"date": args.date, "quick": args.quick, "repeats": repeats, "environment": environment(kenlm),
              "texts": json.loads(made.stdout),
              "floor_mib": measure(["true"])["peak_mib"], "cases": {}}
    for key in cases:
        report["cases"][key] = run_case(key, kenlm, work, repeats, env)
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    shutil.rmtree(work / "tmp", ignore_errors=True)
    report["quality"] = []
    out = Path(args.out)
    write_report(report, out)  # the timings are kept even if the quality section fails
    quality_on = args.quality or ("none" if args.quick else "tinyshakespeare")
    for corpus in {"none": (), "tinyshakespeare": ("tinyshakespeare",),
                   "all": ("tinyshakespeare", "gutenberg-en")}[quality_on]:
        report["quality"] += quality(corpus, "char", list(range(1, 11)))
        report["quality"] += quality(corpus, "word", list(range(1, 6)))
    if report["quality"]:
        write_report(report, out)
    print("\n".join(table(report)))
    print(f"\nwrote {out / f'ngram-cpu-{args.date}.md'} and .json")


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"ngram-cpu-{report['date']}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / f"ngram-cpu-{report['date']}.md").write_text(markdown(report), encoding="utf-8")


if __name__ == "__main__":
    main()
