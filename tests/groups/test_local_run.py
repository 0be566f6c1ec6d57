"""The debug job group, end to end on this machine: a real trainer and a real HELM evaluator in parallel.

`cajajejo groups run --local jobs/groups/train-eval.debug.group.yml` trains the tiny LM under torchrun
(2 processes, gloo) while `cajajejo evaluate --watch` evaluates each checkpoint with HELM's offline
scenarios; both log to the group's own `mlflow server`. Afterwards every published checkpoint has
exactly one result, exactly one nested evaluation run, and its HELM metrics once in the training run
at its step.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cajajejo.checkpoints import CheckpointDir
from cajajejo.evaluation.checkpoint_runs import CHECKPOINT_TAG, PARENT_TAG, ROLE_TAG
from tests.support import REPO, MlflowServer

GROUP = REPO / "jobs" / "groups" / "train-eval.debug.group.yml"
METRIC = "simple_mcqa/model-huggingface_model/test/exact_match"  # one of HELM's, for every checkpoint


@pytest.fixture(scope="module")
def group_run(tmp_path_factory: pytest.TempPathFactory, mlflow_server: MlflowServer) -> tuple[Path, str]:
    workdir = tmp_path_factory.mktemp("group-run")
    command = [sys.executable, "-m", "cajajejo.cli", "groups", "run", "--local", str(GROUP), "--workdir", str(workdir)]
    result = subprocess.run(
        [*command, "--tracking-uri", mlflow_server.uri], capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return workdir, result.stdout


def test_the_tasks_output_is_prefixed_and_both_end_well(group_run: tuple[Path, str]) -> None:
    workdir, output = group_run
    lines = output.splitlines()
    prefixes = {match[1] for line in lines if (match := re.match(r"\[([a-z0-9-]+)\] ", line))}
    assert prefixes == {"trainer", "evaluator"}
    assert any(line.startswith("[trainer] [DONE] steps=") for line in lines)
    assert any(line.startswith("[evaluator] [WATCH] finished ") and "failed=0" in line for line in lines)
    # Each task's lines, unprefixed, in a log file of its own.
    trainer_log = (workdir / "tasks" / "trainer" / "trainer.log").read_text().splitlines()
    assert trainer_log == [line.removeprefix("[trainer] ") for line in lines if line.startswith("[trainer] ")]
    assert "[WATCH] finished " in (workdir / "tasks" / "evaluator" / "evaluator.log").read_text()


def test_every_checkpoint_is_evaluated_once_and_plotted_at_its_step(
    group_run: tuple[Path, str], mlflow_server: MlflowServer
) -> None:
    from mlflow.tracking import MlflowClient

    workdir, _ = group_run
    checkpoints = CheckpointDir(workdir / "volumes" / "train-eval-debug-ckpts")
    published = checkpoints.published()
    assert len(published) >= 2
    assert checkpoints.completion() is not None
    results = checkpoints.results("evaluator")  # results outlive checkpoints that were pruned after
    assert {c.name for c in published} <= set(results)
    assert {r.status for r in results.values()} == {"ok"}
    steps = sorted(r.value["step"] for r in results.values())

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    training_runs = {c.metadata["mlflow_run_id"] for c in published}
    assert len(training_runs) == 1
    training_run = training_runs.pop()
    experiment_id = client.get_run(training_run).info.experiment_id
    nested: list[Any] = client.search_runs([experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{training_run}'")
    per_checkpoint = sorted((run.data.tags[CHECKPOINT_TAG], run.data.tags[ROLE_TAG]) for run in nested)
    assert per_checkpoint == [(name, "evaluator") for name in sorted(results)]  # one evaluation each
    assert {run.info.status for run in nested} == {"FINISHED"}
    assert {r.value["mlflow_run_id"] for r in results.values()} == {run.info.run_id for run in nested}

    history = client.get_metric_history(training_run, f"evaluator/{METRIC}")
    assert sorted(m.step for m in history) == steps  # once per checkpoint, at its step
    assert client.get_metric_history(training_run, "train/loss")  # beside the training loss
