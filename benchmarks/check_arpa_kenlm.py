"""Check `lmladder ngram export --arpa` with KenLM's own Python module (kenlm.Model).

    PYTHONPATH=. /tmp/kenlm-venv/bin/python benchmarks/check_arpa_kenlm.py [--date YYYY-MM-DD]

Run it with a python that has `kenlm` installed and lmladder importable (lmladder's runtime deps
numpy, pyarrow, typer, rich in the same environment); kenlm is deliberately not a project
dependency. Set up once, outside the repo:

    python3 -m venv /tmp/kenlm-venv && /tmp/kenlm-venv/bin/pip install kenlm pyarrow typer rich

Training, export and `lmladder score` go through the CLI ($LMLADDER_BIN, default .venv/bin/lmladder;
LMLADDER_MIRROR must point at the corpora, e.g. /work/shared/corpora). Models:

  word3    word 3-gram --kenlm-compat on the KenLM fixture's train.txt (../shared/fixtures/kenlm)
  char5    5-gram --kenlm-compat on the fixture's character-level rewrite of train.txt
  letter5  default letter 5-gram KN on tinyshakespeare (its default split)
  open3    default open-vocabulary word 3-gram KN on tinyshakespeare

Each is exported to ARPA and loaded with kenlm.Model. On the test text, KenLM's per-token log10
probabilities (full_scores) are compared with lmladder's own (NgramModel.kenlm_query for compat
models, unit_logprob for the others), and for the compat models with the fixture's KenLM results.
Per n-gram: random stored n-grams are queried through KenLM states (BaseScore) and compared with
the ARPA value and lmladder's float64 value. (The first run of this script found that KenLM
refuses the default letter and open-vocabulary exports: they had no </s>; lmladder now writes
one with log10 p = -99.) Scratch files go to $WORK (default
/tmp/arpa-kenlm-check). Writes arpa-kenlm-check-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import kenlm
import numpy as np

from lmladder import arpa, corpora, registry
from lmladder.ngramio import readable
from lmladder.ngramunits import BOS_NAME, UNK_NAME

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("KENLM_FIXTURES", ROOT.parent / "shared" / "fixtures" / "kenlm"))
LMLADDER = os.environ.get("LMLADDER_BIN", str(ROOT / ".venv" / "bin" / "lmladder"))
WORK = Path(os.environ.get("WORK", "/tmp/arpa-kenlm-check"))
README = {"word3": {"tokens": 24626, "oovs": 2360, "ppl_incl": 495.0489, "ppl_excl": 248.3876},
          "char5": {"tokens": 111538, "oovs": 0, "ppl_incl": 4.89379, "ppl_excl": 4.89379}}
LN10 = math.log(10)


def cli(*args: str) -> dict:
    proc = subprocess.run([LMLADDER, *args, "--json"], capture_output=True, text=True)
    if proc.returncode:
        return {"error": proc.stderr.strip(), "rc": proc.returncode}
    return json.loads(proc.stdout)


def lines(text: str) -> list[str]:
    return text[:-1].split("\n") if text.endswith("\n") else text.split("\n")


def char_rewrite(text: str) -> str:
    return "".join(" ".join(line.replace(" ", "_")) + "\n" for line in lines(text))


def load_kenlm(path: Path, result: dict) -> kenlm.Model:
    """kenlm.Model(path); a refusal is recorded and re-raised."""
    try:
        return kenlm.Model(str(path))
    except OSError as e:
        result["kenlm_load_error"] = str(e)
        raise


def kenlm_lines(m: kenlm.Model, text_lines: list[str], eos: bool) -> tuple[np.ndarray, np.ndarray]:
    lp, oov = [], []
    for line in text_lines:
        for prob, _, is_oov in m.full_scores(line, bos=True, eos=eos):
            lp.append(prob)
            oov.append(is_oov)
    return np.array(lp), np.array(oov, dtype=bool)


def summary(lp: np.ndarray, oov: np.ndarray) -> dict:
    total = float(lp.sum())
    return {"tokens": int(len(lp)), "oovs": int(oov.sum()), "log10_total": total,
            "ppl_incl": 10 ** (-total / len(lp)), "ppl_excl": 10 ** (-float(lp[~oov].sum()) / int((~oov).sum()))}


def arpa_names(model) -> list[str]:
    names = [arpa.token(u) for u in model.units]
    if not model.config.kenlm_compat:
        names[model.bos], names[model.escape] = BOS_NAME, UNK_NAME
    return names


def kenlm_ngram(m: kenlm.Model, gram: tuple[str, ...]) -> float:
    """log10 p(last | rest) through KenLM's state API (<s> first: start of sentence)."""
    state, out = kenlm.State(), kenlm.State()
    words = list(gram)
    if words[0] == "<s>":
        m.BeginSentenceWrite(state)
        words = words[1:]
    else:
        m.NullContextWrite(state)
    for w in words[:-1]:
        m.BaseScore(state, w, out)
        state, out = out, state
    return m.BaseScore(state, words[-1], out)


