"""`lmladder train` refuses impossible and absurd options before any work, with one `error:`
line naming the option (exit 2): model sizes below 1, betas outside [0, 1), seeds outside
[0, 2**63 - 1], numbers that are not finite, limits and batches past what the machine can
run, and a folder given as --config. A new run that fails before its first checkpoint leaves
no --out folder behind (one that was there before is never removed)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from tests.conftest import assert_error

pytest.importorskip("torch")

TINY = ("--preset", "gpt-tiny", "--seed", "3", "--split", "0.96,0.02,0.02", "--device", "cpu")
MLP = ("--preset", "mlp", "--n-embd", "8", "--n-hidden", "16", "--batch-size", "4", "--max-steps", "2",
       "--device", "cpu")


def refused(cli, tmp_path, *args, common=TINY):
    """The result of a run that must be refused, after checking it left no --out behind."""
    result = cli("train", "tinyshakespeare", *common, *args, "--out", tmp_path / "o")
    assert not (tmp_path / "o").exists(), result
    return result


# --- 1. the model's sizes ---------------------------------------------------------------------


@pytest.mark.parametrize("option,value", [("--n-head", "0"), ("--n-layer", "-1"), ("--n-layer", "0"),
                                          ("--n-embd", "0"), ("--block-size", "0")])
def test_gpt_sizes_below_one(cli, tmp_path, option, value):
    name = option[2:].replace("-", "_")
    assert_error(refused(cli, tmp_path, option, value), f"{name} must be at least 1 (got {value})")


@pytest.mark.parametrize("option,value", [("--n-hidden", "-1"), ("--n-hidden", "0"), ("--n-embd", "0"),
                                          ("--block-size", "0")])
def test_mlp_sizes_below_one(cli, tmp_path, option, value):
    name = option[2:].replace("-", "_")
    assert_error(refused(cli, tmp_path, option, value, common=MLP), f"{name} must be at least 1 (got {value})")


def test_a_negative_vocab_size(cli, tmp_path):
    assert_error(refused(cli, tmp_path, "--vocab-size", "-3"), "vocab_size must be at least 0 (got -3)")


def test_model_sizes_from_a_config_file_in_one_line(cli, tmp_path):
    conf = tmp_path / "bad.toml"
    conf.write_text("[model]\nn_layer = -2\nn_head = 0\n")
    assert_error(refused(cli, tmp_path, "--config", conf), "n_layer must be at least 1 (got -2)",
                 "n_head must be at least 1 (got 0)")
    conf.write_text("[model]\nn_hidden = 0\n")
    assert_error(refused(cli, tmp_path, "--config", conf, common=MLP[:4] + MLP[6:]),
                 "n_hidden must be at least 1 (got 0)")


def test_a_gpt_config_with_no_heads_is_made_and_refused_by_check():
    from lmladder import config as conf
    from lmladder.errors import LadderError

    model = conf.GPTConfig(n_head=0)  # no ZeroDivisionError: check() reports it with the rest
    with pytest.raises(LadderError, match="n_head must be at least 1"):
        conf.check(conf.TrainConfig("gpt", model, run=conf.RunConfig(max_steps=1)))


# --- 2. betas ----------------------------------------------------------------------------------


@pytest.mark.parametrize("option,value,message", [
    ("--beta1", "1.5", "beta1 must be in [0, 1) (got 1.5)"),
    ("--beta1", "-0.1", "beta1 must be in [0, 1) (got -0.1)"),
    ("--beta2", "1", "beta2 must be in [0, 1) (got 1.0)"),
    ("--beta2", "nan", "beta2 must be a finite number (got nan)"),
])
def test_betas_outside_zero_to_one(cli, tmp_path, option, value, message):
    assert_error(refused(cli, tmp_path, option, value), message)


# --- 3. seeds ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", ["-1", str(2**63), "99999999999999999999"])
def test_seeds_outside_the_range(cli, tmp_path, seed):
    assert_error(refused(cli, tmp_path, "--seed", seed), f"seed must be in [0, 2**63 - 1] (got {seed})")


def test_the_largest_seed_trains(cli, tmp_path):
    result = cli("train", "tinyshakespeare", *TINY, "--seed", str(2**63 - 1), "--max-steps", "1", "--n-layer", "1",
                 "--eval-interval", "0", "--out", tmp_path / "o")
    assert result.exit_code == 0, result


# --- 4. numbers that are not finite ------------------------------------------------------------


def float_fields():
    from lmladder import config as conf

    for kind, cls in conf.MODEL_CONFIGS.items():
        yield from ((kind, "model", f.name) for f in dataclasses.fields(cls) if conf.field_type(f) is float)
    for section, cls in conf.SECTION_TYPES.items():
        yield from (("gpt", section, f.name) for f in dataclasses.fields(cls) if conf.field_type(f) is float)


@pytest.mark.parametrize("kind,section,name", list(float_fields()))
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_every_float_field_must_be_finite(kind, section, name, value):
    """One message, for that field alone, whatever other rules the value breaks."""
    from lmladder import config as conf
    from lmladder.errors import LadderError

    with pytest.raises(LadderError) as caught:
        conf.resolve(kind, None, None, {section: {name: value}})
    assert str(caught.value) == f"{name} must be a finite number (got {value})"


@pytest.mark.parametrize("option,value", [("--lr", "inf"), ("--weight-decay", "nan"), ("--time-budget", "nan"),
                                          ("--grad-clip", "nan"), ("--checkpoint-seconds", "nan"),
                                          ("--muon-lr", "nan"), ("--min-lr", "-inf"), ("--dropout", "nan")])
def test_options_that_are_not_finite(cli, tmp_path, option, value):
    name = option[2:].replace("-", "_")
    assert_error(refused(cli, tmp_path, option, value), f"{name} must be a finite number (got {value})")


def test_one_message_per_field(cli, tmp_path):
    result = refused(cli, tmp_path, "--lr", "nan", "--min-lr", "nan", "--ema", "nan")
    assert_error(result, "lr must be a finite number", "min_lr must be a finite number", "ema must be a finite")
    assert result.stderr.count(";") == 2, result


def test_a_config_file_nan(cli, tmp_path):
    conf = tmp_path / "nan.toml"
    conf.write_text("[optim]\nweight_decay = nan\n")
    assert_error(refused(cli, tmp_path, "--config", conf), "weight_decay must be a finite number (got nan)")


# --- 5. absurd sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize("option,value,most", [("--max-steps", 10**12 + 1, "1,000,000,000,000"),
                                               ("--max-steps", 99999999999999999999, "1,000,000,000,000"),
                                               ("--max-tokens", 10**16, "1,000,000,000,000,000")])
def test_limits_past_any_run(cli, tmp_path, option, value, most):
    assert_error(refused(cli, tmp_path, option, str(value)), f"{option[2:].replace('-', '_')} must be at most {most}")


@pytest.mark.parametrize("option", ["--max-steps", "--max-tokens", "--token-dropout-steps"])
def test_counts_below_zero(cli, tmp_path, option):
    assert_error(refused(cli, tmp_path, option, "-3"), f"{option[2:].replace('-', '_')} must be >= 0 (got -3)")


def test_the_eta_of_a_run_that_would_never_end():
    from lmladder.train.records import eta_text

    assert eta_text(31.4) == "0:00:31" and eta_text(2 * 86400 + 5) == "2 days, 0:00:05"
    assert eta_text(1e30) == eta_text(math.inf) == eta_text(math.nan) == "over 1,000 years"


def test_progress_line_of_a_huge_run(tmp_path, capsys):
    """The plain progress line of a run of 10**12 steps (the most allowed) that takes an hour a step."""
    from lmladder import config as conf
    from lmladder.train.records import MetricsLog, RunState, TrainingLog

    r = conf.RunConfig(max_steps=10**12)
    run = RunState(step=1)
    log = TrainingLog(MetricsLog(None), RunState(), r, 1, 1.0, None, "cpu", style="lines")
    log.print_line(run, 1.0, 1.0, None, run.fraction_done(r), 3600.0)
    assert "eta over 1,000 years" in capsys.readouterr().err


@pytest.fixture
def memory(monkeypatch):
    """The machine's available memory, as plan.available_memory reports it: set it with memory(n)."""
    from lmladder.train import plan

    def set_to(n):
        monkeypatch.setattr(plan, "available_memory", lambda: n)

    return set_to


