"""`lmladder train` for the neural rungs, on the CPU with tiny models: exact resume, two
processes matching one, checkpoints, config files, and every bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lmladder.errors import LadderError
from tests.conftest import REPO, assert_error

torch = pytest.importorskip("torch")

TINY = ("--preset", "gpt-tiny", "--seed", "3", "--split", "0.96,0.02,0.02")


def weights(folder: Path, which: str = "latest") -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / which / "model.safetensors"))


def assert_same_weights(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=0), (k, (a[k] - b[k]).abs().max())


def test_help_lists_every_config_field(cli):
    from lmladder.config import option_fields

    result = cli("train", "--help")
    assert result.exit_code == 0
    text = result.stdout
    for section, entries in option_fields().items():
        for name, _, _ in entries:
            assert f"--{name.replace('_', '-')}" in text, (section, name)


def test_train_gpt_writes_a_self_describing_model(cli, tmp_path):
    out = tmp_path / "gpt"
    result = cli("train", "tinyshakespeare", *TINY, "--out", out, "--json")
    assert result.exit_code == 0, result
    report = json.loads(result.stdout)
    assert report["steps"] == 20 and report["test"]["bits_per_char"] < 6
    for name in ("lmladder.json", "config.json", "metrics.jsonl", "tokenizer/lmladder.json",
                 "latest/model.safetensors", "latest/optimizer.safetensors", "latest/optimizer.json",
                 "latest/lmladder.json", "best/model.safetensors"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # first, the start-up: seconds from the process's start to each stage, in order (the runner
    # calls the app, not lmladder.cli.main, so "command" is not marked here: tested below)
    startup = rows.pop(0)["startup"]
    assert list(startup)[-4:] == ["torch", "data", "model", "ready"] and report["startup"] == startup
    assert all(0 <= a <= b for a, b in zip(list(startup.values()), list(startup.values())[1:]))
    assert {"step", "time", "lr", "train_loss", "tokens_per_s", "mfu", "memory_gb"} <= set(rows[0])
    assert [r["step"] for r in rows if "val_loss" in r] == [10, 20]
    assert not any(k.startswith("_orig_mod") for k in weights(out))
    # scored again through `lmladder score`: the same test bits/char
    scored = cli("score", out, "tinyshakespeare", "--json")
    assert scored.exit_code == 0, scored
    assert json.loads(scored.stdout)["bits_per_char"] == pytest.approx(report["test"]["bits_per_char"], rel=1e-9)
    from lmladder.generate import generate
    from lmladder.registry import load_model

    samples = generate(load_model(out), "ROMEO:", max_new_chars=20, seed=1, num_samples=2)
    assert len(samples) == 2 and all(len(s) == 26 for s in samples)


def test_train_mlp(cli, tmp_path):
    out = tmp_path / "mlp"
    result = cli("train", "tinyshakespeare", "--preset", "mlp", "--n-hidden", "32", "--batch-size", "16", "--split", "0.96,0.02,0.02",
                 "--max-steps", "30", "--eval-interval", "0", "--out", out, "--json")
    assert result.exit_code == 0, result
    report = json.loads(result.stdout)
    assert report["model"] == "mlp" and report["test"]["bits_per_char"] < 7
    header = json.loads((out / "lmladder.json").read_text())
    assert header["config"]["model"]["n_embd"] == 30 and header["kind"] == "mlp"


@pytest.mark.parametrize("noise", [[], ["--input-noise", "0.2"]])
def test_resume_is_exact(cli, tmp_path, noise):
    """N steps straight == N/2, then --resume for N/2 more (dropout on, and --input-noise's draws:
    the RNG state resumes too)."""
    common = (*TINY, "--dropout", "0.1", "--min-lr", "0.003", "--eval-interval", "3", *noise)
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    assert cli("train", "tinyshakespeare", *common, "--max-steps", "8", "--out", straight).exit_code == 0
    assert cli("train", "tinyshakespeare", *common, "--max-steps", "4", "--out", halves).exit_code == 0
    result = cli("train", "tinyshakespeare", "--resume", halves, "--max-steps", "8")
    assert result.exit_code == 0, result
    assert_same_weights(weights(straight), weights(halves), atol=1e-6)
    a = json.loads((straight / "latest" / "lmladder.json").read_text())
    b = json.loads((halves / "latest" / "lmladder.json").read_text())
    assert a["step"] == b["step"] == 8 and a["best_val"] == pytest.approx(b["best_val"], abs=1e-6)


@pytest.mark.parametrize("head_loss,gelu_fusion,compiled", [("plain", "plain", "forward_loss"),
                                                             ("fused", "fused", "hidden")])
def test_compiled_loss_matches_eager(cli, tmp_path, monkeypatch, head_loss, gelu_fusion, compiled):
    """--compile wraps model + loss in torch.compile (with the fused head loss: the model up to
    the head; with the fused MLP, its custom ops inside); with Dynamo's eager backend (no C++
    compiler needed) the run must give the weights of the uncompiled one."""
    calls = []
    real = torch.compile

    def eager_compile(fn, **kw):
        calls.append(fn.__name__)
        return real(fn, backend="eager", **kw)

    monkeypatch.setattr(torch, "compile", eager_compile)
    common = (*TINY, "--max-steps", "4", "--eval-interval", "0", "--head-loss", head_loss, "--gelu-fusion", gelu_fusion)
    assert cli("train", "tinyshakespeare", *common, "--out", tmp_path / "a").exit_code == 0
    result = cli("train", "tinyshakespeare", *common, "--compile", "--out", tmp_path / "b")
    assert result.exit_code == 0, result
    assert calls == [compiled]
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"), atol=1e-5)


def test_graphed_step_matches_the_plain_loop(cli, tmp_path, monkeypatch):
    """The CUDA-graph path's logic on the CPU: the step goes through a fixed input buffer, three
    warm-up steps run before recording and are undone (weights, AdamW moments and step counts,
    the loss sum), and each replay is a whole step. With accumulation (2 micro-batches) and a
    resume in the middle, it must give the weights of the plain loop."""
    from lmladder.train import step as train_step

    recorded = []
    real = train_step.GraphedStep

    def spy(*args, **kw):
        recorded.append(1)
        return real(*args, **kw)

    common = (*TINY, "--micro-batch-size", "4", "--dropout", "0.0", "--min-lr", "0.003", "--eval-interval", "3",
              "--log-interval", "4")
    assert cli("train", "tinyshakespeare", *common, "--max-steps", "8", "--out", tmp_path / "plain").exit_code == 0
    monkeypatch.setattr(train_step, "graph_capable", lambda device: True)
    monkeypatch.setattr(train_step, "GraphedStep", spy)
    assert cli("train", "tinyshakespeare", *common, "--max-steps", "4", "--out", tmp_path / "graph").exit_code == 0
    result = cli("train", "tinyshakespeare", "--resume", tmp_path / "graph", "--max-steps", "8")
    assert result.exit_code == 0, result
    assert recorded == [1, 1]
    assert_same_weights(weights(tmp_path / "plain"), weights(tmp_path / "graph"), atol=1e-6)
    a, b = ({json.loads(x)["step"]: json.loads(x)["train_loss"] for x in
             (tmp_path / f / "metrics.jsonl").read_text().splitlines() if "train_loss" in x} for f in ("plain", "graph"))
    assert list(a) == list(b) == [4, 8]
    assert [a[4], a[8]] == pytest.approx([b[4], b[8]], abs=1e-6)  # the loss sum was reset after the warm-up
    recorded.clear()
    result = cli("train", "tinyshakespeare", *common, "--max-steps", "2", "--no-cuda-graph", "--out", tmp_path / "off")
    assert result.exit_code == 0 and recorded == []


def test_weight_average_by_hand():
    from lmladder.train import WeightAverage

    m = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(1.0)
    avg = WeightAverage(m, 0.5)
    with torch.no_grad():
        m.weight.fill_(3.0)
    avg.set_step(0)  # w = 1 - min(0.5, 1/10) = 0.9: 1 + 0.9 (3 - 1) = 2.8
    avg.update()
    assert torch.allclose(avg.avg[0], torch.full((1, 2), 2.8))
    with torch.no_grad():
        m.weight.fill_(4.8)
    avg.set_step(20)  # w = 1 - min(0.5, 21/30) = 0.5: 2.8 + 0.5 (4.8 - 2.8) = 3.8
    avg.update()
    with avg.applied():
        assert torch.allclose(m.weight, torch.full((1, 2), 3.8))
    assert torch.allclose(m.weight, torch.full((1, 2), 4.8))
    assert list(avg.state_dict()) == ["weight"]


def test_weight_average_resumes_exactly_and_is_the_model_kept(cli, tmp_path, monkeypatch):
    """--ema: the average is saved with latest/ and resumes exactly; the recorded step keeps it
    (its warm-up undone); val is scored with it, so best/ holds it, and the header points there."""
    from safetensors.torch import load_file

    from lmladder.train import step as train_step

    common = (*TINY, "--ema", "0.8", "--dropout", "0.0", "--min-lr", "0.003", "--eval-interval", "0",
              "--log-interval", "4")
    ema = lambda f: load_file(str(tmp_path / f / "latest" / "ema.safetensors"))  # noqa: E731
    assert cli("train", "tinyshakespeare", *common, "--max-steps", "8", "--out", tmp_path / "straight").exit_code == 0
    assert cli("train", "tinyshakespeare", *common, "--max-steps", "4", "--out", tmp_path / "halves").exit_code == 0
    result = cli("train", "tinyshakespeare", "--resume", tmp_path / "halves", "--max-steps", "8")
    assert result.exit_code == 0, result
    assert_same_weights(ema("straight"), ema("halves"), atol=1e-6)
    monkeypatch.setattr(train_step, "graph_capable", lambda device: True)
    assert cli("train", "tinyshakespeare", *common, "--max-steps", "8", "--out", tmp_path / "graph").exit_code == 0
    assert_same_weights(ema("straight"), ema("graph"), atol=1e-6)
    assert_same_weights(weights(tmp_path / "straight"), weights(tmp_path / "graph"), atol=1e-6)
    # one val pass, at the end: best/ is the average, not the last weights
    best = weights(tmp_path / "straight", "best")
    assert_same_weights({k: v for k, v in best.items()}, ema("straight"), atol=0)
    last = weights(tmp_path / "straight")
    assert max(float((last[k] - best[k]).abs().max()) for k in best) > 1e-4
    header = json.loads((tmp_path / "straight" / "lmladder.json").read_text())
    assert header["weights"] == "best/model.safetensors"
    # without val, the model kept is the average at the end
    no_val = [a if a != "0.96,0.02,0.02" else "0.98,0,0.02" for a in common]
    result = cli("train", "tinyshakespeare", *no_val, "--max-steps", "4", "--out", tmp_path / "noval", "--json")
    assert result.exit_code == 0, result
    assert json.loads((tmp_path / "noval" / "lmladder.json").read_text())["weights"] == "latest/ema.safetensors"
    scored = cli("score", tmp_path / "noval", "tinyshakespeare", "--json")
    assert json.loads(scored.stdout)["bits_per_char"] == pytest.approx(json.loads(result.stdout)["test"]["bits_per_char"])


def test_resume_with_a_missing_or_corrupt_average(cli, tmp_path):
    out = tmp_path / "run"
    assert cli("train", "tinyshakespeare", *TINY, "--ema", "0.9", "--max-steps", "2", "--out", out).exit_code == 0
    saved = out / "latest" / "ema.safetensors"
    saved.write_bytes(b"not a safetensors file")
    assert_error(cli("train", "tinyshakespeare", "--resume", out, "--max-steps", "4"), "ema.safetensors is corrupt")
    saved.unlink()
    assert_error(cli("train", "tinyshakespeare", "--resume", out, "--max-steps", "4"), "ema.safetensors is missing")


def test_rotary_gpt_trains_scores_and_samples(cli, tmp_path):
    out = tmp_path / "rope"
    result = cli("train", "tinyshakespeare", *TINY, "--position", "rotary", "--max-steps", "4", "--out", out, "--json")
    assert result.exit_code == 0, result
    assert "transformer.wpe.weight" not in weights(out)
    scored = cli("score", out, "tinyshakespeare", "--json")
    assert json.loads(scored.stdout)["bits_per_char"] == pytest.approx(json.loads(result.stdout)["test"]["bits_per_char"])
    from lmladder.generate import generate
    from lmladder.registry import load_model

    model = load_model(out)
    once = generate(model, "ROMEO:", max_new_chars=50, seed=3)
    assert once == generate(model, "ROMEO:", max_new_chars=50, seed=3)  # past the 32-unit block


def test_training_without_compile_never_imports_dynamo(tmp_path):
    """AdamW's wrappers would import torch._dynamo (seconds of start-up); a run that compiles
    nothing trains, saves, resumes and scores without it."""
    code = ("import atexit, os, sys; from lmladder.cli import main; "
            "atexit.register(lambda: 'torch._dynamo' in sys.modules and os._exit(3)); main()")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = str(tmp_path / "run")
    for args in ([*TINY, "--max-steps", "4", "--out", out], ["--resume", out, "--max-steps", "6"]):
        launched = time.time()
        run = subprocess.run([sys.executable, "-c", code, "train", "tinyshakespeare", *args], env=env,
                             capture_output=True, text=True, timeout=120)
        took = time.time() - launched
        assert run.returncode == 0, run.stderr[-2000:]
        # the start-up row: each stage's seconds since the process started (the kernel's start
        # time, not lmladder's), in order, within the time the process took
        startup = json.loads((Path(out) / "metrics.jsonl").read_text().splitlines()[0])["startup"]
        assert list(startup) == ["command", "torch", "data", "model", "ready"]
        assert 0 < startup["command"] <= startup["torch"] <= startup["data"] <= startup["ready"] < took


def test_attention_kernel_flags():
    """--attention leaves SDPA only the chosen CUDA kernel (math stays as the fallback), and auto
    gives every kernel back, whatever an earlier run chose."""
    from lmladder.train import set_attention_kernel

    b = torch.backends.cuda
    flags = lambda: (b.flash_sdp_enabled(), b.cudnn_sdp_enabled(), b.mem_efficient_sdp_enabled(),  # noqa: E731
                     b.math_sdp_enabled())
    try:
        set_attention_kernel("cudnn")
        assert flags() == (False, True, False, True)
        set_attention_kernel("flash")
        assert flags() == (True, False, False, True)
        set_attention_kernel("math")
        assert flags() == (False, False, False, True)
    finally:
        set_attention_kernel("auto")
    assert flags() == (True, True, True, True)


def test_max_autotune_is_passed_on_and_not_recorded_as_a_graph(cli, tmp_path, monkeypatch):
    """--compile-mode reaches torch.compile; its kernels crashed inside a recorded step on an H100,
    so that mode trains without the CUDA graph, and times its candidate kernels in a subprocess."""
    import torch._inductor.config as inductor_config

    from lmladder.train import step as train_step

    monkeypatch.setattr(inductor_config, "autotune_in_subproc", False)

    modes, recorded = [], []
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: modes.append(kw.get("mode")) or real(fn, backend="eager"))
    monkeypatch.setattr(train_step, "graph_capable", lambda device: True)
    graphed = train_step.GraphedStep
    monkeypatch.setattr(train_step, "GraphedStep", lambda *a, **kw: recorded.append(1) or graphed(*a, **kw))
    common = (*TINY, "--max-steps", "2", "--eval-interval", "0", "--compile")
    result = cli("train", "tinyshakespeare", *common, "--compile-mode", "max-autotune-no-cudagraphs",
                 "--out", tmp_path / "a")
    assert result.exit_code == 0, result
    assert modes == ["max-autotune-no-cudagraphs"] and recorded == [] and inductor_config.autotune_in_subproc


@pytest.mark.parametrize("fusion", ["plain", "fused"])
def test_two_processes_match_one(tmp_path, fusion):
    """torchrun with 2 gloo processes trains the same model as one process (same global batch),
    also with the fused head loss, which runs outside DistributedDataParallel's forward, and the
    fused MLP."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = ["train", "tinyshakespeare", *TINY, "--max-steps", "6", "--micro-batch-size", "2",
            "--eval-interval", "0", "--device", "cpu", "--head-loss", fusion, "--gelu-fusion", fusion]
    one = subprocess.run([sys.executable, "-m", "lmladder", *args, "--out", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "lmladder", *args, "--out", str(tmp_path / "two")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert two.returncode == 0, two.stderr
    assert_same_weights(weights(tmp_path / "one"), weights(tmp_path / "two"), atol=1e-5)


def test_two_processes_stop_together_out_of_patience(tmp_path):
    """Only rank 0 counts the passes without a better val; every process takes its answer, so
    both stop at the same step (a learning rate too small to move a float32 weight: val is the
    same at every pass, and --patience 1 stops at the second)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = ["train", "tinyshakespeare", *TINY, "--max-steps", "12", "--micro-batch-size", "2", "--eval-interval", "2",
            "--patience", "1", "--lr", "1e-14", "--min-lr", "0", "--warmup-steps", "0", "--device", "cpu", "--json"]
    one = subprocess.run([sys.executable, "-m", "lmladder", *args, "--out", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    assert (json.loads(one.stdout)["steps"], json.loads(one.stdout)["out_of_patience"]) == (4, True)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "lmladder", *args, "--out", str(tmp_path / "two")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert two.returncode == 0, two.stderr
    assert json.loads((tmp_path / "two" / "latest" / "lmladder.json").read_text())["step"] == 4


def test_the_memory_estimate_counts_each_pass_of_a_looped_gpt():
    """Going through the blocks twice keeps both passes' activations for backward, not their weights."""
    from lmladder.config import resolve
    from lmladder.train.plan import memory_needed, parameters_estimate

    one = resolve("gpt", "gpt-tiny", None, {"model": {"vocab_size": 64}})
    two = resolve("gpt", "gpt-tiny", None, {"model": {"vocab_size": 64, "n_loop": 2}})
    assert parameters_estimate(two) == parameters_estimate(one)
    m = one.model
    assert memory_needed(two, 8) - memory_needed(one, 8) == 8 * one.seq_len * m.n_layer * 34 * m.n_embd


def test_a_torchrun_process_leaves_its_group_before_it_ends(monkeypatch):
    """train's last step in a process of several: destroy the process group (left to the
    interpreter's teardown, gloo aborted a process now and then); one process has none to leave."""
    import types

    import torch.distributed as td

    from lmladder.cli.train import _leave_process_group

    left = []
    monkeypatch.setattr(td, "is_initialized", lambda: True)
    monkeypatch.setattr(td, "destroy_process_group", lambda *a, **k: left.append(a))
    _leave_process_group(types.SimpleNamespace(world=1))
    assert left == []
    _leave_process_group(types.SimpleNamespace(world=2))
    assert left == [()]
    monkeypatch.setattr(td, "is_initialized", lambda: False)  # never joined (it failed before): nothing to leave
    _leave_process_group(types.SimpleNamespace(world=2))
    assert left == [()]


@pytest.mark.parametrize("argv, env, quick", [
    (["train", "c"], {"RANK": "1", "WORLD_SIZE": "2"}, True),  # the process whose teardown aborted now and then
    (["train", "c"], {"RANK": "0", "WORLD_SIZE": "2"}, False),  # rank 0 writes the run's files: the usual end
    (["train", "c"], {}, False), (["--debug", "score", "m"], {}, True),
    (["sample", "m"], {"RANK": "1", "WORLD_SIZE": "2"}, False)])
def test_torchrun_train_processes_but_rank_0_end_without_the_teardown(monkeypatch, argv, env, quick):
    from lmladder import cli

    monkeypatch.setattr(sys, "argv", ["lmladder", *argv])
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli._quick_exit() is quick


def test_sigint_saves_and_stops(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "lmladder", "train", "tinyshakespeare", *TINY,
                             "--max-steps", "1000000", "--eval-interval", "0", "--log-interval", "1",
                             "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out / "metrics.jsonl").is_file() or not (out / "metrics.jsonl").read_text().strip():
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    state = json.loads((out / "latest" / "lmladder.json").read_text())
    assert state["step"] >= 1 and json.loads((out / "lmladder.json").read_text())["status"] == "interrupted"


def test_config_file_and_precedence(cli, tmp_path):
    conf = tmp_path / "run.toml"
    conf.write_text("[model]\nn_layer = 1\nn_embd = 16\n[optim]\nlr = 0.002\n[run]\nmax_steps = 3\n")
    out = tmp_path / "run"
    result = cli("train", "tinyshakespeare", *TINY, "--config", conf, "--n-embd", "24", "--out", out, "--json")
    assert result.exit_code == 0, result
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["n_layer"] == 1 and saved["model"]["n_embd"] == 24  # option beats file
    assert saved["optim"]["lr"] == 0.002 and saved["run"]["max_steps"] == 3 and saved["model"]["n_head"] == 2


def test_schedule():
    from lmladder.config import OptimConfig
    from lmladder.train import lr_at

    o = OptimConfig(lr=1.0, min_lr=0.1, warmup_steps=10)
    assert lr_at(o, 0.0, 0) == pytest.approx(0.1) and lr_at(o, 0.0, 9) == 1.0
    assert lr_at(o, 0.5, 50) == pytest.approx(0.55) and lr_at(o, 1.0, 100) == pytest.approx(0.1)
    o.schedule = "wsd"
    assert lr_at(o, 0.5, 50) == 1.0 and lr_at(o, 1.0, 100) == pytest.approx(0.1)


def test_batches_are_a_function_of_the_step():
    from lmladder.train import batch_windows

    ids = np.arange(1000)
    a = batch_windows(ids, 1, 5, 4, 16)
    assert a.shape == (4, 17) and np.array_equal(a, batch_windows(ids, 1, 5, 4, 16))
    assert np.all(np.diff(a, axis=1) == 1) and not np.array_equal(a, batch_windows(ids, 1, 6, 4, 16))


def test_best_is_written_in_a_thread_as_it_was_when_val_improved(tmp_path):
    """checkpoint.BestWriter: the weights written are the ones at the moment of the save, though
    training changes them before the thread writes; a failed write is raised by the next wait."""
    import torch

    from lmladder import checkpoint

    model = torch.nn.Linear(64, 64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    writer = checkpoint.BestWriter()
    writer.save(tmp_path / "best", model, {"step": 7})
    with torch.no_grad():
        model.weight.add_(1.0)  # the next steps
    writer.wait()
    saved = checkpoint.load_tensors(tmp_path / "best" / "model.safetensors")
    assert all(torch.equal(saved[k], before[k]) for k in before)
    assert json.loads((tmp_path / "best" / "lmladder.json").read_text())["step"] == 7
    (tmp_path / "file").write_text("")
    writer.save(tmp_path / "file" / "best", model, {"step": 8})  # its parent is a file
    with pytest.raises(LadderError, match="Not a directory"):
        writer.wait()
    writer.wait()  # the error was raised once


def test_patience_stops_after_passes_without_a_better_val(cli, tmp_path, monkeypatch):
    """--patience 2 with val losses 3.0, 2.0, 2.5, 2.6 (scripted): the run stops after the fourth
    pass, at step 16 of 40, as finished (test scored), best/ from the second pass; a resumed run
    keeps the count."""
    from lmladder.train import loop

    script = iter([3.0, 2.0, 2.5, 2.6, 2.7, 2.8])
    seen = []

    def scripted(model, ids, config, device, renormalise=None):
        seen.append(1)
        return next(script) * (len(ids) - 1), len(ids) - 1

    monkeypatch.setattr(loop, "validation_nats", scripted)
    args = (*TINY, "--max-steps", "40", "--eval-interval", "4", "--log-interval", "4", "--patience", "2")
    result = cli("train", "tinyshakespeare", *args, "--out", tmp_path / "p", "--json")
    assert result.exit_code == 0, result
    out = json.loads(result.stdout)
    assert (out["steps"], out["stopped"], out["out_of_patience"], out["best_val_loss"]) == (16, "finished", True, 2.0)
    assert len(seen) == 4 and "test" in out and "--patience 2" in result.stderr
    assert json.loads((tmp_path / "p" / "best" / "lmladder.json").read_text())["step"] == 8
    assert json.loads((tmp_path / "p" / "latest" / "lmladder.json").read_text())["stale"] == 2
    assert_error(cli("train", "tinyshakespeare", *TINY, "--max-steps", "4", "--patience", "-1",
                     "--out", tmp_path / "bad"), "patience must be >= 0")


def test_nan_loss_stops_with_an_error(cli, tmp_path):
    result = cli("train", "tinyshakespeare", *TINY, "--lr", "1e30", "--grad-clip", "0", "--warmup-steps", "0",
                 "--max-steps", "40", "--log-interval", "1", "--out", tmp_path / "nan")
    assert result.exit_code == 1, result
    assert "error: the training loss became" in result.stderr and "Traceback" not in result.stderr


# --- bad input: one error line, exit 2, before any training ---------------------------------


def test_corpus_shorter_than_a_window(cli, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("to be\nor not\n")
    assert_error(cli("train", short, *TINY, "--split", "1,0,0", "--out", tmp_path / "o"),
                 "shorter than one training window")


def test_batch_size_zero(cli, tmp_path):
    assert_error(cli("train", "tinyshakespeare", *TINY, "--batch-size", "0", "--out", tmp_path / "o"),
                 "batch_size must be at least 1")
    assert not (tmp_path / "o").exists()


def test_unknown_config_key(cli, tmp_path):
    conf = tmp_path / "bad.toml"
    conf.write_text("[model]\nn_layers = 3\n")
    assert_error(cli("train", "tinyshakespeare", *TINY, "--config", conf, "--out", tmp_path / "o"),
                 "unknown config key [model] n_layers")
    conf.write_text("[optimizer]\nlr = 3\n")
    assert_error(cli("train", "tinyshakespeare", *TINY, "--config", conf, "--out", tmp_path / "o"),
                 "unknown section [optimizer]")
    conf.write_text("[optim]\nlr = 'fast'\n")
    assert_error(cli("train", "tinyshakespeare", *TINY, "--config", conf, "--out", tmp_path / "o"),
                 "lr must be a float")


@pytest.mark.parametrize("option,value,message", [
    ("--attention", "fastest", "attention must be one of auto, flash, cudnn, efficient, math"),
    ("--compile-mode", "turbo", "compile_mode must be one of default, max-autotune-no-cudagraphs"),
    ("--position", "absolute", "position must be one of learned, rotary"),
    ("--residual-dtype", "bfloat16", "residual_dtype must be one of float32, autocast"),
    ("--ema", "1.0", "ema must be in [0, 1)"),
    ("--head-loss", "triton", "head_loss must be one of auto, fused, fp8, plain"),
    ("--gelu-fusion", "cublas", "gelu_fusion must be one of auto, fused, plain"),
])
def test_impossible_run_option(cli, tmp_path, option, value, message):
    assert_error(cli("train", "tinyshakespeare", *TINY, option, value, "--out", tmp_path / "o"), message)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("option,message", [("--head-loss", "head_loss fused is for a GPT"),
                                            ("--gelu-fusion", "gelu_fusion fused is for a GPT")])
def test_gpt_fusions_for_an_mlp(cli, tmp_path, option, message):
    assert_error(cli("train", "tinyshakespeare", "--model", "mlp", option, "fused", "--max-steps", "1",
                     "--out", tmp_path / "o"), message)
    assert not (tmp_path / "o").exists()


def test_a_saved_optimizer_state_takes_this_runs_settings():
    """A state saved by a CUDA-graph run (tensor lr, capturable, fused) resumed on a CPU, and one
    saved by a plain run resumed into a graph: the flags, the learning rate's type and the step
    counters follow the resuming run, and stepping works."""
    import copy
    from types import SimpleNamespace

    from lmladder.train import adopt_optimizer_state, make_optimizer

    model = torch.nn.Linear(3, 2)
    o = SimpleNamespace(lr=0.01, weight_decay=0.1, beta1=0.9, beta2=0.99, optimizer="adamw")
    first = make_optimizer(model, o, "cpu")
    model(torch.ones(1, 3)).sum().backward()
    first.step()
    saved = copy.deepcopy(first.state_dict())
    for group in saved["param_groups"]:  # as a graphed GPU run saves it
        group.update(capturable=True, fused=True, lr=torch.tensor(0.01))
    plain = make_optimizer(model, o, "cpu")
    plain.load_state_dict(saved)
    adopt_optimizer_state(plain, "cpu", capturable=False)
    assert all(not g["capturable"] and not g["fused"] and g["lr"] == pytest.approx(0.01) and not torch.is_tensor(g["lr"])
               for g in plain.param_groups)
    plain.step()
    graphed = make_optimizer(model, o, "cpu")
    graphed.load_state_dict(copy.deepcopy(first.state_dict()))
    adopt_optimizer_state(graphed, "cpu", capturable=True)
    assert all(g["capturable"] and torch.is_tensor(g["lr"]) for g in graphed.param_groups)
    assert [float(g["lr"]) for g in graphed.param_groups] == pytest.approx([0.01, 0.01])
    steps = [st["step"] for st in graphed.state.values()]
    assert steps and all(s.dtype == torch.float32 and float(s) == 1.0 for s in steps)


def test_option_of_the_other_model(cli, tmp_path):
    assert_error(cli("train", "tinyshakespeare", *TINY, "--n-hidden", "8", "--out", tmp_path / "o"),
                 "--n-hidden does not apply to a gpt model")
    assert_error(cli("train", "tinyshakespeare", "--model", "unigram", "--n-layer", "2", "--out", tmp_path / "o"),
                 "--n-layer does not apply to --model unigram")


def test_preset_that_does_not_fit_the_gpu(cli, tmp_path, monkeypatch):
    """A micro-batch the user chose that does not fit is an error that says how much it needs;
    so is a preset that fits at no micro-batch (1 GiB: its weights and AdamW state alone do not)."""
    import lmladder.train

    monkeypatch.setattr(lmladder.train.plan, "device_memory", lambda device: 8 * 2**30)
    assert_error(cli("train", "tinyshakespeare", "--preset", "gpt2-124m", "--vocab-size", "50304",
                     "--micro-batch-size", "64", "--out", tmp_path / "o"), "GiB of GPU memory", "lower --micro-batch-size")
    conf = tmp_path / "micro.toml"
    conf.write_text("[optim]\nmicro_batch_size = 64\n")  # a config file's choice is the user's too
    assert_error(cli("train", "tinyshakespeare", "--preset", "gpt2-124m", "--vocab-size", "50304",
                     "--config", conf, "--out", tmp_path / "o"), "with micro_batch_size 64,")
    monkeypatch.setattr(lmladder.train.plan, "device_memory", lambda device: 2**30)
    assert_error(cli("train", "tinyshakespeare", "--preset", "gpt2-124m", "--vocab-size", "50304",
                     "--out", tmp_path / "o"), "with micro_batch_size 1,", "does not fit even at micro_batch_size 1")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("micro", [128, 64, 16])
def test_a_presets_micro_batch_is_fitted_to_the_gpu(tmp_path, monkeypatch, micro):
    """gpt2-124m's micro-batch of 128 is halved until the memory estimate fits the GPU: a GPU
    just big enough for `micro` gets it; the batch stays 512 (more micro-steps)."""
    import lmladder.train
    from lmladder import neural  # noqa: F401
    from lmladder.config import resolve

    config = resolve("gpt", "gpt2-124m", None, {"model": {"vocab_size": 50304}})
    room = lmladder.train.memory_needed(config, micro) + 1
    monkeypatch.setattr(lmladder.train.plan, "device_memory", lambda device: room)
    job = lmladder.train.prepare("tinyshakespeare", "char", config, tmp_path / "o", device="cpu", fit_micro=True)
    assert (job.config.optim.micro_batch_size, job.config.optim.batch_size) == (micro, 512)


@pytest.mark.parametrize("world,batch,micro", [(8, 512, 64), (1, 96, 96), (1, 48, 48), (4, 384, 96)])
def test_a_presets_micro_batch_divides_each_share(tmp_path, world, batch, micro):
    """With 8 processes gpt2-124m's batch of 512 leaves 64 sequences each, so its micro-batch of 128
    becomes 64 (an error had the user asked for 128); a batch of 96 takes micro-batches of 96."""
    import lmladder.train
    from lmladder import neural  # noqa: F401
    from lmladder.config import resolve

    config = resolve("gpt", "gpt2-124m", None, {"model": {"vocab_size": 50304}, "optim": {"batch_size": batch}})
    job = lmladder.train.prepare("tinyshakespeare", "char", config, tmp_path / "o", device="cpu", fit_micro=True,
                                 dist=lmladder.train.Dist(world=world))
    assert job.config.optim.micro_batch_size == micro


def test_prepare_leaves_the_given_config_alone(tmp_path):
    """prepare completes a copy of the config into the Job (the tokenizer's vocabulary, padded to
    64 for a GPT; an MLP's padding id; a micro-batch fitted to each process's share) and leaves
    the one it was given as it was."""
    import copy

    import lmladder.train
    from lmladder.config import resolve

    gpt = resolve("gpt", "gpt2-124m", None, {})
    mlp = resolve("mlp", "mlp", None, {"model": {"block_size": 4}})
    before = copy.deepcopy((gpt, mlp))
    job = lmladder.train.prepare("tinyshakespeare", "char", gpt, tmp_path / "g", device="cpu", fit_micro=True,
                                 dist=lmladder.train.Dist(world=8))
    assert (gpt, mlp) == before and gpt.model.vocab_size == 0 and gpt.optim.micro_batch_size == 128
    assert job.config.model.vocab_size == 64 * -(-job.tokenizer.vocab_size // 64) and job.config.optim.micro_batch_size == 64
    job = lmladder.train.prepare("tinyshakespeare", "char", mlp, tmp_path / "m", device="cpu")
    assert (gpt, mlp) == before
    assert job.config.model.vocab_size == job.tokenizer.vocab_size and job.config.model.pad_id == job.tokenizer.eot_id


def test_a_micro_batch_the_user_chose_must_divide_each_share(tmp_path):
    import lmladder.train
    from lmladder import neural  # noqa: F401
    from lmladder.config import resolve
    from lmladder.errors import LadderError

    asked = resolve("gpt", "gpt2-124m", None, {"model": {"vocab_size": 50304}})
    with pytest.raises(LadderError, match=r"share of the batch \(64\) is not a multiple of micro_batch_size 128"):
        lmladder.train.prepare("tinyshakespeare", "char", asked, tmp_path / "p", device="cpu",
                               dist=lmladder.train.Dist(world=8))


def test_resume_on_a_folder_that_is_not_a_checkpoint(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_error(cli("train", "tinyshakespeare", "--resume", empty), "--resume", "not an lmladder")
    assert_error(cli("train", "tinyshakespeare", "--resume", tmp_path / "missing"), "not a folder")
    uni = tmp_path / "uni"
    assert cli("train", "tinyshakespeare", "--model", "unigram", "--out", uni).exit_code == 0
    assert_error(cli("train", "tinyshakespeare", "--resume", uni), "not a checkpoint")


def test_resume_mismatches(cli, tmp_path):
    out = tmp_path / "run"
    assert cli("train", "tinyshakespeare", *TINY, "--max-steps", "2", "--out", out).exit_code == 0
    other = tmp_path / "other.txt"
    other.write_text("A different corpus, long enough for a window or two.\n" * 40)
    assert_error(cli("train", other, "--resume", out, "--max-steps", "4"), "resume on the same corpus")
    tok = tmp_path / "tok"
    from lmladder.tokens import load_tokenizer

    load_tokenizer("char", str(other)).save(tok)
    assert_error(cli("train", "tinyshakespeare", "--resume", out, "--tokenizer", tok, "--max-steps", "4"),
                 "is not the tokenizer")
    assert_error(cli("train", "tinyshakespeare", "--resume", out, "--beta2", "0.9"),
                 "--beta2 cannot change on --resume")
    assert_error(cli("train", "tinyshakespeare", *TINY, "--out", out), "already holds an lmladder model (gpt)",
                 "--force")


def test_the_gpu_context_is_made_while_torch_imports(monkeypatch):
    """`lmladder train` on a GPU creates the device's primary context through the CUDA driver in
    a thread (lmladder.runtime.warm_gpu): the device asked for, none for a CPU run or --help, and
    nothing at all where no driver loads (as on this machine)."""
    import ctypes

    from lmladder import runtime

    calls = []

    class Driver:
        def __getattr__(self, name):
            def call(*args):
                calls.append((name, [getattr(getattr(a, "_obj", a), "value", a) for a in args]))
                if name == "cuDeviceGet":
                    args[0]._obj.value = args[1]
                return 0
            return call

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Driver() if name == "libcuda.so.1" else None)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    for argv, ordinal in ((["train", "c", "--preset", "gpt-char"], 0), (["train", "c", "--device", "cuda:1"], 1),
                          (["train", "c", "--device=cuda:3"], 3)):
        calls.clear()
        runtime.warm_gpu(argv).join(5)
        assert [name for name, _ in calls] == ["cuInit", "cuDeviceGet", "cuDevicePrimaryCtxRetain"]
        assert calls[1][1][1] == ordinal and calls[2][1][1] == ordinal
    monkeypatch.setenv("LOCAL_RANK", "2")  # outside torchrun it means nothing, as to the trainer
    calls.clear()
    runtime.warm_gpu(["train", "c", "--device", "cuda"]).join(5)
    assert calls[1][1][1] == 0
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    calls.clear()
    runtime.warm_gpu(["train", "c", "--device", "cuda:1"]).join(5)  # torchrun: each process its LOCAL_RANK's GPU
    assert calls[1][1][1] == 2
    monkeypatch.setenv("LOCAL_RANK", "x")
    assert runtime.warm_gpu(["train", "c"]) is None  # nothing to go on: no crash, no context
    for argv in (["train", "c", "--device", "cpu"], ["train", "--help"], ["train", "c", "--model", "unigram"],
                 ["train", "c", "--config", "cpu.toml"], ["train", "--resume=run"]):
        assert runtime.warm_gpu(argv) is None
    monkeypatch.undo()
    thread = runtime.warm_gpu(["train", "c"])  # the real ctypes: no libcuda here, so nothing, quietly
    thread.join(5)
    assert not thread.is_alive()