def check_ngrams(model, m: kenlm.Model, path: Path, samples: int, seed: int) -> dict:
    to_name = dict(zip(model.units, arpa_names(model)))
    ours = {}
    for n, t in enumerate(model.tables, 1):
        for units, lp, bo in zip(readable(model, n).to_pylist(), t.logp, t.backoff):
            ours[tuple(to_name[u] for u in units)] = (lp / LN10, bo / LN10)
    written = arpa.read(path)
    keys = [g for g in ours if g != ("<s>",)]
    rng = np.random.default_rng(seed)
    pick = [keys[i] for i in rng.choice(len(keys), size=min(samples, len(keys)), replace=False)]
    kl = np.array([kenlm_ngram(m, g) for g in pick])
    return {"arpa_ngrams_equal_model": set(written) == set(ours),
            "arpa_vs_model_max_abs_log10p": max(abs(written[g][0] - ours[g][0]) for g in keys),
            "arpa_vs_model_max_abs_log10bo": max(abs(written[g][1] - ours[g][1]) for g in ours),
            "sampled": len(pick), "sampled_by_order": np.bincount([len(g) for g in pick]).tolist()[1:],
            "kenlm_vs_arpa_max_abs": float(np.max(np.abs(kl - np.array([written[g][0] for g in pick])))),
            "kenlm_vs_model_max_abs": float(np.max(np.abs(kl - np.array([ours[g][0] for g in pick]))))}


