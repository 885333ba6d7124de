"""A damaged run folder given to `lmladder train --resume` is refused before any training: one
`error:` line naming what is damaged and what to do, exit code 2, and nothing in the folder
changed (latest/ still at its step, the header byte for byte the same). One tiny run is trained
once for the module; each case damages a copy of it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import MIRROR, assert_error

STEPS = 4  # the tiny run's steps; each resume asks for STEPS + 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(corpus, run folder) of a 4-step GPT run with an evaluation at step 2 (so best/ exists)."""
    from lmladder.cli import app

    root = tmp_path_factory.mktemp("resume-damage")
    corpus = root / "small.txt"
    corpus.write_text("".join(f"line {i} of the small corpus, with words.\n" for i in range(400)))
    mp = pytest.MonkeyPatch()
    for key, value in (("LMLADDER_HOME", root / "home"), ("LMLADDER_MIRROR", MIRROR), ("LMLADDER_OFFLINE", "1"),
                       ("LMLADDER_NO_PROGRESS", "1")):
        mp.setenv(key, str(value))
    try:
        result = CliRunner().invoke(app, ["train", str(corpus), "--model", "gpt", "--preset", "gpt-tiny", "--max-steps",
                                          str(STEPS), "--eval-interval", "2", "--out", str(root / "run")])
    finally:
        mp.undo()
    assert result.exit_code == 0, result.stderr
    assert (root / "run" / "best" / "model.safetensors").is_file()
    return corpus, root / "run"


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def resume_refused(cli, trained, tmp_path, damage, *fragments: str) -> Path:
    """Damage a copy of the run, resume it: one error naming `fragments`, and nothing changed;
    the copy."""
    corpus, source = trained
    run = tmp_path / "run"
    shutil.copytree(source, run)
    damage(run)
    before = snapshot(run)
    assert_error(cli("train", corpus, "--resume", run, "--max-steps", str(STEPS + 2)), *fragments)
    assert snapshot(run) == before  # no training: latest/, the header, metrics.jsonl, best/ as they were
    return run


def latest(change):
    return lambda run: edit(run / "latest" / "lmladder.json", change)


def drop(key):
    return lambda data: data.pop(key)


@pytest.mark.parametrize("damage, fragment", [
    (latest(lambda d: d.update(step="x")), "step 'x'"),
    (latest(lambda d: d.update(step=-5)), "step -5"),
    (latest(drop("rng")), "rng"),
    (latest(lambda d: d["rng"].update(cpu="AAAA")), "random state"),
    (latest(lambda d: d["rng"].update(cpu=7)), "random state"),
    (latest(lambda d: d.update(best_val="x")), "best_val"),
    (latest(lambda d: d.update(tokens=None)), "tokens"),
    (latest(lambda d: d.update(data_position=d["step"] + 1)), "data_position"),
], ids=["step-text", "step-negative", "no-rng", "rng-short", "rng-number", "best-val-text", "tokens-null",
        "data-position"])
def test_a_damaged_checkpoint_state_is_refused(cli, trained, tmp_path, damage, fragment):
    resume_refused(cli, trained, tmp_path, damage, "latest/lmladder.json is damaged", fragment, "restore")


def optimizer(change):
    return lambda run: edit(run / "latest" / "optimizer.json", change)


@pytest.mark.parametrize("damage, fragment", [
    (optimizer(lambda d: d["param_groups"][0].update(lr="x")), "lr"),
    (optimizer(lambda d: d["param_groups"][0].update(betas=[0.9, 2.0])), "betas"),
    (optimizer(lambda d: d["param_groups"][0].update(params=["a"])), "params"),
    (optimizer(lambda d: d["state"]["0"].update(step="x")), "state of parameter 0"),
    (optimizer(lambda d: d["param_groups"].pop()), "param_groups"),
], ids=["lr-text", "beta-above-1", "params-text", "step-text", "a-group-less"])
def test_a_damaged_optimizer_state_is_refused(cli, trained, tmp_path, damage, fragment):
    resume_refused(cli, trained, tmp_path, damage, "optimizer.json is damaged", fragment, "restore")


def test_metrics_that_are_a_folder_are_refused(cli, trained, tmp_path):
    def damage(run):
        (run / "metrics.jsonl").unlink()
        (run / "metrics.jsonl").mkdir()

    resume_refused(cli, trained, tmp_path, damage, "metrics.jsonl is not a file", "move it out of the way")


