"""lmladder.config and the options of `lmladder train` generated from it: every field has its
help and exactly one option, options reach the resolved config, resolve leaves its inputs alone,
and bad config files fail with one error line. Nothing here trains, so nothing needs torch."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from dataclasses import fields

import pytest

from lmladder import config, registry
from lmladder.errors import LadderError
from tests.conftest import assert_error

CLASSES = (config.GPTConfig, config.MLPConfig, config.OptimConfig, config.DataConfig, config.RunConfig)
OPTIONS = [o for entries in config.option_fields().values() for o in entries]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@pytest.fixture(scope="module")
def help_text() -> str:
    from typer.testing import CliRunner

    from lmladder.cli import app

    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_field_has_help(cls):
    for f in fields(cls):
        assert f.metadata.get("help", "").strip(), (cls.__name__, f.name)


def test_every_settable_field_is_one_option():
    names = [o.name for o in OPTIONS]
    assert len(names) == len(set(names))  # a name in two sections would be ambiguous on the command line
    settable = {f.name for cls in CLASSES for f in fields(cls)} - set(config.HIDDEN_MODEL_FIELDS)
    assert set(names) == settable
    for name in ("block_size", "vocab_size", "n_embd", "dropout"):  # GPT and MLP share these
        types = {f.type for cls in (config.GPTConfig, config.MLPConfig) for f in fields(cls) if f.name == name}
        assert len(types) == 1, name


def test_help_of_a_field_of_one_model_or_both():
    helps = {o.name: o.help for o in OPTIONS}
    assert helps["n_layer"].startswith("GPT: ") and helps["n_hidden"].startswith("MLP: ")
    assert helps["block_size"].startswith("GPT: ") and " MLP: " in helps["block_size"]
    assert helps["dropout"] == config.DROPOUT_HELP


def test_every_field_is_an_option_of_train_help_once(help_text):
    for option in OPTIONS:
        lines = re.findall(rf"^\s+{re.escape(flag(option.name))}(?:\s|$)", help_text, flags=re.MULTILINE)
        assert len(lines) == 1, (option.name, lines)


def test_bool_fields_are_switches(help_text):
    switches = [o for o in OPTIONS if o.type is bool]
    assert {o.name for o in switches} == {"bias", "direct", "compile", "cuda_graph", "fp8", "canonical"}
    for option in switches:
        name = flag(option.name)
        assert re.search(rf"^\s+{name} / --no-{name[2:]}\s", help_text, flags=re.MULTILINE), name


def test_train_help_does_not_import_torch():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom lmladder.cli import app\n"
            "assert CliRunner().invoke(app, ['train', '--help']).exit_code == 0\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"], out.stderr


@pytest.fixture
def resolved(monkeypatch):
    """The config `lmladder train` resolves, kept; the command stops there, before torch."""
    seen = []
    real = config.resolve

    def spy(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        raise LadderError("stopped after resolve")

    monkeypatch.setattr(config, "resolve", spy)
    return seen


def test_options_reach_the_resolved_config(cli, tmp_path, resolved):
    result = cli("train", "tinyshakespeare", "--preset", "gpt-tiny", "--n-layer", "3", "--no-bias",
                 "--lr", "0.002", "--split", "0.8,0.1,0.1", "--seq-len", "16", "--max-steps", "7",
                 "--no-cuda-graph", "--out", tmp_path / "o")
    assert_error(result, "stopped after resolve")
    [cfg] = resolved
    assert cfg.model.n_layer == 3 and cfg.model.bias is False and cfg.model.n_head == 2  # n_head: the preset's
    assert cfg.optim.lr == 0.002 and cfg.optim.warmup_steps == 5
    assert cfg.data.split == "0.8,0.1,0.1" and cfg.data.seq_len == 16
    assert cfg.run.max_steps == 7 and cfg.run.cuda_graph is False and cfg.run.eval_interval == 10


def test_mlp_options_reach_the_resolved_config(cli, tmp_path, resolved):
    assert_error(cli("train", "tinyshakespeare", "--model", "mlp", "--n-hidden", "64", "--no-direct",
                     "--n-embd", "12", "--out", tmp_path / "o"), "stopped after resolve")
    [cfg] = resolved
    assert cfg.model_kind == "mlp" and (cfg.model.n_hidden, cfg.model.direct, cfg.model.n_embd) == (64, False, 12)


def test_resolve_leaves_its_inputs_alone():
    presets = copy.deepcopy(config.PRESETS)
    file_values = {"model": {"n_layer": 1}, "optim": {"lr": 2}}
    options = {"model": {"n_embd": 16}, "run": {"max_steps": 3}}
    given = copy.deepcopy((file_values, options))
    a = config.resolve("gpt", "gpt-tiny", file_values, options)
    b = config.resolve("gpt", "gpt-tiny", file_values, options)
    assert config.PRESETS == presets and (file_values, options) == given
    assert a == b and a.optim.lr == 2.0 and a.model.n_embd == 16
    for section in ("model", "optim", "data", "run"):
        assert getattr(a, section) is not getattr(b, section)
    a.model.vocab_size, a.optim.micro_batch_size, a.run.max_steps = 65, 4, 99  # as prepare() fills them in
    assert (b.model.vocab_size, b.optim.micro_batch_size, b.run.max_steps) == (0, 0, 3)
    assert config.resolve("gpt", "gpt-tiny", None, {}).run.max_steps == config.PRESETS["gpt-tiny"]["run"]["max_steps"]


def test_resumable_options_are_the_fields_marked_so():
    assert config.RESUMABLE == ("lr", "min_lr", "warmup_steps", "schedule", "weight_decay", "muon_lr", "grad_clip",
                                "max_steps", "max_tokens", "time_budget", "eval_interval", "patience", "eval_batch_size",
                                "log_interval", "checkpoint_interval", "checkpoint_seconds", "device", "threads",
                                "compile", "head_loss", "gelu_fusion", "fp8")
    saved = config.resolve("gpt", "gpt-tiny", None, {}).to_dict()
    kept = copy.deepcopy(saved)
    cfg = config.resumed(saved, {"max_steps": 40, "compile": True, "lr": 1e-3})
    assert cfg.run.max_steps == 40 and cfg.run.compile and cfg.optim.lr == 1e-3 and saved == kept
    with pytest.raises(LadderError, match=r"--beta2 cannot change on --resume \(the run has 0.99\); only --lr, "):
        config.resumed(saved, {"beta2": 0.9})
    # the run's own values may be given again (the command that made it, with --resume added)
    again = config.resumed(saved, {"beta2": saved["optim"]["beta2"], "n_layer": saved["model"]["n_layer"]})
    assert again.to_dict() == saved
    # a run saved before a field existed has its default: given again, that is the run's own value
    older = copy.deepcopy(saved)
    del older["data"]["token_dropout_steps"], older["model"]["n_loop"]
    assert config.resumed(older, {"token_dropout_steps": 0, "n_loop": 1}).to_dict() == saved
    with pytest.raises(LadderError, match=r"--token-dropout-steps cannot change on --resume \(the run has 0\)"):
        config.resumed(older, {"token_dropout_steps": 5})


def test_model_kinds_agree_with_the_registry():
    assert config.MODEL_KINDS == registry.NEURAL == tuple(config.MODEL_CONFIGS)
    assert set(registry.TRAIN_MODELS) == set(registry.BASELINES) | set(registry.NEURAL)
    assert not set(registry.BASELINES) & set(registry.NEURAL)
    assert {p["model_kind"] for p in config.PRESETS.values()} <= set(config.MODEL_KINDS)
    assert set(config.DEFAULT_PRESET) == set(config.MODEL_KINDS)


@pytest.mark.parametrize("text,message", [
    ("[run]\nmax_step = 3\n", "unknown config key [run] max_step (valid: max_steps,"),
    ("[model]\nn_layer = '3'\n", "[model] n_layer must be an int (got '3')"),
    ("[model]\nbias = 1\n", "[model] bias must be a bool (got 1)"),
    ("[data]\nsplit = 0.9\n", "[data] split must be a str"),
    ("[model]\nn_hidden = 8\n", "unknown config key [model] n_hidden"),  # an MLP's, not a GPT's
    ("[optim]\nlr = 'fast'\nbeta3 = 0.9\n", "lr must be a float"),
])
def test_bad_config_file(cli, tmp_path, text, message):
    conf = tmp_path / "bad.toml"
    conf.write_text(text)
    assert_error(cli("train", "tinyshakespeare", "--preset", "gpt-tiny", "--config", conf, "--out", tmp_path / "o"),
                 message)
    assert not (tmp_path / "o").exists()


def test_every_problem_of_a_config_file_in_one_line(cli, tmp_path):
    conf = tmp_path / "bad.toml"
    conf.write_text("[optim]\nlr = 'fast'\nbeta3 = 0.9\n[run]\nseed = 1.5\n")
    assert_error(cli("train", "tinyshakespeare", "--preset", "gpt-tiny", "--config", conf, "--out", tmp_path / "o"),
                 "lr must be a float", "unknown config key [optim] beta3", "seed must be an int")


@pytest.mark.parametrize("model", ["gpt", "unigram"])
def test_a_bad_split_fails_before_any_work(cli, tmp_path, model):
    assert_error(cli("train", "tinyshakespeare", "--model", model, "--split", "0.9,0.2", "--out", tmp_path / "o"),
                 "split '0.9,0.2' must have three parts")
    assert not (tmp_path / "o").exists()
