"""`lmladder bench`, `train` and `score` on the rungs of the foundation."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lmladder.errors import LadderError
from tests.conftest import REPO, assert_error

LADDER = """
[[rung]]
name = "uniform"
kind = "uniform"

[[rung]]
name = "unigram"
kind = "unigram"

[[rung]]
name = "gzip"
kind = "compressor"
method = "gzip"
"""


@pytest.fixture
def ladder(tmp_path):
    path = tmp_path / "ladder.toml"
    path.write_text(LADDER)
    return path


def test_bench_writes_every_output(cli, small_corpus, ladder, tmp_path):
    out = tmp_path / "out"
    result = cli("bench", str(small_corpus), "--ladder", str(ladder), "--out", str(out), "--json")
    assert result.exit_code == 0, result
    report = json.loads(result.stdout)
    rows = {r["rung"]: r for r in report["results"]}
    assert list(rows) == ["uniform", "unigram", "gzip"]
    assert rows["uniform"]["bits_per_char"] > rows["unigram"]["bits_per_char"]
    assert rows["gzip"]["tokens"] is None
    for name in ("results.json", "results.md", "results.parquet", "manifest.json", "lmladder.json"):
        assert (out / name).is_file()
    table = pq.read_table(out / "results.parquet")
    assert table.column("rung").to_pylist() == ["uniform", "unigram", "gzip"]
    assert table.schema.metadata[b"lmladder.table"] == b"bench_results"
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"corpus", "split", "lmladder_version", "git_commit", "device", "date"} <= set(manifest)
    # the checkout's commit, marked when tracked files differ from it (None from an installed copy)
    assert manifest["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", manifest["git_commit"])
    assert "| uniform |" in (out / "results.md").read_text()


def test_bench_default_ladder_on_default_corpus(cli, tmp_path):
    """The default ladder's rungs up to the n-grams (the neural rungs are tested on their own:
    training them here would take minutes)."""
    from lmladder.bench import load_ladder

    rungs = [r for r in load_ladder(None) if r["kind"] not in ("mlp", "gpt")]
    assert len(rungs) >= 10
    ladder = tmp_path / "default-without-neural.toml"
    ladder.write_text("\n".join("[[rung]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in r.items())
                                for r in rungs))
    result = cli("bench", "--ladder", ladder, "--json")
    assert result.exit_code == 0, result
    rows = {r["rung"]: r for r in json.loads(result.stdout)["results"]}
    assert rows["uniform"]["bits_per_char"] == pytest.approx(math.log2(66))  # 65 letters + escape
    assert rows["unigram"]["bits_per_char"] < 5.0
    best_ngram = min(r["bits_per_char"] for r in rows.values() if r["kind"] == "ngram")
    assert best_ngram < min(r["bits_per_char"] for r in rows.values() if r["kind"] == "compressor")
    # every n-gram, baseline and compressor number is the committed CI baseline's, to the last bit
    baseline = json.loads((Path(__file__).parents[1] / "benchmarks/baselines/cpu-tinyshakespeare.json").read_text())
    committed = {r["rung"]: r["bits_per_char"] for r in baseline["results"] if r["rung"] in rows}
    assert len(committed) == len(rows)
    assert {name: rows[name]["bits_per_char"] for name in committed} == committed


def test_only_runs_the_rungs_that_match(cli, small_corpus, ladder, tmp_path):
    result = cli("bench", str(small_corpus), "--ladder", str(ladder), "--only", "uni*", "--json")
    assert result.exit_code == 0, result
    report = json.loads(result.stdout)
    assert [r["rung"] for r in report["results"]] == ["uniform", "unigram"]
    assert report["manifest"]["only"] == ["uni*"]
    both = cli("bench", str(small_corpus), "--ladder", str(ladder), "--only", "gzip", "--only", "unigram", "--json")
    assert [r["rung"] for r in json.loads(both.stdout)["results"]] == ["unigram", "gzip"]  # in the ladder's order
    assert_error(cli("bench", str(small_corpus), "--ladder", str(ladder), "--only", "gpt*"), "--only", "gpt*")


def test_check_with_only_skips_the_rungs_not_run(cli, small_corpus, ladder, tmp_path):
    out = tmp_path / "base"
    assert cli("bench", str(small_corpus), "--ladder", str(ladder), "--out", str(out)).exit_code == 0
    part = cli("bench", str(small_corpus), "--ladder", str(ladder), "--only", "unigram",
               "--check", str(out / "results.json"), "--json")
    assert part.exit_code == 0, part
    status = {r["rung"]: r["status"] for r in json.loads(part.stdout)["check"]["rows"]}
    assert status == {"uniform": "not run", "unigram": "ok", "gzip": "not run"}


def test_check_gate(cli, small_corpus, ladder, tmp_path):
    out = tmp_path / "base"
    assert cli("bench", str(small_corpus), "--ladder", str(ladder), "--out", str(out)).exit_code == 0
    ok = cli("bench", str(small_corpus), "--ladder", str(ladder), "--check", str(out / "results.json"))
    assert ok.exit_code == 0, ok
    assert "ok" in ok.stdout
    baseline = json.loads((out / "results.json").read_text())
    baseline["results"][1]["bits_per_char"] *= 0.9  # pretend unigram used to be 10% better
    baseline["results"].append(dict(baseline["results"][0], rung="vanished"))
    worse = tmp_path / "worse.json"
    worse.write_text(json.dumps(baseline))
    bad = cli("bench", str(small_corpus), "--ladder", str(ladder), "--check", str(worse))
    assert bad.exit_code == 1
    assert "WORSE" in bad.stdout and "missing" in bad.stdout
    last = bad.stderr.strip().splitlines()[-1]  # progress logs come first on stderr
    assert last.startswith("error: ") and "unigram" in last and "vanished" in last


def test_a_baseline_or_ladder_that_cannot_be_compared_is_refused_first(cli, small_corpus, ladder, tmp_path):
    """A baseline's bits/char of NaN or below 0 passed as "ok"; a rung named by a number failed
    as an internal error once the bench had run."""
    out = tmp_path / "base"
    assert cli("bench", str(small_corpus), "--ladder", str(ladder), "--out", str(out)).exit_code == 0
    for field, value in (("bits_per_char", float("nan")), ("bits_per_char", -1.0), ("rung", 5)):
        baseline = json.loads((out / "results.json").read_text())
        baseline["results"][1][field] = value
        (tmp_path / "b.json").write_text(json.dumps(baseline))
        assert_error(cli("bench", str(small_corpus), "--ladder", str(ladder), "--check", str(tmp_path / "b.json"),
                         "--out", str(tmp_path / "never")), "is not an lmladder bench results.json")
        assert not (tmp_path / "never").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rung]]\nname = 5\nkind = "unigram"\n\n[[rung]]\nname = ["a"]\nkind = ["x"]\n')
    assert_error(cli("bench", str(small_corpus), "--ladder", str(bad), "--out", str(tmp_path / "never")),
                 "rung 1's name 5 is not a string", "rung 2's name ['a']", "unknown kind ['x']")
    assert not (tmp_path / "never").exists()


def test_check_refuses_other_corpus(cli, small_corpus, ladder, tmp_path):
    out = tmp_path / "base"
    assert cli("bench", str(small_corpus), "--ladder", str(ladder), "--out", str(out)).exit_code == 0
    other = tmp_path / "other.txt"
    other.write_text("something else entirely\n" * 50)
    assert_error(cli("bench", str(other), "--ladder", str(ladder), "--check", str(out / "results.json")),
                 "compare like with like")


def test_bad_ladders(cli, small_corpus, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rung]]\nname = "x"\nkind = "telepathy"\n\n[[rung]]\nname = "y"\nkind = "compressor"\n'
                   'method = "gzip"\nlevel = 3\n')
    result = cli("bench", str(small_corpus), "--ladder", str(bad))
    assert_error(result, "unknown kind 'telepathy'", "valid kinds: uniform", "unknown setting 'level'")
    bad.write_text("this is [not toml")
    assert_error(cli("bench", str(small_corpus), "--ladder", str(bad)), "not valid TOML")
    assert_error(cli("bench", str(small_corpus), "--ladder", str(tmp_path / "none.toml")), "does not exist")
    assert_error(cli("bench", str(small_corpus), "--ladder", str(tmp_path)), "is a folder, not a TOML file")
    assert_error(cli("bench", str(small_corpus), "--profile", "tpu"), "--profile")


def test_bench_refuses_foreign_out_folder(cli, small_corpus, ladder, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    assert_error(cli("bench", str(small_corpus), "--ladder", str(ladder), "--out", str(out)), "not empty")
    assert (out / "thesis.tex").read_text() == "do not delete"


def test_train_and_score_round_trip(cli, tmp_path):
    out = tmp_path / "unigram"
    result = cli("train", "tinyshakespeare", "--model", "unigram", "--out", str(out))
    assert result.exit_code == 0, result
    scored = cli("score", str(out), "--json")
    assert scored.exit_code == 0, scored
    data = json.loads(scored.stdout)
    assert data["split"] == "test" and data["chars"] == 111_538
    assert set(data) >= {"bits_per_char", "bits_per_byte", "word_perplexity", "token_perplexity"}
    assert 4.5 < data["bits_per_char"] < 5.0
    text = tmp_path / "new.txt"
    text.write_text("Some brand-new text with ünseen çharacters.\n", encoding="utf-8")
    other = json.loads(cli("score", str(out), str(text), "--json").stdout)
    assert other["split"] == "all" and other["chars"] == len(text.read_text(encoding="utf-8"))


def test_score_bad_inputs(cli, tmp_path):
    assert_error(cli("score", str(tmp_path / "nothing")), "not a folder")
    (tmp_path / "empty").mkdir()
    assert_error(cli("score", str(tmp_path / "empty")), "not an lmladder model")
    model = tmp_path / "m"
    assert cli("train", "tinyshakespeare", "--model", "uniform", "--out", str(model)).exit_code == 0
    marker = model / "lmladder.json"
    data = json.loads(marker.read_text())
    marker.write_text(json.dumps(dict(data, format_version=99)))
    assert_error(cli("score", str(model)), "format version 99")
    marker.write_text("{broken")
    assert_error(cli("score", str(model)), "corrupt")
    marker.write_text(json.dumps(data))
    (model / "vocab.json").write_text("garbage")
    assert_error(cli("score", str(model)), "vocab.json")
    assert_error(cli("train", "tinyshakespeare", "--model", "telepathy", "--out", str(tmp_path / "x")), "unknown --model")


def test_finished_rungs_are_reused_unless_forced(cli, small_corpus, ladder, fresh_home, tmp_path):
    first = json.loads(cli("bench", str(small_corpus), "--ladder", str(ladder), "--json").stdout)
    assert [r["cached"] for r in first["results"]] == [False, False, False]
    again = json.loads(cli("bench", str(small_corpus), "--ladder", str(ladder), "--json").stdout)
    assert [r["cached"] for r in again["results"]] == [True, True, True]
    assert [r["bits_per_char"] for r in again["results"]] == [r["bits_per_char"] for r in first["results"]]
    forced = json.loads(cli("bench", str(small_corpus), "--ladder", str(ladder), "--json", "--force").stdout)
    assert [r["cached"] for r in forced["results"]] == [False, False, False]
    # a changed setting is a different rung: the gzip result is not reused for bz2
    ladder.write_text(LADDER.replace('method = "gzip"', 'method = "bz2"'))
    changed = json.loads(cli("bench", str(small_corpus), "--ladder", str(ladder), "--json").stdout)
    assert [r["cached"] for r in changed["results"]] == [True, True, False]


def test_ladder_plot_is_a_png(cli, small_corpus, ladder, tmp_path):
    out = tmp_path / "out"
    assert cli("bench", str(small_corpus), "--ladder", str(ladder), "--out", str(out)).exit_code == 0
    assert (out / "ladder.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_committed_baseline_matches_the_default_ladder():
    from lmladder import corpora
    from lmladder.bench import load_baseline, load_ladder

    baseline = load_baseline(Path(__file__).resolve().parents[1] / "benchmarks/baselines/cpu-tinyshakespeare.json")
    assert baseline["manifest"]["corpus"]["sha256"] == corpora.load("tinyshakespeare").sha256
    assert baseline["manifest"]["split"] == corpora.load("tinyshakespeare").default_split
    assert baseline["manifest"]["profile"] == "cpu"
    assert [r["rung"] for r in baseline["results"]] == [r["name"] for r in load_ladder(None)]


def test_best_order_on_val(cli, small_corpus, tmp_path):
    ladder = tmp_path / "best.toml"
    ladder.write_text('[[rung]]\nname = "best"\nkind = "ngram"\norder = "best"\nmax_order = 4\n\n'
                      '[[rung]]\nname = "two"\nkind = "ngram"\norder = 2\n')
    result = cli("bench", str(small_corpus), "--ladder", str(ladder), "--json", "--force")
    assert result.exit_code == 0, result
    rows = {r["rung"]: r for r in json.loads(result.stdout)["results"]}
    assert 1 <= rows["best"]["details"]["order"] <= 4
    assert rows["best"]["details"]["val_bits_per_char"] > 0
    assert rows["two"]["details"] is None


def bench_script(name: str):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / f"benchmarks/{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_gpu_bench_reports_the_median_run():
    """benchmarks/bench_gpu.py repeats each gpt2-124m variant and keeps the run of median tokens/s
    (a failed run is left out, unless every run failed)."""
    script = bench_script("bench_gpu")
    runs = [{"tokens_per_s": 500.4, "mfu": 0.5}, {"error": "oom"}, {"tokens_per_s": 480.0, "mfu": 0.4},
            {"tokens_per_s": 490.0, "mfu": 0.45}]
    assert script.median_run(runs) == {"tokens_per_s": 490.0, "mfu": 0.45, "runs_tokens_per_s": [500, 480, 490]}
    assert script.median_run([{"error": "oom"}]) == {"error": "oom"}


def test_gpu_bench_keeps_what_a_timed_out_run_wrote(tmp_path, monkeypatch, capsys):
    """A gpt2-124m run past its limit (benchmarks/children.py stopped it) is reported with the
    tail of what it wrote, not only "timed out"."""
    import subprocess

    script = bench_script("bench_gpu")

    def over(cmd, timeout, env=None):
        raise subprocess.TimeoutExpired(cmd, timeout, "", "step 40/60 loss 5.1\ncompiling max-autotune ...")

    monkeypatch.setattr(script.children, "run", over)
    _, rows, tail = script.run_train(["--max-steps", "60"], tmp_path / "run", 7.0)
    assert rows == [] and "compiling max-autotune" in tail and "timed out after 7.0 s" in tail
    assert "FAILED (-9)" in capsys.readouterr().err


def test_profile_step_script_on_the_cpu(tmp_path, monkeypatch):
    """benchmarks/profile_step.py times and profiles a GPT step and sums its time by kind."""
    script = bench_script("profile_step")
    monkeypatch.setenv("OUT", str(tmp_path))
    result = script.main(["--preset", "gpt-tiny", "--micro", "4", "--vocab-size", "64", "--steps", "2",
                          "--device", "cpu", "--no-bias", "--residual-dtype", "autocast", "--head-loss", "plain",
                          "--gelu-fusion", "fused", "--name", "tiny"])
    saved = json.loads((tmp_path / "profile-tiny.json").read_text())
    assert saved["model_options"] == {"vocab_size": 64, "bias": False, "residual_dtype": "autocast"}
    assert saved["run_options"] == {"head_loss": "plain", "gelu_fusion": "fused"}
    assert saved["ms_by_kind"]["matmul"] > 0 and saved["mfu"] is None and result["tokens_per_s"] > 0
    assert script.kind_of("cudnn_generated_fort_native_sdpa_sm90_flash_bprop") == "attention"
    assert script.kind_of("nvjet_sm90_tst_192x192_64x3_2x1_v_bz_coopB_NNN") == "matmul"
    assert script.kind_of("triton_poi_fused_gelu_view_8") == "compiled"
    assert script.kind_of("head_loss_rows") == script.kind_of("head_loss_transpose") == "head loss"
    assert script.kind_of("sm90_xmma_gemm_bf16bf16_bf16f32_f32_nn_n_tilesize128x128x64_aux_bf16_dgelu") == "matmul"


def test_fused_mlp_bench_on_the_cpu(tmp_path, monkeypatch):
    """benchmarks/bench_fused_mlp.py times both MLP routes by shape and saves device, torch, date."""
    script = bench_script("bench_fused_mlp")
    monkeypatch.setenv("OUT", str(tmp_path))
    result = script.main(["--shapes", "16x64,32x128", "--steps", "2", "--no-compile", "--device", "cpu"])
    saved = json.loads((tmp_path / "bench-fused-mlp.json").read_text())
    assert saved == result and saved["device"] == "cpu" and saved["torch"] and saved["date"]
    assert list(saved["shapes"]) == ["16x64", "32x128"] and "cublaslt_algorithms" not in saved
    assert all(row["plain_ms"] > 0 and row["fused_ms"] > 0 for row in saved["shapes"].values())


def test_a_neural_rung_reports_val_and_train_curves(cli, small_corpus, tmp_path, monkeypatch):
    from lmladder import neural_ladder

    tiny = ("gpt-tiny", {"model": dict(block_size=16), "run": dict(max_steps=6, eval_interval=3, log_interval=1,
                                                                   device="cpu")})
    monkeypatch.setitem(neural_ladder.BENCH_PROFILES["cpu"], "gpt", tiny)
    ladder = tmp_path / "gpt.toml"
    ladder.write_text('[[rung]]\nname = "gpt"\nkind = "gpt"\n')
    out = tmp_path / "out"
    result = cli("bench", small_corpus, "--ladder", ladder, "--out", out, "--json")
    assert result.exit_code == 0, result
    row = json.loads(result.stdout)["results"][0]
    assert len(row["curve"]) == 2 and len(row["train_curve"]) == 6
    assert all(v > 0 for _, v in row["train_curve"])
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_neural_rung_s_own_tables_go_over_its_profile(monkeypatch):
    """rung_config: the profile's preset and values, its values for the kind with that tokenizer
    ("gpt-bpe"), then the rung's own [model]/[optim]/[data]/[run] tables; bad ones are one error."""
    from lmladder import neural_ladder

    monkeypatch.setitem(neural_ladder.BENCH_PROFILES["cpu"], "gpt-bpe", (None, {"model": dict(dropout=0.4)}))
    plain = neural_ladder.rung_config("gpt", {"tokenizer": "char"}, "cpu")
    assert (plain.model.n_embd, plain.model.dropout, plain.run.max_steps) == (128, 0.0, 1500)
    bpe = neural_ladder.rung_config("gpt", {"tokenizer": "bpe"}, "cpu")
    assert (bpe.model.n_embd, bpe.model.dropout) == (128, 0.4)
    own = neural_ladder.rung_config("gpt", {"tokenizer": "bpe", "model": {"dropout": 0.5}, "run": {"patience": 3}},
                                    "cpu")
    assert (own.model.dropout, own.run.patience, own.run.max_steps) == (0.5, 3, 1500)
    with pytest.raises(LadderError, match=r"unknown config key \[model\] bogus"):
        neural_ladder.rung_config("gpt", {"model": {"bogus": 1}}, "cpu")
    with pytest.raises(LadderError, match="must be a table"):
        neural_ladder.rung_config("gpt", {"optim": 3}, "cpu")


