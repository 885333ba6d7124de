"""`lmladder train` when things go wrong (issue 18): a run killed with kill -9 leaves usable
weights and a checkpoint, a divergence says only what is true and can be resumed with a lower
learning rate, a second Ctrl-C aborts at once, progress shows in log files, the CPU threads are
a setting, the optimizer state is never a pickle, files get the usual modes, and a resumed
run's metrics have each step once."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, assert_error

torch = pytest.importorskip("torch")

TINY = ("--preset", "gpt-tiny", "--seed", "3", "--split", "0.96,0.02,0.02")
ENV = {**os.environ, "PYTHONPATH": str(REPO), "LMLADDER_NO_PROGRESS": "1"}


def header(out: Path) -> dict:
    return json.loads((out / "lmladder.json").read_text())


def metric_rows(out: Path) -> list[dict]:
    """The rows of metrics.jsonl, but a last line still being written."""
    lines = (out / "metrics.jsonl").read_text().split("\n")
    return [json.loads(line) for line in lines[:-1]]


def train_steps(out: Path) -> list[int]:
    return [row["step"] for row in metric_rows(out) if "train_loss" in row]


# --- item 9: checkpoints early and by time ---------------------------------------------------


@pytest.fixture
def saves(monkeypatch):
    """(folder name, step) of every checkpoint written."""
    from lmladder import checkpoint

    done = []
    real = checkpoint.save

    def spy(folder, model, optimizer, state, average=None):
        done.append((Path(folder).name, state["step"]))
        return real(folder, model, optimizer, state, average)

    monkeypatch.setattr(checkpoint, "save", spy)
    return done


def test_latest_is_saved_at_the_first_evaluation_and_the_header_names_weights_at_once(cli, tmp_path, saves,
                                                                                   monkeypatch):
    """checkpoint_interval 1000 on a 12-step run: latest/ at the first evaluation (step 5) and at
    the end, and the header names best/ from the first evaluation on; --checkpoint-seconds 0
    saves latest/ only at the end, as before."""
    from lmladder.train import step as train_step

    out = tmp_path / "run"
    named = {}
    real = train_step.TrainStep.__call__

    def spy(self, batch, lr, step):
        named[step] = header(out)["weights"]
        return real(self, batch, lr, step)

    monkeypatch.setattr(train_step.TrainStep, "__call__", spy)
    common = (*TINY, "--max-steps", "12", "--eval-interval", "5", "--log-interval", "4")
    result = cli("train", "tinyshakespeare", *common, "--checkpoint-seconds", "100000", "--out", out)
    assert result.exit_code == 0, result
    assert [s for s in saves if s[0] == "latest"] == [("latest", 5), ("latest", 12)]
    assert named[0] is None and named[4] is None and named[5] == named[11] == "best/model.safetensors"
    saves.clear()
    result = cli("train", "tinyshakespeare", *common, "--checkpoint-seconds", "0", "--out", tmp_path / "old")
    assert result.exit_code == 0, result
    assert [s for s in saves if s[0] == "latest"] == [("latest", 12)]


def test_kill_9_leaves_usable_weights_and_a_checkpoint_that_resumes(cli, tmp_path):
    """No evaluation and checkpoint_interval 1000: latest/ comes by time (--checkpoint-seconds 1);
    after kill -9 the header names its weights, the model scores, and --resume continues it with
    each step's metrics once (the rows written after the checkpoint are dropped)."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "lmladder", "train", "tinyshakespeare", *TINY,
                             "--max-steps", "1000000", "--eval-interval", "0", "--log-interval", "1",
                             "--checkpoint-seconds", "3", "--out", str(out)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while not (out / "lmladder.json").is_file() or header(out).get("weights") is None:
            assert time.time() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        first = json.loads((out / "latest" / "lmladder.json").read_text())["step"]
        while max(train_steps(out), default=0) <= first + 1:  # past the checkpoint: rows to write again
            assert time.time() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    assert header(out)["weights"] == "latest/model.safetensors" and header(out)["status"] == "training"
    saved = json.loads((out / "latest" / "lmladder.json").read_text())["step"]
    assert saved >= 1
    scored = cli("score", out, "tinyshakespeare", "--json")
    assert scored.exit_code == 0, scored
    result = cli("train", "tinyshakespeare", "--resume", out, "--max-steps", str(saved + 3))
    assert result.exit_code == 0, result
    assert train_steps(out) == list(range(1, saved + 4))