def check(name: str, train_args: list[str], test_docs: list[str], compat: bool, samples: int) -> dict:
    out = WORK / f"m_{name}"
    path = WORK / f"{name}.arpa"
    res: dict = {"train": "lmladder ngram train " + " ".join(train_args)}
    trained = cli("ngram", "train", *train_args, "--out", str(out))
    res["ngrams"] = trained["ngrams"]
    exported = cli("export", str(out), "--format", "arpa", "--out", str(path))
    if "error" in exported:
        return {**res, "export_error": exported["error"]}
    m = load_kenlm(path, res)
    res["kenlm_order"] = m.order
    model = registry.load_model(str(out))
    if compat:
        ours_lp, ours_oov = model.kenlm_query(["".join(line + "\n" for line in test_docs)])  # the test file
        ken_lp, ken_oov = kenlm_lines(m, test_docs, eos=True)
        test_file = WORK / ("test.char.txt" if name == "char5" else "test.txt")
        res["lmladder_score_cli"] = cli("score", str(out), str(test_file)).get("error")
    else:  # units as ARPA tokens, one KenLM "sentence" per document: <s> units (no </s>)
        seq, _ = model.encode(test_docs)
        lp = model.unit_logprob(seq)
        keep = seq != model.bos
        ours_lp, ours_oov = lp[keep] / LN10, seq[keep] == model.escape
        names = np.array(arpa_names(model), dtype=object)
        docs = np.split(seq, np.flatnonzero(seq == model.bos)[1:])
        ken_lp, ken_oov = kenlm_lines(m, [" ".join(names[d[1:]]) for d in docs], eos=False)
        score = cli("score", str(out), "tinyshakespeare")
        res["lmladder_score_cli"] = {k: score[k] for k in ("bits_per_char", "nll_nats", "tokens", "chars")}
        res["spelling_nats"] = score["nll_nats"] + float(ours_lp.sum()) * LN10  # not in the ARPA
    res["lmladder"] = summary(ours_lp, ours_oov)
    res["kenlm_on_our_arpa"] = summary(ken_lp, ken_oov)
    res["oov_masks_equal"] = bool(np.array_equal(ours_oov, ken_oov))
    res["per_token_max_abs_log10"] = float(np.max(np.abs(ours_lp - ken_lp)))
    if compat:
        ref = kenlm.Model(str(FIXTURES / f"{name}.arpa.gz"))
        ref_lp, ref_oov = kenlm_lines(ref, test_docs, eos=True)
        res["kenlm_on_fixture_arpa"] = summary(ref_lp, ref_oov)
        res["fixture_readme"] = README[name]
        with gzip.open(FIXTURES / f"{name}.test.query.txt.gz", "rt", encoding="utf-8") as handle:
            query = np.array([float(f.split(" ")[-1]) for f in handle.read().split("\t") if "=" in f])
        assert len(query) == len(ken_lp), (len(query), len(ken_lp))
        res["per_token_max_abs_vs_fixture_query"] = float(np.max(np.abs(ken_lp - query)))
        res["per_token_max_abs_fixture_arpa_vs_ours"] = float(np.max(np.abs(ref_lp - ken_lp)))
        fx, mine = arpa.read(FIXTURES / f"{name}.arpa.gz"), arpa.read(path)
        res["fixture_arpa"] = {"ngrams_equal": set(fx) == set(mine),
                               "max_abs_log10p": max(abs(fx[g][0] - mine[g][0]) for g in fx if g in mine),
                               "max_abs_log10bo": max(abs(fx[g][1] - mine[g][1]) for g in fx if g in mine)}
    res["ngram_check"] = check_ngrams(model, m, path, samples, seed=0)
    return res


