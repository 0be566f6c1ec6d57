"""An early-stop request under real torchrun (2 processes, gloo): every rank stops after the same step."""

from __future__ import annotations

from pathlib import Path

import pytest

from cajajejo.checkpoints import CheckpointDir
from cajajejo.training import main
from tests.training.launch import (
    job_env,
    lines,
    published_step,
    start_torchrun,
    training_config,
    wait_for,
    write_config,
)

TOTAL_STEPS = 64


def test_a_stop_request_checkpoints_marks_training_complete_and_a_restart_trains_no_further(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "train.yml", training_config())
    checkpoints = tmp_path / "checkpoints"
    job = start_torchrun(config, checkpoints, job_env(tmp_path, step_delay=0.05))
    wait_for(lambda: published_step(checkpoints) >= 5, "a checkpoint at step 5", job)
    directory = CheckpointDir(checkpoints)
    directory.request_stop("val loss plateaued", by="helm-evaluator")

    code, output = job.wait()

    assert code == 0, output[-3000:]  # torchrun exits 0 only when both ranks did: they stopped together
    stopped = lines(output, "[STOP] ")
    assert len(stopped) == 1, output[-3000:]
    assert "reason=stop-request:val_loss_plateaued" in stopped[0]
    step = int(stopped[0].split("step=")[1].split()[0])
    assert 5 <= step < TOTAL_STEPS
    assert f"checkpoint=step-{step:08d}" in stopped[0]
    assert published_step(checkpoints) == step
    completion = directory.completion()
    assert completion is not None
    assert (completion["step"], completion["early_stop"]) == (step, "val_loss_plateaued")
    assert completion["checkpoints"][-1] == f"step-{step:08d}"
    assert lines(output, f"[DONE] steps={step} ")

    # A restart (torchrun's, a new pod) finds the request: it only marks completion again. In this
    # process, as a world of one: torchrun's start-up would double the test's time.
    code = main(["--config", str(config), "--checkpoint-dir", str(checkpoints)])
    output = capsys.readouterr().out
    assert code == 0, output[-3000:]
    assert lines(output, f"[STOP] step={step} reason=stop-request:val_loss_plateaued")
    assert not lines(output, "[TRAIN] ")
    assert published_step(checkpoints) == step
    assert directory.completion() is not None