def test_a_batch_that_does_not_fit_in_memory(cli, tmp_path, memory):
    memory(2**30)  # 1 GiB; 100,000 windows of 33 int64 ids, and their index: 53 MB; 1,500,000: 792 MB
    assert_error(refused(cli, tmp_path, "--batch-size", "1500000", "--block-size", "32"),
                 "batch_size 1,500,000: its windows of 33 token ids need about 0.7 GiB of memory, more than half of "
                 "the 1.0 GiB this machine has available; lower --batch-size or --block-size")
    from lmladder import config as conf
    from lmladder.train.plan import machine_problems

    cfg = conf.resolve("gpt", "gpt-tiny", None, {"optim": {"batch_size": 100_000}})
    assert machine_problems(cfg) == []
    memory(None)  # no /proc/meminfo: nothing checked
    assert machine_problems(conf.resolve("gpt", "gpt-tiny", None, {"optim": {"batch_size": 10**9}})) == []


def test_the_real_batch_of_the_audit_is_refused(cli, tmp_path):
    from lmladder.train.plan import available_memory

    available = available_memory()
    if available is None or available > 2 * 49 * 2**30:
        pytest.skip("no MemAvailable here, or room for 100,000,000 windows")
    assert_error(refused(cli, tmp_path, "--batch-size", "100000000", "--block-size", "32"), "batch_size 100,000,000",
                 "GiB this machine has available")