def test_a_bpe_rung_without_bpe_vocab_trains_the_default_ladder_s_512_tokens(monkeypatch):
    from lmladder import bpe, neural_ladder
    from lmladder.bench import load_ladder
    from lmladder.splits import split_documents

    gpt_bpe = next(r for r in load_ladder(None) if r["name"] == "gpt-bpe")
    assert gpt_bpe["bpe_vocab"] == neural_ladder.BPE_VOCAB == 512

    class Trained(Exception):
        pass

    def train(docs, settings):
        raise Trained(settings.vocab_size)

    monkeypatch.setattr(bpe, "train", train)
    splits = split_documents(["t"], ["some text to split\n" * 200], "val:0.1,train:0.8,test:0.1")
    with pytest.raises(Trained, match="^512$"):
        neural_ladder.from_ladder("gpt", {"tokenizer": "bpe"}, splits, "cpu")


def test_the_gpu_profile_stops_its_neural_rungs_at_their_best_val():
    from lmladder import neural_ladder

    for kind in ("gpt", "mlp"):
        config = neural_ladder.rung_config(kind, {}, "gpu")
        assert config.run.patience > 0 and config.run.eval_interval > 0
    # a BPE GPT takes the profile's "gpt-bpe" values over its "gpt" ones (token dropout on BPE only)
    char = neural_ladder.rung_config("gpt", {"tokenizer": "char"}, "gpu")
    bpe = neural_ladder.rung_config("gpt", {"tokenizer": "bpe"}, "gpu")
    assert char.data.token_dropout == 0 and bpe.data.token_dropout > 0
    assert char.data.token_dropout_steps == 0 and bpe.data.token_dropout_steps == 1000  # bytes first
    assert bpe.model.n_embd == char.model.n_embd and bpe.run.patience == char.run.patience
    # both take the 60 s recipe's Muon and input noise (a BPE rung's own table could still turn them off)
    assert char.optim.optimizer == bpe.optim.optimizer == "muon"
    assert char.data.input_noise == bpe.data.input_noise == 0.05
    # the char GPT's context and batch (512 tokens at batch 32), more weight decay
    assert (bpe.model.block_size, bpe.optim.batch_size) == (char.model.block_size, char.optim.batch_size) == (512, 32)
    assert (bpe.optim.weight_decay, char.optim.weight_decay) == (6.0, 3.0)
    assert bpe.data.canonical and not char.data.canonical  # canonical is refused for a char tokenizer
    assert char.model.n_loop == bpe.model.n_loop == 2  # the blocks gone through twice


