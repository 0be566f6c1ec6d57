"""`python -m cajajejo.training`: bad input is one line and exit 2; the package imports nothing heavy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cajajejo.config.training import TrainingJobConfig
from cajajejo.run_tags import run_tags, stamps_from_env
from cajajejo.training import main
from cajajejo.training.command import load_config
from cajajejo.training.data import SampleOrder
from cajajejo.training.sync import StepSync, StopRequests
from cajajejo.training.trainer import Trainer, TrainingOptions
from cajajejo.training.world import join_world
from tests.training.launch import CONFIG_SHA, training_config, write_config


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


def test_a_missing_config_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(capsys, "--config", str(tmp_path / "nope.yml"))
    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("error: ")
    assert "nope.yml" in err


def test_an_invalid_config_names_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = training_config()
    config["training"]["trainer"]["epochs"] = 0
    code, err = run_main(capsys, "--config", str(write_config(tmp_path / "bad.yml", config)))
    assert code == 2
    assert "training.trainer.epochs" in err


def test_a_script_config_is_refused_by_the_built_in_trainer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = training_config()
    del config["training"]["trainer"]
    config["training"]["script"] = {"path": "/app/src/train.py"}
    code, err = run_main(capsys, "--config", str(write_config(tmp_path / "script.yml", config)))
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "training.script" in err
    assert "built-in trainer runs only training.trainer" in err


@pytest.mark.parametrize("args", [["--max-steps", "0"], ["--stop-after-steps", "x"], ["--bogus"], []])
def test_bad_options_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    config = write_config(tmp_path / "ok.yml", training_config())
    code, err = run_main(capsys, *(["--config", str(config)] if args else []), *args)
    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("error: python -m cajajejo.training: ")


def test_too_little_data_for_one_step_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = training_config(batch_size=4096)
    code, err = run_main(
        capsys, "--config", str(write_config(tmp_path / "big.yml", config)), "--checkpoint-dir", str(tmp_path)
    )
    assert code == 2
    assert "training.trainer.batch_size" in err


def test_max_steps_past_the_end_of_training_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A workflow's segment asks for its end step: a config that cannot reach it would end early, quietly.
    config = write_config(tmp_path / "short.yml", training_config())
    code, err = run_main(capsys, "--config", str(config), "--checkpoint-dir", str(tmp_path), "--max-steps", "100000")
    assert code == 2
    (line,) = err.strip().splitlines()[-1:]
    assert "training.trainer.epochs: --max-steps 100000 is past the end of training: " in line
    assert line.endswith("; raise epochs")


def test_importing_the_package_imports_no_heavy_library() -> None:
    probe = "import json, sys, cajajejo.training; print(json.dumps(sorted(sys.modules)))"
    modules = json.loads(
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    )
    assert [m for m in modules if m.split(".")[0] in ("torch", "transformers", "mlflow", "tokenizers")] == []


def test_every_rank_takes_its_own_slice_of_one_global_order_and_a_resume_skips_what_was_done() -> None:
    ranks = [SampleOrder(num_samples=100, batch_size=4, world_size=3, rank=r, seed=5) for r in range(3)]
    assert ranks[0].steps_per_epoch == 8  # 100 // 12: the incomplete last global batch is dropped
    for step in range(8):
        batch = torch.cat([order.indices(epoch=1, step_in_epoch=step) for order in ranks])
        assert torch.equal(batch, ranks[0].permutation(1)[step * 12 : (step + 1) * 12])
    assert not torch.equal(ranks[0].permutation(0), ranks[0].permutation(1))
    assert torch.equal(ranks[0].permutation(1), SampleOrder(100, 4, 3, 0, seed=5).permutation(1))
    assert ranks[0].resume_step(samples_done=36) == 3
    assert SampleOrder(100, 4, 2, 0, seed=5).resume_step(samples_done=36) == 4  # another world: no sample skipped


def test_training_runs_carry_the_shared_provenance_tags() -> None:
    config = TrainingJobConfig.model_validate(training_config())
    stamps = stamps_from_env({"CONFIG_VERSION": CONFIG_SHA + "-dirty", "JOB_NAME": "train-x"}, "jobs/t.yml")
    tags = run_tags(config, stamps, {"cajajejo.kind": "training"})
    assert tags["config_git_sha"] == CONFIG_SHA + "-dirty"
    assert tags["mlflow.source.git.commit"] == CONFIG_SHA
    assert tags["config_path_git_repo"] == "jobs/t.yml"  # unset in the environment: the path it was given
    assert tags["job_name"] == "train-x"
    assert tags["accelerator"] == "None"
    assert tags["cpu"] == "2"
    assert tags["team"] == "tests"
    assert tags["cajajejo.kind"] == "training"
    assert stamps_from_env({}, "c.yml").config_version == "unversioned"


def learning_rates(trainer: Trainer, steps: int) -> list[float]:
    """The learning rate each of the next `steps` steps uses, driving the trainer's own loop body."""
    sync = StepSync(trainer.world, trainer.stops)
    used = []
    for _ in range(steps):
        used.append(trainer.optimizer.param_groups[0]["lr"])
        assert trainer.advance(sync) is None
    return used


def test_the_warmup_rises_linearly_then_holds_and_a_resume_continues_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The scheduler is stepped only while the warmup lasts: the rates and a resume must not notice.
    path = write_config(tmp_path / "warm.yml", training_config(warmup_steps=8, learning_rate=0.01))
    config = load_config(path)
    world = join_world({})

    def trainer(folder: Path) -> Trainer:
        return Trainer(TrainingOptions(config, str(path), folder), world, StopRequests())

    whole = learning_rates(trainer(tmp_path / "whole"), 12)
    assert whole == pytest.approx([0.01 * step / 8 for step in range(1, 9)] + [0.01] * 4, rel=1e-12)
    first = learning_rates(trainer(tmp_path / "resumed"), 5)  # a checkpoint every 5 steps (the config's every_steps)
    resumed = trainer(tmp_path / "resumed")
    assert resumed.progress.global_step == 5
    assert first + learning_rates(resumed, 7) == whole  # resumed within the warmup
    assert "[RESUME] from=step-00000005" in capsys.readouterr().out


def test_sync_points_double_until_they_come_about_every_target_seconds() -> None:
    # Each sync point costs an all-reduce's latency: about every 2 s (TARGET_SECONDS), not more often.
    now = [0.0]
    sync = StepSync(join_world({}), StopRequests(), clock=lambda: now[0])
    intervals = []
    for _ in range(12):
        steps = 0
        while not sync.due():
            sync.record(torch.tensor(1.0), 0.01)
            now[0] += 0.01  # a step takes 10 ms
            steps += 1
        intervals.append(steps)
        report = sync.exchange()
        assert report.seconds == pytest.approx(steps * 0.01)
    assert intervals == [1, 2, 4, 8, 16, 32, 64, 128] + [200] * 4  # 2 s of 10 ms steps
