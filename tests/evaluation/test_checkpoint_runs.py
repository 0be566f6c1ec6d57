"""A checkpoint's evaluation lands in MLflow once: nested under the training run, plotted at its step.

Against the session's real `mlflow server`; HELM itself is replaced by a stand-in function here (the
group tests run it for real), so these tests show what happens around it: reuse of a finished
evaluation, removal of a half-logged one, and idempotent metrics in the training run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from cajajejo.checkpoints import Checkpoint, CheckpointDir
from cajajejo.errors import CajajejoError
from cajajejo.evaluation import checkpoint_runs
from cajajejo.evaluation.checkpoint_runs import (
    CHECKPOINT_TAG,
    PARENT_TAG,
    ROLE_TAG,
    STEP_TAG,
    evaluate_checkpoint,
)
from cajajejo.evaluation.runner import EvaluationResult, EvaluationSetup, prepare
from cajajejo.watch import LeaseKeeper
from tests.support import DEBUG_EXAMPLE, DEBUG_RUN_SPECS, MlflowServer


@pytest.fixture
def setup(mlflow_server: MlflowServer, tmp_path: Path) -> EvaluationSetup:
    return prepare(
        local=True,
        config=DEBUG_EXAMPLE,
        helm_config=DEBUG_RUN_SPECS,
        scratch_dir=tmp_path / "scratch",
        tracking_uri=mlflow_server.uri,
    )


@pytest.fixture
def client(mlflow_server: MlflowServer) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.uri)


def training_run(client: Any) -> str:
    name = f"training-{time.time_ns()}"
    experiment_id = client.create_experiment(name)
    return str(client.create_run(experiment_id, run_name="trainer").info.run_id)


def checkpoint(tmp_path: Path, run_id: str, step: int = 20) -> Checkpoint:
    folder = tmp_path / f"step-{step:08d}"
    folder.mkdir(exist_ok=True)
    return Checkpoint(f"step-{step:08d}", step, 1, 2.5, 1_790_000_000.25, folder, {"mlflow_run_id": run_id})


def nested_run(client: Any, parent: str, ckpt: Checkpoint, role: str, *, finished: bool) -> str:
    experiment_id = client.get_run(parent).info.experiment_id
    tags = {PARENT_TAG: parent, CHECKPOINT_TAG: ckpt.name, STEP_TAG: str(ckpt.step), ROLE_TAG: role}
    run_id = str(client.create_run(experiment_id, run_name="eval", tags=tags).info.run_id)
    client.log_metric(run_id, "simple_mcqa.exact_match", 0.25, step=ckpt.step)
    if finished:
        client.set_terminated(run_id, "FINISHED")
    return run_id


def fake_helm(calls: list[str], metrics: dict[str, float], seconds: float = 0.0) -> Any:
    def evaluate_model(setup: EvaluationSetup, model: Any, helm_home: Path, **kwargs: Any) -> EvaluationResult:
        calls.append(str(model.model_dir))
        time.sleep(seconds)
        return EvaluationResult("fresh-run", setup.tracking_uri, helm_home, helm_home / "log", (), "cpu", metrics)

    return evaluate_model


def test_a_finished_evaluation_is_reused_and_its_metrics_land_once_at_the_step(
    setup: EvaluationSetup, client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = training_run(client)
    ckpt = checkpoint(tmp_path, parent)
    done = nested_run(client, parent, ckpt, "helm", finished=True)
    calls: list[str] = []
    monkeypatch.setattr(checkpoint_runs, "evaluate_model", fake_helm(calls, {}))

    first = evaluate_checkpoint(setup, ckpt, "helm")
    second = evaluate_checkpoint(setup, ckpt, "helm")  # as a restarted evaluator would

    assert calls == []
    assert (first.run_id, first.reused, second.run_id) == (done, True, done)
    history = client.get_metric_history(parent, "helm/simple_mcqa.exact_match")
    assert [(m.step, m.value, m.timestamp) for m in history] == [(20, 0.25, 1_790_000_000_250)]


def test_a_half_logged_evaluation_is_deleted_and_the_checkpoint_evaluated_again(
    setup: EvaluationSetup, client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = training_run(client)
    ckpt = checkpoint(tmp_path, parent)
    half = nested_run(client, parent, ckpt, "helm", finished=False)
    calls: list[str] = []
    monkeypatch.setattr(checkpoint_runs, "evaluate_model", fake_helm(calls, {"simple_mcqa.exact_match": 0.5}))

    result = evaluate_checkpoint(setup, ckpt, "helm")

    assert calls == [str(ckpt.path)]
    assert (result.run_id, result.reused) == ("fresh-run", False)
    assert client.get_run(half).info.lifecycle_stage == "deleted"
    history = client.get_metric_history(parent, "helm/simple_mcqa.exact_match")
    assert [(m.step, m.value) for m in history] == [(20, 0.5)]


def test_another_role_or_checkpoint_at_the_same_step_is_not_taken_for_this_one(
    setup: EvaluationSetup, client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = training_run(client)
    ckpt = checkpoint(tmp_path, parent)
    other_role = nested_run(client, parent, ckpt, "perplexity", finished=True)
    renamed = Checkpoint("it's-step-20", ckpt.step, 1, None, ckpt.time, ckpt.path, ckpt.metadata)
    other_name = nested_run(client, parent, renamed, "helm", finished=True)
    calls: list[str] = []
    monkeypatch.setattr(checkpoint_runs, "evaluate_model", fake_helm(calls, {"x": 1.0}))

    result = evaluate_checkpoint(setup, ckpt, "helm")

    assert calls == [str(ckpt.path)]
    assert not result.reused
    for run_id in (other_role, other_name):
        assert client.get_run(run_id).info.lifecycle_stage == "active"


def test_an_unfinished_run_under_another_workers_live_claim_is_left_alone_and_not_evaluated_again(
    setup: EvaluationSetup, client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = training_run(client)
    ckpt = checkpoint(tmp_path, parent)
    assert CheckpointDir(tmp_path).claim(ckpt.name, role="helm", worker="other", lease_seconds=600) is not None
    running = nested_run(client, parent, ckpt, "helm", finished=False)  # the other worker is logging it
    calls: list[str] = []
    monkeypatch.setattr(checkpoint_runs, "evaluate_model", fake_helm(calls, {"x": 1.0}))

    with pytest.raises(CajajejoError, match="live claim"):
        evaluate_checkpoint(setup, ckpt, "helm")

    assert calls == []
    assert client.get_run(running).info.lifecycle_stage == "active"


def test_a_worker_whose_lease_ran_out_during_helm_logs_nothing_into_the_training_run(
    setup: EvaluationSetup, client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = training_run(client)
    ckpt = checkpoint(tmp_path, parent)
    directory = CheckpointDir(tmp_path)
    claim = directory.claim(ckpt.name, role="helm", worker="me", lease_seconds=0.5)
    assert claim is not None
    lease = LeaseKeeper(directory, claim, lambda *args, **values: None)  # never renewed: runs out during HELM
    calls: list[str] = []
    monkeypatch.setattr(checkpoint_runs, "evaluate_model", fake_helm(calls, {"x": 1.0}, seconds=0.6))

    with pytest.raises(CajajejoError, match="claim was lost"):
        evaluate_checkpoint(setup, ckpt, "helm", lease=lease)

    assert calls == [str(ckpt.path)]
    assert client.get_metric_history(parent, "helm/x") == []


def test_a_checkpoint_whose_training_run_is_elsewhere_is_a_clear_error(
    setup: EvaluationSetup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint_runs, "evaluate_model", fake_helm([], {}))
    with pytest.raises(CajajejoError, match="give the evaluator the trainer's tracking URI"):
        evaluate_checkpoint(setup, checkpoint(tmp_path, "0" * 32), "helm")