def test_a_bpe_rung_s_token_dropout_reaches_its_training(cli, small_corpus, tmp_path, monkeypatch):
    """A ladder file's `data = { token_dropout = P }` on a BPE GPT rung splits its training windows
    (lmladder.tokensplit); on a char rung it is one error, before anything trains."""
    from lmladder import neural_ladder, tokensplit

    tiny = ("gpt-tiny", {"model": dict(block_size=16), "run": dict(max_steps=4, eval_interval=2, device="cpu")})
    monkeypatch.setitem(neural_ladder.BENCH_PROFILES["cpu"], "gpt", tiny)
    calls = []
    real = tokensplit.split_windows
    monkeypatch.setattr(tokensplit, "split_windows", lambda w, parents, p, rng: calls.append(p) or real(w, parents, p, rng))
    ladder = tmp_path / "bpe.toml"
    ladder.write_text('[[rung]]\nname = "gpt-bpe"\nkind = "gpt"\ntokenizer = "bpe"\nbpe_vocab = 300\n'
                      'data = { token_dropout = 0.2 }\n')
    result = cli("bench", small_corpus, "--ladder", ladder, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result
    assert calls == [0.2] * 4  # every step's windows
    calls.clear()  # falling from single bytes over the first 2 steps
    ladder.write_text(ladder.read_text().replace("0.2 }", "0.2, token_dropout_steps = 2 }"))
    result = cli("bench", small_corpus, "--ladder", ladder, "--out", tmp_path / "fall", "--json")
    assert result.exit_code == 0, result
    assert calls == pytest.approx([1, 0.6, 0.2, 0.2])
    ladder.write_text('[[rung]]\nname = "gpt"\nkind = "gpt"\ndata = { token_dropout = 0.2 }\n')
    assert_error(cli("bench", small_corpus, "--ladder", ladder, "--out", tmp_path / "c"), "char tokenizer")


def test_every_neural_rung_is_checked_before_any_rung_builds(cli, small_corpus, tmp_path, monkeypatch):
    """A bad table, tokenizer, BPE vocabulary or token dropout on a late rung is one error naming
    each bad rung, before the first rung (here an n-gram that would fail if built) starts."""
    from lmladder import ngram

    monkeypatch.setattr(ngram, "from_ladder", lambda *a: pytest.fail("a rung was built before the check"))
    ladder = tmp_path / "bad.toml"
    ladder.write_text('[[rung]]\nname = "two"\nkind = "ngram"\norder = 2\n\n'
                      '[[rung]]\nname = "g1"\nkind = "gpt"\nmodel = { n_embd = "wide" }\n\n'
                      '[[rung]]\nname = "g2"\nkind = "gpt"\ntokenizer = "bpe"\nbpe_vocab = 12\n\n'
                      '[[rung]]\nname = "g3"\nkind = "mlp"\ntokenizer = "words"\n\n'
                      '[[rung]]\nname = "g4"\nkind = "gpt"\ndata = { token_dropout = 0.1 }\n\n'
                      '[[rung]]\nname = "g5"\nkind = "gpt"\ndata = { token_dropout_steps = 10 }\n')
    result = cli("bench", small_corpus, "--ladder", ladder, "--out", tmp_path / "out")
    assert_error(result, "rung g1: [model] n_embd must be an int", "rung g2: --vocab-size 12",
                 "rung g3: tokenizer must be char or bpe", "rung g4: data.token_dropout",
                 "rung g5: data.token_dropout and token_dropout_steps")
    assert not (tmp_path / "out").exists()


VARIANTS = """
[[rung]]
name = "unigram"
kind = "unigram"

[[rung]]
name = "gpt looped"
kind = "gpt"
model = { n_loop = 2 }
run = { max_steps = 4, eval_interval = 2 }
"""


def test_variants_bench_runs_each_rung_in_its_own_process_side_by_side(tmp_path):
    """benchmarks/bench_variants.py: every rung of a ladder file by its own `lmladder bench
    --only`, at once; one JSON, one table and one archive of logs, whatever the rung count."""
    import subprocess
    import sys
    import tarfile

    ladder = tmp_path / "variants.toml"
    ladder.write_text(VARIANTS)
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, str(REPO / "benchmarks/bench_variants.py"), str(ladder), "--profile", "cpu",
                          "--split", "train:0.85,val:0.05,test:0.1"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["logs.tar.gz", "variants.json", "variants.md"]
    rows = {r["rung"]: r for r in json.loads((out / "variants.json").read_text())["rows"]}
    looped = rows["gpt looped"]
    assert 0 < looped["result"]["bits_per_char"] < 8 and looped["best_val_bits_per_char"] > 0
    assert looped["manifest"]["profile"] == "cpu"
    # the split passed on to every process (val next to test here; the corpus's own puts it first)
    assert rows["unigram"]["manifest"]["split"] == looped["manifest"]["split"] == "0.85,0.05,0.1"
    assert run.stdout == (out / "variants.md").read_text() and "| gpt looped | " in run.stdout
    with tarfile.open(out / "logs.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["gpt looped.log", "unigram.log"]
        assert b"gpt looped: " in tar.extractfile("gpt looped.log").read()  # its "NAME: X bits/char" line


def test_variants_bench_refuses_names_it_cannot_select(tmp_path):
    script = bench_script("bench_variants")
    ladder = tmp_path / "v.toml"
    for text, fragment in (('[[rung]]\nname = "a*"\nkind = "unigram"\n', "may not hold"),
                           ('[[rung]]\nname = "a"\nkind = "unigram"\n[[rung]]\nname = "a"\nkind = "uniform"\n',
                            "unique")):
        ladder.write_text(text)
        with pytest.raises(ValueError, match=fragment):
            script.rung_names(ladder)
        assert script.main([str(ladder)]) == 2
    import subprocess
    import sys

    for args, fragment in (([str(tmp_path / "none.toml")], "No such file"), ([str(ladder), "--jobs", "-1"], "--jobs")):
        run = subprocess.run([sys.executable, str(REPO / "benchmarks/bench_variants.py"), *args], capture_output=True,
                             text=True, timeout=60, env={**os.environ, "OUT": str(tmp_path / "out"), "PYTHONPATH": str(REPO)})
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0]
        assert not (tmp_path / "out").exists()  # refused before anything is written