def test_available_memory_reads_meminfo():
    from lmladder.runtime import available_memory

    if not Path("/proc/meminfo").is_file():
        assert available_memory() is None
    else:
        assert available_memory() > 0


def test_a_model_that_does_not_fit_in_memory_on_a_cpu(cli, tmp_path, memory):
    memory(2**30)
    assert_error(refused(cli, tmp_path, "--n-embd", "4096", "--n-head", "2"),
                 "this model's weights, gradients and optimizer state need about", "train a smaller model")


def test_threads_past_the_machine(cli, tmp_path, monkeypatch):
    from lmladder.train import plan

    cores = plan.usable_cores()
    assert_error(refused(cli, tmp_path, "--threads", "100000"),
                 f"threads must be at most {4 * cores}, 4 x the {cores} usable cores of this machine (got 100000)")
    monkeypatch.setattr(plan, "usable_cores", lambda: 2)
    assert_error(refused(cli, tmp_path, "--threads", "9"), "threads must be at most 8")
    from lmladder import config as conf

    assert plan.machine_problems(conf.resolve("gpt", "gpt-tiny", None, {"run": {"threads": 8}})) == []


def test_threads_past_the_machine_on_resume(cli, tmp_path, monkeypatch):
    from lmladder.train import plan

    out = tmp_path / "run"
    assert cli("train", "tinyshakespeare", *TINY, "--max-steps", "1", "--eval-interval", "0", "--n-layer", "1",
               "--out", out).exit_code == 0
    monkeypatch.setattr(plan, "usable_cores", lambda: 1)
    assert_error(cli("train", "tinyshakespeare", "--resume", out, "--max-steps", "2", "--threads", "5"),
                 "threads must be at most 4")


# --- 6. a run that fails before its first checkpoint leaves no folder --------------------------

DIVERGES = ("--lr", "1e30", "--grad-clip", "0", "--warmup-steps", "0", "--max-steps", "40", "--log-interval", "1",
            "--n-layer", "1")


def test_a_run_that_diverges_at_once_leaves_no_folder(cli, tmp_path):
    out = tmp_path / "nan"
    result = cli("train", "tinyshakespeare", *TINY, *DIVERGES, "--out", out)
    assert result.exit_code == 1, result
    assert "error: the training loss became nan" in result.stderr and "No checkpoint was saved" in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".nan*"))


