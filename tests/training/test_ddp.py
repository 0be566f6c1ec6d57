"""The built-in trainer under real torchrun, 2 processes with gloo: MLflow, exact resume, preemption.

One uninterrupted run (the reference) is compared with runs that are killed, preempted or cut into
segments and then resumed: same seed, same world, so the final weights must be bitwise equal.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from cajajejo import __version__
from cajajejo.checkpoints import CheckpointDir
from tests.support import MlflowServer
from tests.training.launch import (
    CONFIG_SHA,
    EXPERIMENT,
    assert_bitwise_equal,
    final_weights,
    job_env,
    kill_job,
    lines,
    published_step,
    rank_of,
    run_torchrun,
    start_torchrun,
    training_config,
    wait_for,
    workers,
    write_config,
)

TOTAL_STEPS = 64  # 1024 samples / (16 per rank x 2 ranks) = 32 steps per epoch, 2 epochs
STEP_DELAY = 0.05  # slows the runs to be interrupted, so that they are interrupted half-way


@dataclass(frozen=True)
class Reference:
    config: Path
    checkpoints: Path
    output: str
    exit_code: int
    tracking_uri: str


@pytest.fixture(scope="module")
def reference(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """One uninterrupted run, logged to the session's MLflow server."""
    tmp = tmp_path_factory.mktemp("reference")
    config = write_config(tmp / "train.yml", training_config())
    code, output = run_torchrun(config, tmp / "checkpoints", job_env(tmp, mlflow_server.uri))
    return Reference(config, tmp / "checkpoints", output, code, mlflow_server.uri)


def test_an_uninterrupted_run_logs_greppable_lines_and_publishes_the_best_checkpoint(reference: Reference) -> None:
    assert reference.exit_code == 0, reference.output[-3000:]
    output = reference.output
    assert lines(output, "[DDP] world=2 backend=gloo device=cpu")
    train = lines(output, "[TRAIN] epoch=")
    assert train
    assert all("loss=" in line and "lr=" in line and "samples_per_s=" in line for line in train)
    epochs = lines(output, "[EPOCH] ")
    assert [line.split()[1] for line in epochs] == ["epoch=1", "epoch=2"]
    val_losses = [float(line.split("val_loss=")[1].split()[0]) for line in epochs]
    assert val_losses[1] < val_losses[0]  # it learns
    checkpoints = CheckpointDir(reference.checkpoints)
    best = checkpoints.best()
    assert best is not None
    assert best.metadata["val_loss"] == pytest.approx(min(val_losses), abs=1e-4)
    assert lines(output, f"[DONE] steps={TOTAL_STEPS} best={best.name}")
    assert checkpoints.completion() is not None
    names = [c.name for c in checkpoints.published()]
    assert len(names) <= 3
    assert names[-1] == "step-00000064"


