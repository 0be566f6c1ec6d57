"""Seed 001's workflow on the real local Slurm: `cajajejo workflows train-eval CONFIG --epochs 3
--epoch-steps 10 --steps-per-job-cap 4` with the built-in trainer (a tiny causal LM) and the debug HELM
evaluation, all submitted at once, then followed through `workflows status` and the workflow folder."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.slurm.cluster import SlurmCluster
from tests.slurm.support import EVAL_CONFIG, RUN_SPECS, TRAIN_CONFIG, cajajejo, commit_configs, new_repo
from tests.support import MlflowServer

EPOCHS, EPOCH_STEPS, CAP = 3, 10, 4
METRIC = "simple_mcqa/model-huggingface_model/test/exact_match"


@pytest.fixture(scope="module")
def workflow(
    slurm_cluster: SlurmCluster, mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The workflow, run to its end (module-scoped: it takes a few minutes, the tests read what it left)."""
    root = commit_configs(new_repo(tmp_path_factory.mktemp("workflow-repo")), mlflow_server.uri)
    workdir = slurm_cluster.work_dir / "wf-seed001"
    args = [
        "workflows",
        "train-eval",
        TRAIN_CONFIG,
        *("--epochs", str(EPOCHS), "--epoch-steps", str(EPOCH_STEPS), "--steps-per-job-cap", str(CAP)),
        *("--partition-train", "train", "--partition-eval", "eval"),
        *("--eval-config", EVAL_CONFIG, "--helm-config", RUN_SPECS, "--workdir", str(workdir), "--name", "wf"),
    ]
    dry = cajajejo(*args, "--dry-run", cwd=root)
    assert dry.returncode == 0, dry.stderr
    assert not workdir.exists()
    submitted = cajajejo(*args, cwd=root)
    assert submitted.returncode == 0, submitted.stderr + submitted.stdout
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = cajajejo("workflows", "status", str(workdir), cwd=root)
        assert status.returncode == 0, status.stderr
        if " 12/12 jobs finished" in status.stdout.splitlines()[0]:
            break
        failed = [
            line for line in status.stdout.splitlines() if any(s in line for s in ("FAILED", "CANCELLED", "TIMEOUT"))
        ]
        assert not failed, status.stdout + "\n" + _logs(workdir)
        time.sleep(3)
    else:
        pytest.fail("the workflow did not finish in 15 minutes\n" + status.stdout + _logs(workdir))
    states = slurm_cluster.run(
        "squeue", "--noheader", "--states=all", "--format=%j|%T|%S|%e|%i", check=False
    ).stdout.splitlines()
    times = {line.split("|")[0]: line.split("|") for line in states if line.startswith("wf-")}
    return {
        "root": root,
        "workdir": workdir,
        "dry": dry.stdout,
        "submitted": submitted.stdout,
        "status": status.stdout,
        "times": times,
    }


def _logs(workdir: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((workdir / "logs").glob("*.out")))


def test_the_plan_is_printed_and_all_twelve_jobs_are_submitted_at_once(workflow: dict[str, Any]) -> None:
    dry = workflow["dry"].splitlines()
    assert dry[0].startswith("workflow wf in ")
    assert "9 training jobs, 3 evaluations, 30 steps in all" in dry[0]
    assert "  wf-e1-s0: train steps 11-14 on train after wf-e0-s2" in dry
    assert "  wf-e1-eval: evaluate the checkpoint of step 20 on eval after wf-e1-s2" in dry
    assert dry[-1] == "dry run: nothing written, nothing submitted"
    assert "submitted 12 jobs to Slurm on localhost" in workflow["submitted"]
    record = json.loads((workflow["workdir"] / "workflow.json").read_text())
    assert len(record["slurm_job_ids"]) == 12


def test_every_segment_and_evaluation_completed_and_the_step_count_is_exact(workflow: dict[str, Any]) -> None:
    from cajajejo.checkpoints import CheckpointDir

    times = workflow["times"]
    assert len(times) == 12
    assert {fields[1] for fields in times.values()} == {"COMPLETED"}
    checkpoints = CheckpointDir(workflow["workdir"] / "checkpoints")
    assert checkpoints.latest() is not None
    assert checkpoints.latest().step == EPOCHS * EPOCH_STEPS  # type: ignore[union-attr]
    # Each epoch's last checkpoint was held for its evaluation, and evaluated exactly once.
    results = checkpoints.results("epoch-eval")
    assert sorted(result.value["step"] for result in results.values()) == [10, 20, 30]
    assert {result.status for result in results.values()} == {"ok"}


def test_each_evaluation_ran_beside_the_next_epochs_training(workflow: dict[str, Any]) -> None:
    times = workflow["times"]
    for epoch in range(EPOCHS - 1):
        evaluation_start = times[f"wf-e{epoch}-eval"][2]
        next_epoch_end = times[f"wf-e{epoch + 1}-s2"][3]
        print(
            f"epoch {epoch}: evaluation started {evaluation_start}; epoch {epoch + 1}'s training ended {next_epoch_end}"
        )
        assert evaluation_start < next_epoch_end  # ISO times of one day compare as text


def test_state_json_lists_every_checkpoint_and_metric_file(workflow: dict[str, Any]) -> None:
    workdir = workflow["workdir"]
    state = json.loads((workdir / "state.json").read_text())
    assert state["complete"] is True
    assert state["trained_steps"] == 30
    assert state["metrics_files"] == [str(workdir / "metrics" / f"epoch_{e:03d}.json") for e in range(EPOCHS)]
    on_disk = sorted(p.name for p in (workdir / "checkpoints").glob("step-*"))
    assert [c["name"] for c in state["checkpoints"]] == on_disk
    metrics = json.loads((workdir / "metrics" / "epoch_001.json").read_text())
    assert (metrics["step"], metrics["status"]) == (20, "ok")
    assert METRIC in metrics["result"]["values"]


def test_the_training_run_has_each_step_once_and_the_evaluations_at_their_steps(
    workflow: dict[str, Any], mlflow_server: MlflowServer
) -> None:
    from mlflow.tracking import MlflowClient

    from cajajejo.checkpoints import CheckpointDir

    latest = CheckpointDir(workflow["workdir"] / "checkpoints").latest()
    assert latest is not None
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    run_id = latest.metadata["mlflow_run_id"]
    losses = client.get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in losses) == list(range(1, 31))  # nine jobs, one run, no step twice or lost
    history = client.get_metric_history(run_id, f"epoch-eval/{METRIC}")
    assert sorted(m.step for m in history) == [10, 20, 30]