@pytest.mark.parametrize("damage", [
    lambda run: (run / "best" / "lmladder.json").unlink(),
    lambda run: (run / "best" / "lmladder.json").write_text("{not json"),
    lambda run: (shutil.rmtree(run / "best"), (run / "best").write_text("x")),
], ids=["no-header", "header-not-json", "a-file"])
def test_a_damaged_best_folder_is_refused_before_training(cli, trained, tmp_path, damage):
    """Before the fix the run trained, then failed at its first best/ with latest/ moved on. The
    error's advice, deleting best/, makes the run resume, its header naming weights it has."""
    run = resume_refused(cli, trained, tmp_path, damage, "best", "is damaged", "delete it")
    (run / "best").unlink() if (run / "best").is_file() else shutil.rmtree(run / "best")
    assert cli("train", trained[0], "--resume", run, "--max-steps", str(STEPS + 2)).exit_code == 0
    header = json.loads((run / "lmladder.json").read_text())
    assert header["status"] == "trained" and header["step"] == STEPS + 2 and (run / header["weights"]).is_file()


def test_a_damaged_metrics_row_is_dropped_not_a_crash(cli, trained, tmp_path):
    corpus, source = trained
    run = tmp_path / "run"
    shutil.copytree(source, run)
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"step": "x"}\n[1, 2]\n')
    assert cli("train", corpus, "--resume", run, "--max-steps", str(STEPS + 2)).exit_code == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(isinstance(row, dict) and isinstance(row.get("step", 0), int) for row in rows)


def header(change):
    return lambda run: edit(run / "lmladder.json", change)


def model(**values):
    return header(lambda d: d["config"]["model"].update(values))


CONFIG_DAMAGE = [(header(drop("config")), "config"), (model(n_head=3), "n_head"), (model(position="weird"), "weird"),
                 (model(dropout="x"), "dropout"), (model(n_embd=-1), "n_embd"), (model(n_hidden=7), "n_hidden")]
CONFIG_IDS = ["no-config", "n-head", "position", "dropout-text", "n-embd-negative", "unknown-key"]


@pytest.mark.parametrize("damage, fragment", CONFIG_DAMAGE, ids=CONFIG_IDS)
def test_a_damaged_run_config_is_refused_by_resumed_config(trained, tmp_path, damage, fragment):
    """lmladder.train.plan.resumed_config, the check the resumed run's config goes through."""
    from lmladder.artifacts import read_header
    from lmladder.errors import LadderError
    from lmladder.train.plan import resumed_config

    run = tmp_path / "run"
    shutil.copytree(trained[1], run)
    assert resumed_config(run, read_header(run, "lmladder-model"), {}).model.n_head > 0  # undamaged: read
    damage(run)
    with pytest.raises(LadderError) as caught:
        resumed_config(run, read_header(run, "lmladder-model"), {"lr": 0.001})
    assert "lmladder.json" in str(caught.value) and "damaged" in str(caught.value) and fragment in str(caught.value)


@pytest.mark.parametrize("damage, fragment", CONFIG_DAMAGE, ids=CONFIG_IDS)
def test_a_damaged_run_config_is_refused_on_resume(cli, trained, tmp_path, damage, fragment):
    resume_refused(cli, trained, tmp_path, damage, "lmladder.json", "damaged", fragment)


@pytest.mark.parametrize("damage, fragment", [
    (model(n_loop=2), "n_loop (2 against 1)"),  # not in the weights' shapes: nothing else would catch it
    (latest(lambda d: d["config"]["model"].update(n_loop=3)), "n_loop (1 against 3)"),
    (header(lambda d: d["config"]["data"].update(input_noise=0.5)), "input_noise (0.5 against 0.0)"),
    (header(lambda d: d["config"]["optim"].update(beta1=0.5)), "beta1"),
], ids=["header-n-loop", "latest-n-loop", "input-noise", "beta1"])
def test_a_run_whose_header_and_checkpoint_disagree_is_refused(cli, trained, tmp_path, damage, fragment):
    """The run's lmladder.json (what a resume reads) and latest/lmladder.json (what its weights were
    trained with) must agree on every field a resume may not change."""
    resume_refused(cli, trained, tmp_path, damage, "latest", "disagree", fragment, "edited")


def test_a_resume_that_changed_the_schedule_resumes_again(cli, trained, tmp_path):
    """The fields --resume may change (here --lr) differ between the two until latest/ is saved
    again: no false alarm, on this resume or the next."""
    corpus, source = trained
    run = tmp_path / "run"
    shutil.copytree(source, run)
    for steps, lr in ((STEPS + 2, "0.001"), (STEPS + 4, "0.0005")):
        result = cli("train", corpus, "--resume", run, "--max-steps", str(steps), "--lr", lr)
        assert result.exit_code == 0, result
        assert json.loads((run / "latest" / "lmladder.json").read_text())["step"] == steps