def test_mlflow_has_the_params_per_step_metrics_and_tags(reference: Reference) -> None:
    client = MlflowClient(tracking_uri=reference.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None, reference.output[-3000:]
    latest = CheckpointDir(reference.checkpoints).latest()
    assert latest is not None
    run = client.get_run(latest.metadata["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "ddp"
    params = run.data.params
    assert params["world_size"] == "2"
    assert params["nproc_per_node"] == "2"
    assert params["nnodes"] == "1"
    assert params["backend"] == "gloo"
    assert params["trainer.model.type"] == "classifier"
    assert params["trainer.batch_size"] == "16"
    tags = run.data.tags
    assert tags["cajajejo.kind"] == "training"
    assert tags["config_git_sha"] == CONFIG_SHA
    assert tags["mlflow.source.git.commit"] == CONFIG_SHA
    assert tags["job_name"] == "train-test-job"
    assert tags["config_path_git_repo"] == "jobs/training/test.job_config.yml"
    assert tags["image_build_cajajejo_version"] == __version__
    assert tags["image_tag"] == "test"
    assert tags["team"] == "tests"
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(m.step for m in losses) == list(range(1, TOTAL_STEPS + 1))  # one value per step
    by_step = {m.step: m.value for m in losses}
    assert sum(by_step[s] for s in range(1, 6)) > sum(by_step[s] for s in range(TOTAL_STEPS - 4, TOTAL_STEPS + 1))
    assert len(client.get_metric_history(run.info.run_id, "train/lr")) == TOTAL_STEPS
    assert client.get_metric_history(run.info.run_id, "train/samples_per_s")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")] == [32, 64]


def test_a_run_killed_with_sigkill_resumes_to_bitwise_equal_weights_in_the_same_mlflow_run(
    reference: Reference, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    job = start_torchrun(reference.config, checkpoints, job_env(tmp_path, reference.tracking_uri, STEP_DELAY))
    wait_for(lambda: published_step(checkpoints) >= 20, "a checkpoint at step 20", job)
    kill_job(job)
    killed_at = published_step(checkpoints)
    assert killed_at < TOTAL_STEPS
    assert CheckpointDir(checkpoints).completion() is None
    first = CheckpointDir(checkpoints).latest()
    assert first is not None

    code, output = run_torchrun(reference.config, checkpoints, job_env(tmp_path, reference.tracking_uri))

    assert code == 0, output[-3000:]
    assert lines(output, f"[RESUME] from={first.name}")
    step, weights = final_weights(checkpoints)
    reference_step, reference_weights = final_weights(reference.checkpoints)
    assert step == reference_step == TOTAL_STEPS
    assert_bitwise_equal(weights, reference_weights)
    run_id = first.metadata["mlflow_run_id"]
    latest = CheckpointDir(checkpoints).latest()
    assert latest is not None
    assert latest.metadata["mlflow_run_id"] == run_id
    client = MlflowClient(tracking_uri=reference.tracking_uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert max(m.step for m in client.get_metric_history(run_id, "train/loss")) == TOTAL_STEPS


def test_stop_after_steps_then_sigterm_to_torchrun_each_checkpoint_and_the_segments_add_up(
    reference: Reference, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    code, output = run_torchrun(reference.config, checkpoints, job_env(tmp_path), "--stop-after-steps", "7")
    assert code == 0, output[-3000:]
    assert lines(output, "[STOP] step=7 reason=stop-after-steps=7 checkpoint=step-00000007")
    assert CheckpointDir(checkpoints).completion() is None

    job = start_torchrun(reference.config, checkpoints, job_env(tmp_path, step_delay=STEP_DELAY))
    wait_for(lambda: published_step(checkpoints) >= 15, "a checkpoint at step 15", job)
    job.process.send_signal(signal.SIGTERM)  # torchrun forwards it to its workers, as on a pod's termination
    _, output = job.wait()
    assert lines(output, "[RESUME] from=step-00000007")
    stopped = lines(output, "[STOP] ")
    assert stopped, output[-3000:]
    assert "reason=SIGTERM" in stopped[0]
    step = int(stopped[0].split("step=")[1].split()[0])
    assert 15 <= step < TOTAL_STEPS
    assert published_step(checkpoints) == step
    assert "forcefully exiting" not in output  # the workers ended within torchrun's grace period

    code, output = run_torchrun(reference.config, checkpoints, job_env(tmp_path))
    assert code == 0, output[-3000:]
    assert lines(output, f"[RESUME] from=step-{step:08d}")
    final_step, weights = final_weights(checkpoints)
    assert final_step == TOTAL_STEPS
    assert_bitwise_equal(weights, final_weights(reference.checkpoints)[1])
    state = torch.load(checkpoints / "step-00000064" / "trainer_state" / "state.pt", weights_only=True)
    assert state["progress"]["global_step"] == TOTAL_STEPS


def test_sigusr1_to_one_rank_stops_all_ranks_with_exit_code_0(reference: Reference, tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    job = start_torchrun(reference.config, checkpoints, job_env(tmp_path, step_delay=STEP_DELAY))
    rank_1 = next(pid for pid in workers(job) if rank_of(pid) == 1)
    wait_for(lambda: published_step(checkpoints) >= 5, "a checkpoint at step 5", job)
    os.kill(rank_1, signal.SIGUSR1)  # one worker, not rank 0: the others learn it at the next sync point
    code, output = job.wait()
    assert code == 0, output[-3000:]  # torchrun exits 0 only when every worker did
    stopped = lines(output, "[STOP] ")
    assert stopped, output[-3000:]
    assert "reason=signal-to-another-rank" in stopped[0]
    step = int(stopped[0].split("step=")[1].split()[0])
    assert published_step(checkpoints) == step < TOTAL_STEPS
    assert CheckpointDir(checkpoints).completion() is None