def markdown(report: dict) -> str:
    env = report["environment"]
    rows = ["# ARPA export checked with KenLM's Python module, " + report["date"], "",
            f"kenlm {env['kenlm']} (PyPI sdist, built from source; upstream commit not recorded in the package), "
            f"Python {env['python']}, numpy {env['numpy']}, lmladder at {env['lmladder_commit'][:10]}"
            + (f" with uncommitted changes in {', '.join(env['lmladder_dirty'])}" if env["lmladder_dirty"] else "")
            + ". Fixture: KenLM lmplz/query commit 4cb443e6 (../shared/fixtures/kenlm/README.md). "
            "Made by benchmarks/check_arpa_kenlm.py.", "",
            "Test text: the fixture's test.txt (bytes from 1,003,856) for word3/char5, tokens incl. `</s>`; "
            "tinyshakespeare's default test split for letter5/open3, one `<s>` per document, no `</s>`, "
            "units only (the spelling of escapes/unknown words is not in an ARPA file). log10 throughout.", "",
            "| model | KenLM loads our ARPA | scored by | tokens | OOVs | log10 total | ppl incl. OOVs | ppl excl. OOVs |",
            "|---|---|---|---:|---:|---:|---:|---:|"]
    for name, r in report["models"].items():
        if "export_error" in r:
            rows.append(f"| {name} | export refused: {r['export_error']} |||||||")
            continue
        loads = "yes" if "kenlm_load_error" not in r else "no"
        for who, key in (("lmladder", "lmladder"), ("KenLM, our ARPA", "kenlm_on_our_arpa"),
                         ("KenLM, fixture ARPA", "kenlm_on_fixture_arpa"), ("fixture README", "fixture_readme")):
            if key in r:
                x = r[key]
                total = f"{x['log10_total']:.4f}" if "log10_total" in x else "-"
                rows.append(f"| {name} | {loads} | {who} | {x['tokens']:,} | {x['oovs']:,} | {total} | "
                            f"{x['ppl_incl']:.7g} | {x['ppl_excl']:.7g} |")
    rows += ["", "Max absolute differences (log10):", "",
             "| model | per token, KenLM on our ARPA vs lmladder | per token vs fixture `query -v word` | "
             "sampled n-grams | per n-gram, KenLM vs lmladder float64 | KenLM vs our ARPA text | our ARPA vs fixture ARPA (p, backoff) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in report["models"].items():
        if "export_error" in r:
            continue
        g, fx = r["ngram_check"], r.get("fixture_arpa")
        q = f"{r['per_token_max_abs_vs_fixture_query']:.2e}" if "per_token_max_abs_vs_fixture_query" in r else "-"
        f = f"{fx['max_abs_log10p']:.1e}, {fx['max_abs_log10bo']:.1e} (same n-grams: {fx['ngrams_equal']})" if fx else "-"
        rows.append(f"| {name} | {r['per_token_max_abs_log10']:.2e} | {q} | {g['sampled']:,} {g['sampled_by_order']} | "
                    f"{g['kenlm_vs_model_max_abs']:.2e} | {g['kenlm_vs_arpa_max_abs']:.2e} | {f} |")
    rows += ["", "The ARPA file writes 7 significant digits (rounding <= 5e-7, see arpa_vs_model_* in the .json) and "
             "KenLM stores float32, hence differences of ~1e-6 per token.", ""]
    for name, r in report["models"].items():
        if "kenlm_load_error" in r:
            rows.append(f"- {name}: `kenlm.Model` refuses the exported file: {r['kenlm_load_error']}")
        if isinstance(r.get("lmladder_score_cli"), str):
            rows.append(f"- {name}: `lmladder score` refuses compat models (\"{r['lmladder_score_cli'][:80]}...\"); "
                        "lmladder's side is NgramModel.kenlm_query")
        if "spelling_nats" in r:
            rows.append(f"- {name}: `lmladder score` gives {r['lmladder_score_cli']['bits_per_char']:.6f} bits/char "
                        f"({r['lmladder_score_cli']['nll_nats']:.3f} nats); {r['spelling_nats']:.3f} nats of it are "
                        "the spelling of escapes/unknown words, which the ARPA file does not carry")
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--date", default="2026-11-23")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--samples", type=int, default=4000)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    for p in WORK.glob("m_*"):
        shutil.rmtree(p)
    raw = (Path(os.environ["LMLADDER_MIRROR"]) / "tinyshakespeare.txt").read_bytes()
    cut = raw.index(b"\n", int(0.9 * len(raw))) + 1
    train, test = raw[:cut].decode(), raw[cut:].decode()
    for fname, text in (("train.txt", train), ("test.txt", test), ("train.char.txt", char_rewrite(train)),
                        ("test.char.txt", char_rewrite(test))):
        (WORK / fname).write_text(text, encoding="utf-8")
    ts_test = corpora.load("tinyshakespeare").split(None).require("test")
    split = ["--split", "1,0,0", "--kenlm-compat"]
    models = {
        "word3": (["train.txt", "--unit", "word", "--order", "3", *split], lines(test), True),
        "char5": (["train.char.txt", "--unit", "word", "--order", "5", *split], lines(char_rewrite(test)), True),
        "letter5": (["tinyshakespeare", "--unit", "char", "--order", "5"], ts_test, False),
        "open3": (["tinyshakespeare", "--unit", "word", "--order", "3"], ts_test, False),
    }
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout

    report = {"date": args.date, "cut_byte": cut,
              "environment": {"kenlm": importlib.metadata.version("kenlm"), "python": platform.python_version(),
                              "numpy": np.__version__, "lmladder_commit": git("rev-parse", "HEAD").strip(),
                              "lmladder_dirty": [line[3:] for line in git("status", "--porcelain", "--", "lmladder")
                                                 .splitlines()]},
              "models": {}}
    for name, (train_args, docs, compat) in models.items():
        if train_args[0].endswith(".txt"):
            train_args = [str(WORK / train_args[0]), *train_args[1:]]
        print(f"{name} ...", file=sys.stderr)
        report["models"][name] = check(name, train_args, docs, compat, args.samples)
    out = Path(args.out)
    (out / f"arpa-kenlm-check-{args.date}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"arpa-kenlm-check-{args.date}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