def test_resume_drops_metrics_rows_after_its_checkpoint(cli, tmp_path):
    """A run that went on past its last checkpoint (here: latest/ of step 4 put back after the
    run reached 8) and is resumed writes steps 5 to 8 once, not twice."""
    out = tmp_path / "run"
    common = (*TINY, "--eval-interval", "0", "--log-interval", "1")
    assert cli("train", "tinyshakespeare", *common, "--max-steps", "4", "--out", out).exit_code == 0
    shutil.copytree(out / "latest", tmp_path / "step4")
    assert cli("train", "tinyshakespeare", "--resume", out, "--max-steps", "8").exit_code == 0
    shutil.rmtree(out / "latest")
    shutil.copytree(tmp_path / "step4", out / "latest")
    result = cli("train", "tinyshakespeare", "--resume", out, "--max-steps", "8")
    assert result.exit_code == 0, result
    assert train_steps(out) == list(range(1, 9))
    assert [r["step"] for r in metric_rows(out) if "val_loss" in r] == [4, 8]


# --- item 10: divergence, and the schedule on --resume ---------------------------------------


def test_divergence_before_any_checkpoint_says_there_is_none(cli, tmp_path):
    result = cli("train", "tinyshakespeare", *TINY, "--lr", "1e30", "--grad-clip", "0", "--warmup-steps", "0",
                 "--max-steps", "40", "--log-interval", "1", "--out", tmp_path / "nan")
    assert result.exit_code == 1, result
    assert re.search(r"^error: the training loss became nan at step \d+ ", result.stderr, re.MULTILINE), result
    assert "No checkpoint was saved before it" in result.stderr and "latest" not in result.stderr
    assert not (tmp_path / "nan").exists()  # a new run that failed before any checkpoint leaves no folder


def test_weights_that_are_not_finite_are_never_checkpointed(cli, tmp_path, saves):
    """The loss is checked only every log_interval steps; a checkpoint due before that refuses
    weights that are not finite, stops the run, and names the last one that was saved."""
    out = tmp_path / "nan"
    result = cli("train", "tinyshakespeare", *TINY, "--lr", "1e30", "--grad-clip", "0", "--warmup-steps", "0",
                 "--max-steps", "40", "--log-interval", "20", "--checkpoint-interval", "1", "--out", out)
    assert result.exit_code == 1, result
    message = result.stderr.strip().splitlines()[-1]
    assert re.match(r"error: the weights became NaN or infinite at step (\d+)", message), message
    last = saves[-1][1]
    assert f"The last checkpoint, of step {last}, is in {out / 'latest'}" in message and f"--resume {out}" in message
    kept = weights(out)
    assert all(torch.isfinite(t).all() for t in kept.values())
    assert json.loads((out / "latest" / "lmladder.json").read_text())["step"] == last
    assert header(out)["status"] == "diverged" and header(out)["weights"] == "latest/model.safetensors"


def weights(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "latest" / "model.safetensors"))


def test_a_diverged_run_continues_from_its_checkpoint_with_a_lower_lr(cli, tmp_path):
    """2 good steps, then --resume with a learning rate that diverges: the error names the
    checkpoint of step 2; --resume with a lower one continues from it."""
    out = tmp_path / "run"
    assert cli("train", "tinyshakespeare", *TINY, "--max-steps", "2", "--out", out).exit_code == 0
    result = cli("train", "tinyshakespeare", "--resume", out, "--lr", "1e30", "--grad-clip", "0", "--max-steps", "40",
                 "--log-interval", "1")
    assert result.exit_code == 1, result
    assert f"The last checkpoint, of step 2, is in {out / 'latest'}" in result.stderr
    assert header(out)["status"] == "diverged"
    result = cli("train", "tinyshakespeare", "--resume", out, "--lr", "0.001", "--grad-clip", "1", "--max-steps", "6",
                 "--json")
    assert result.exit_code == 0, result
    assert json.loads(result.stdout)["steps"] == 6 and header(out)["status"] == "trained"