def test_the_folders_a_failed_run_made_above_its_out_go_too(cli, tmp_path):
    """--out a/b/nan where only tmp_path was there: a/ and a/b/ go with nan/, after a run that
    diverged and after one refused before training; a folder above that holds anything stays."""
    out = tmp_path / "a" / "b" / "nan"
    assert cli("train", "tinyshakespeare", *TINY, *DIVERGES, "--out", out).exit_code == 1
    assert tmp_path.is_dir() and not (tmp_path / "a").exists()
    assert_error(cli("train", "no-such-corpus", *TINY, "--out", out), "no-such-corpus")
    assert not (tmp_path / "a").exists()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "keep.txt").write_text("mine")
    assert cli("train", "tinyshakespeare", *TINY, *DIVERGES, "--out", out).exit_code == 1
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["keep.txt"]


def test_a_folder_that_was_there_is_kept_and_emptied(cli, tmp_path):
    out = tmp_path / "nan"
    out.mkdir()
    assert cli("train", "tinyshakespeare", *TINY, *DIVERGES, "--out", out).exit_code == 1
    assert out.is_dir() and list(out.iterdir()) == []


def test_a_run_replaced_with_force_keeps_its_folder(cli, tmp_path):
    out = tmp_path / "run"
    assert cli("train", "tinyshakespeare", *TINY, "--max-steps", "1", "--eval-interval", "0", "--n-layer", "1",
               "--out", out).exit_code == 0
    assert cli("train", "tinyshakespeare", *TINY, *DIVERGES, "--force", "--out", out).exit_code == 1
    assert out.is_dir() and list(out.iterdir()) == []  # the run it replaced is gone, as --force said


@pytest.fixture
def fail_at(monkeypatch):
    """Make the training step raise `error` at its `step`-th call (1-based)."""
    from lmladder.train import step as train_step

    def arm(step: int, error: BaseException):
        real, calls = train_step.TrainStep.__call__, []

        def failing(self, *args):
            calls.append(1)
            if len(calls) == step:
                raise error
            return real(self, *args)

        monkeypatch.setattr(train_step.TrainStep, "__call__", failing)

    return arm


def test_any_failure_before_a_checkpoint_leaves_no_folder(cli, tmp_path, fail_at):
    fail_at(2, RuntimeError("out of something"))
    out = tmp_path / "run"
    result = cli("train", "tinyshakespeare", *TINY, "--n-layer", "1", "--out", out)
    assert result.exit_code == 1 and "out of something" in result.stderr, result
    assert not out.exists()


def test_a_failure_after_a_checkpoint_keeps_the_folder(cli, tmp_path, fail_at):
    fail_at(3, RuntimeError("out of something"))
    out = tmp_path / "run"
    result = cli("train", "tinyshakespeare", *TINY, "--n-layer", "1", "--checkpoint-interval", "1", "--out", out)
    assert result.exit_code == 1, result
    assert (out / "latest").is_dir() and (out / "lmladder.json").is_file()


def test_a_failure_on_resume_keeps_the_folder(cli, tmp_path, fail_at):
    out = tmp_path / "run"
    assert cli("train", "tinyshakespeare", *TINY, "--max-steps", "1", "--eval-interval", "0", "--n-layer", "1",
               "--out", out).exit_code == 0
    fail_at(1, RuntimeError("out of something"))
    assert cli("train", "tinyshakespeare", "--resume", out, "--max-steps", "3").exit_code == 1
    assert (out / "latest").is_dir() and (out / "lmladder.json").is_file()


def test_ctrl_c_keeps_the_folder(cli, tmp_path, fail_at):
    """A Ctrl-C is not a failure: what the run wrote stays, as the interrupted run's."""
    fail_at(2, KeyboardInterrupt())
    out = tmp_path / "run"
    result = cli("train", "tinyshakespeare", *TINY, "--n-layer", "1", "--out", out)
    assert result.exit_code == 130, result
    assert (out / "lmladder.json").is_file()


# --- 7. a folder as --config -------------------------------------------------------------------


def test_a_folder_as_config(cli, tmp_path):
    assert_error(refused(cli, tmp_path, "--config", tmp_path), f"config file {tmp_path} is a folder, not a TOML file")