def test_the_schedule_changes_on_resume_and_is_used(cli, tmp_path):
    """--lr, --min-lr, --warmup-steps, --schedule, --grad-clip and --weight-decay may change on
    --resume: the new learning rate is the one AdamW steps with (metrics, its saved groups), the
    new weight decay is in its groups, and the run's config says so for the next resume."""
    common = (*TINY, "--lr", "0.003", "--min-lr", "0.003", "--warmup-steps", "0", "--eval-interval", "0",
              "--log-interval", "1")
    same, changed = tmp_path / "same", tmp_path / "changed"
    for out in (same, changed):
        assert cli("train", "tinyshakespeare", *common, "--max-steps", "4", "--out", out).exit_code == 0
    assert cli("train", "tinyshakespeare", "--resume", same, "--max-steps", "8").exit_code == 0
    result = cli("train", "tinyshakespeare", "--resume", changed, "--max-steps", "8", "--lr", "0.001", "--min-lr",
                 "0.001", "--weight-decay", "0.5", "--grad-clip", "0.5", "--schedule", "wsd", "--warmup-steps", "0")
    assert result.exit_code == 0, result
    lrs = {row["step"]: row["lr"] for row in metric_rows(changed) if "lr" in row}
    assert [lrs[s] for s in range(1, 5)] == [0.003] * 4 and [lrs[s] for s in range(5, 9)] == [0.001] * 4
    groups = json.loads((changed / "latest" / "optimizer.json").read_text())["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.5, 0.0] and [g["lr"] for g in groups] == [0.001, 0.001]
    optim = header(changed)["config"]["optim"]
    assert (optim["lr"], optim["weight_decay"], optim["grad_clip"], optim["schedule"]) == (0.001, 0.5, 0.5, "wsd")
    a, b = weights(same), weights(changed)
    assert any(not torch.equal(a[k], b[k]) for k in a)


# --- item 11: a second Ctrl-C ----------------------------------------------------------------


def test_a_second_signal_aborts_at_once():
    from lmladder.train.step import Stopper

    before = signal.getsignal(signal.SIGINT)  # Python's default; SIG_IGN where the shell started pytest with &
    with Stopper(announce=False) as stopper:
        stopper._handle(signal.SIGINT, None)
        assert stopper.signal == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            stopper._handle(signal.SIGINT, None)
    assert signal.getsignal(signal.SIGINT) is before  # the handler it found, back


SLOW_STEP = """
import sys, time
from lmladder.train import step
marker, sys.argv = sys.argv[1], ["lmladder"] + sys.argv[2:]
real = step.TrainStep.__call__
def slow(self, batch, lr, k):
    real(self, batch, lr, k)
    if k == 1:  # the second step is a long one
        open(marker, "w").close()
        time.sleep(120)
step.TrainStep.__call__ = slow
from lmladder.cli import main
main()
"""


def test_a_second_ctrl_c_during_a_long_step_aborts_the_run(tmp_path):
    """The first SIGINT waits for the step (to save latest/); the second, during that step,
    ends the process at once with `error: interrupted` (exit 130)."""
    marker, out = tmp_path / "in-step", tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_STEP, str(marker), "train", "tinyshakespeare", *TINY,
                             "--max-steps", "100", "--eval-interval", "0", "--out", str(out)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not marker.exists():
            assert time.time() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert proc.poll() is None  # the first one waits for the step
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "SIGINT: stopping after this step" in stderr and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == ("error: interrupted by SIGINT, at once and without saving; no "
                                               "checkpoint was saved")


# --- item 13: progress in log files, no wrapping, CPU threads --------------------------------


def test_plain_progress_lines_where_stderr_is_not_a_terminal(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("LMLADDER_NO_PROGRESS")
    result = cli("train", "tinyshakespeare", *TINY, "--out", tmp_path / "a")
    assert result.exit_code == 0, result
    lines = [line for line in result.stderr.splitlines() if line.startswith("step ")]
    assert re.fullmatch(r"step 5/20 loss \d+\.\d{4} [\d.,]+k tok/s eta \d+:\d\d:\d\d", lines[0]), lines
    assert re.fullmatch(r"step 20/20 loss \d+\.\d{4} val \d+\.\d{4} [\d.,]+k tok/s eta 0:00:00", lines[-1]), lines
    monkeypatch.setenv("LMLADDER_NO_PROGRESS", "1")
    result = cli("train", "tinyshakespeare", *TINY, "--out", tmp_path / "b")
    assert result.exit_code == 0 and not [line for line in result.stderr.splitlines() if line.startswith("step ")]


def test_log_lines_are_not_wrapped_in_a_file():
    env = {k: v for k, v in ENV.items() if k not in ("COLUMNS", "LINES")}
    text = " ".join(f"word{i}" for i in range(60))
    run = subprocess.run([sys.executable, "-c", f"from lmladder.console import log; log({text!r})"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stderr == text + "\n", run.stderr


def test_threads_setting(cli, tmp_path, monkeypatch):
    """--threads sets torch's CPU threads for the run (and may change on --resume); they are put
    back afterwards; 0 (the default) leaves torch's own count."""
    from lmladder.train import step as train_step

    seen = []
    real = train_step.TrainStep.__call__
    monkeypatch.setattr(train_step.TrainStep, "__call__",
                        lambda self, *a: seen.append(torch.get_num_threads()) or real(self, *a))
    before = torch.get_num_threads()
    out = tmp_path / "run"
    assert cli("train", "tinyshakespeare", *TINY, "--max-steps", "2", "--threads", "3", "--out", out).exit_code == 0
    assert seen == [3, 3] and torch.get_num_threads() == before
    assert cli("train", "tinyshakespeare", "--resume", out, "--max-steps", "3", "--threads", "1").exit_code == 0
    assert seen[2:] == [1] and torch.get_num_threads() == before
    assert cli("train", "tinyshakespeare", "--resume", out, "--max-steps", "4", "--threads", "0").exit_code == 0
    assert seen[3:] == [before] and header(out)["config"]["run"]["threads"] == 0


# --- item 14: no pickle ----------------------------------------------------------------------


def test_optimizer_state_round_trips_exactly(tmp_path):
    from types import SimpleNamespace

    from lmladder import checkpoint
    from lmladder.train import make_optimizer

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    o = SimpleNamespace(lr=0.01, weight_decay=0.1, beta1=0.9, beta2=0.95, optimizer="adamw")
    first = make_optimizer(model, o, "cpu")
    for _ in range(3):
        model(torch.randn(5, 3)).square().sum().backward()
        first.step()
    checkpoint.save_optimizer(first, tmp_path)
    second = make_optimizer(model, SimpleNamespace(lr=1.0, weight_decay=0.0, beta1=0.5, beta2=0.5, optimizer="adamw"), "cpu")
    checkpoint.load_optimizer(second, tmp_path)
    a, b = first.state_dict(), second.state_dict()
    assert a["param_groups"] == b["param_groups"] and isinstance(b["param_groups"][0]["betas"], tuple)
    assert a["state"].keys() == b["state"].keys()
    for index, entries in a["state"].items():
        assert entries.keys() == b["state"][index].keys()
        for key, value in entries.items():
            got = b["state"][index][key]
            assert got.dtype == value.dtype and got.shape == value.shape and torch.equal(got, value), (index, key)
    saved = json.loads((tmp_path / "optimizer.json").read_text())
    assert saved["state"]["0"] == {"step": 3.0}


def test_resume_reads_no_pickle(cli, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert cli("train", "tinyshakespeare", *TINY, "--max-steps", "2", "--out", out).exit_code == 0
    assert sorted(p.name for p in (out / "latest").iterdir()) == ["lmladder.json", "model.safetensors",
                                                                  "optimizer.json", "optimizer.safetensors"]

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load called")

    monkeypatch.setattr(torch, "load", no_pickle)
    result = cli("train", "tinyshakespeare", "--resume", out, "--max-steps", "4")
    assert result.exit_code == 0, result


def test_a_checkpoint_with_the_old_optimizer_pt_is_refused_clearly(cli, tmp_path):
    out = tmp_path / "run"
    assert cli("train", "tinyshakespeare", *TINY, "--max-steps", "2", "--out", out).exit_code == 0
    for name in ("optimizer.json", "optimizer.safetensors"):
        (out / "latest" / name).unlink()
    (out / "latest" / "optimizer.pt").write_bytes(b"\x80\x02}q\x00.")
    assert_error(cli("train", "tinyshakespeare", "--resume", out, "--max-steps", "4"),
                 "optimizer.pt", "no longer reads", "train it again")
    assert cli("score", out, "tinyshakespeare").exit_code == 0  # its weights still score


def test_a_corrupt_optimizer_state_is_one_error(cli, tmp_path):
    out = tmp_path / "run"
    assert cli("train", "tinyshakespeare", *TINY, "--max-steps", "2", "--out", out).exit_code == 0
    (out / "latest" / "optimizer.json").write_text("{not json")
    assert_error(cli("train", "tinyshakespeare", "--resume", out, "--max-steps", "4"),
                 "the optimizer state in", "cannot be read")


# --- item 15: file modes ---------------------------------------------------------------------


def test_files_get_the_usual_modes(cli, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "run"
        assert cli("train", "tinyshakespeare", *TINY, "--max-steps", "2", "--out", out).exit_code == 0
    finally:
        os.umask(old)
    for path in [out, *out.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))
