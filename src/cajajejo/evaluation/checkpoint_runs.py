"""Evaluating a training run's checkpoints: one HELM evaluation per checkpoint, plotted at its step.

Each checkpoint's evaluation is an MLflow run of its own (HELM's params, metrics and artifacts, as
`cajajejo evaluate` logs them), nested under the training run (`mlflow.parentRunId`) in the training
run's experiment, and tagged with the checkpoint's name, step and the evaluator's role. Its metrics
are also logged into the training run itself as `<role>/<metric>` at the checkpoint's step, so the
MLflow UI plots HELM's results against the training step beside `train/loss`.

Once, even when an evaluator dies anywhere in here and another takes the checkpoint over:
- a finished nested run for (training run, checkpoint, role) means the evaluation was done: it is
  not run again, only its metrics are (re)logged into the training run;
- an unfinished one is deleted before the checkpoint is evaluated again, but only when no live
  claim but ours holds (role, checkpoint): its evaluator died, or lost its lease and stopped
  logging into the training run. While another worker's claim is live, its run is left alone and
  the checkpoint is not evaluated here (a `CajajejoError`);
- the metrics in the training run carry the checkpoint's publication time as their timestamp, so
  logging them again writes the very same rows, which MLflow's store keeps once.

HELM runs in this process and cannot be cut short when the watcher's claim is lost (its lease ran
out; see `cajajejo.watch`). So the claim is checked before HELM starts and again right before the
metrics go into the training run; a worker that lost it logs nothing there, and the watcher records
no result for it. Its nested run may stay: finished, a later attempt reuses it; unfinished, it deletes it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cajajejo.checkpoints import Checkpoint, CheckpointDir
from cajajejo.errors import CajajejoError, one_line
from cajajejo.evaluation.model_fetch import ModelFiles, model_files
from cajajejo.evaluation.runner import EvaluationSetup, Progress, evaluate_model
from cajajejo.mlflow_http import talking_to_mlflow

if TYPE_CHECKING:
    from cajajejo.watch import LeaseKeeper, WatchSummary

PARENT_TAG = "mlflow.parentRunId"
CHECKPOINT_TAG = "cajajejo.checkpoint"
STEP_TAG = "cajajejo.checkpoint_step"
ROLE_TAG = "cajajejo.evaluator_role"
BATCH = 900  # MLflow accepts at most 1000 metrics per batch request


@dataclass(frozen=True)
class CheckpointEvaluation:
    """What one checkpoint's evaluation produced: the watcher records it as the checkpoint's result."""

    run_id: str
    step: int
    metrics: Mapping[str, float]
    failed_run_specs: tuple[str, ...]
    reused: bool  # True: a finished evaluation was found in MLflow and not run again

    def result(self) -> dict[str, Any]:
        return {
            "mlflow_run_id": self.run_id,
            "step": self.step,
            "metrics": len(self.metrics),
            "values": dict(self.metrics),
            "failed_run_specs": list(self.failed_run_specs),
            "reused": self.reused,
        }


def watch_and_evaluate(
    setup: EvaluationSetup,
    directory: Path,
    role: str,
    *,
    worker: str | None = None,
    lease_seconds: float = 120.0,
    poll_seconds: float = 0.2,
    only_step: int | None = None,
) -> WatchSummary:
    """Evaluate every checkpoint published in `directory` once for `role`, until training is complete.

    Any number of these may watch one directory (in one role they split the checkpoints between
    them; each role evaluates every checkpoint); see `cajajejo.watch` for claims and leases. With
    `only_step`, only the checkpoint of that step is evaluated (once, by whichever watcher claims it).
    """
    from cajajejo.watch import HandleError, LedgerSource, Watcher, current_lease

    def handle(checkpoint: Checkpoint) -> dict[str, Any]:
        numbered = replace(setup, progress=Progress(total=3))  # model, HELM, MLflow: per checkpoint
        numbered.progress.detail(f"{checkpoint.name} (step {checkpoint.step})")
        try:
            return evaluate_checkpoint(numbered, checkpoint, role, lease=current_lease()).result()
        except CajajejoError as exc:  # MLflow or HELM could not do it: another attempt may, later
            raise HandleError(str(exc)) from exc

    watcher = Watcher(
        LedgerSource(directory),
        role,
        worker,
        lease_seconds=lease_seconds,
        poll_seconds=poll_seconds,
        only_step=only_step,
    )
    return watcher.run(handle)


def evaluate_checkpoint(
    setup: EvaluationSetup, checkpoint: Checkpoint, role: str, *, lease: LeaseKeeper | None = None
) -> CheckpointEvaluation:
    """Evaluate `checkpoint` with HELM (unless MLflow already has it) and log it at its step.

    `lease`: the watcher's claim on it (None when called by hand: then nobody else's live claim may hold it).
    """
    training_run = _training_run_id(checkpoint)
    with talking_to_mlflow(setup.tracking_uri):
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=setup.tracking_uri)
        experiment = _experiment_name(client, training_run) or setup.config.tracking_config.experiment_name
        done = _finished_evaluation(client, experiment, training_run, checkpoint, role, lease)
    if done is not None:
        evaluation = done
        setup.progress.detail(f"{checkpoint.name}: evaluated before in MLflow run {done.run_id}; not run again")
    else:
        _check_held(lease, checkpoint)
        evaluation = _run_helm(setup, checkpoint, role, training_run, experiment)
    if training_run is not None:
        _check_held(lease, checkpoint)  # HELM took long: the claim may be another worker's by now
        log_into_training_run(setup.tracking_uri, training_run, role, evaluation.metrics, checkpoint)
    return evaluation


def _check_held(lease: LeaseKeeper | None, checkpoint: Checkpoint) -> None:
    if lease is not None and lease.lost:
        raise CajajejoError(f"{checkpoint.name}: the claim was lost (its lease ran out); another worker evaluates it")


def _held_elsewhere(checkpoint: Checkpoint, role: str, lease: LeaseKeeper | None) -> bool:
    """Whether a live claim other than ours holds (role, checkpoint): its unfinished MLflow run is being logged.

    With our claim, any older attempt is over (we took over from it), so only our losing ours counts.
    Without one, the newest claim in the checkpoint's directory counts, live by the wall clock.
    """
    if lease is not None:
        return lease.lost
    newest = CheckpointDir(checkpoint.path.parent).newest_claim(role, checkpoint.name)
    return newest is not None and newest.status(time.time()) == "live"


def _run_helm(
    setup: EvaluationSetup, checkpoint: Checkpoint, role: str, training_run: str | None, experiment: str
) -> CheckpointEvaluation:
    # The run specs name the model as the config does (e.g. `huggingface/model`): keep that name, point it here.
    configured = model_files(setup.config, setup.inputs.scratch_dir)
    model = ModelFiles(checkpoint.path, checkpoint.path, configured.helm_name)
    tags = {CHECKPOINT_TAG: checkpoint.name, STEP_TAG: str(checkpoint.step), ROLE_TAG: role}
    if training_run is not None:
        tags[PARENT_TAG] = training_run
    config = setup.config.model_copy(
        update={"tracking_config": setup.config.tracking_config.model_copy(update={"experiment_name": experiment})}
    )
    result = evaluate_model(
        EvaluationSetup(setup.inputs, config, setup.run_spec_count, setup.tracking_uri, setup.local, setup.progress),
        model,
        setup.inputs.scratch_dir / "helm" / role / checkpoint.name,
        tags=tags,
        run_name=f"{role} {checkpoint.name}",
        step=checkpoint.step,
    )
    failed = tuple(f.name for f in result.failed)
    return CheckpointEvaluation(result.run_id, checkpoint.step, dict(result.metrics), failed, reused=False)


def _training_run_id(checkpoint: Checkpoint) -> str | None:
    run_id = checkpoint.metadata.get("mlflow_run_id")
    return run_id if isinstance(run_id, str) and run_id else None


def _experiment_name(client: Any, training_run: str | None) -> str | None:
    """The training run's experiment: nested runs show under their parent only within one experiment."""
    if training_run is None:
        return None
    from mlflow.exceptions import MlflowException

    try:
        experiment_id = client.get_run(training_run).info.experiment_id
        return str(client.get_experiment(experiment_id).name)
    except MlflowException as exc:
        raise CajajejoError(
            f"checkpoint's training run {training_run} is not in MLflow at {client.tracking_uri}: "
            f"give the evaluator the trainer's tracking URI ({one_line(exc, 200)})"
        ) from exc


def _finished_evaluation(
    client: Any,
    experiment: str,
    training_run: str | None,
    checkpoint: Checkpoint,
    role: str,
    lease: LeaseKeeper | None = None,
) -> CheckpointEvaluation | None:
    """This checkpoint's finished evaluation in MLflow; deletes unfinished ones (their evaluator died or lost).

    Raises CajajejoError, deleting nothing, when an unfinished one may be a live claim's (`_held_elsewhere`).
    """
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    # Only the step, an integer, goes into the query; names are compared here, so no string of a
    # checkpoint, role or run ever has to be escaped for MLflow's filter language.
    query = f"tags.`{STEP_TAG}` = '{int(checkpoint.step)}'"
    wanted = {CHECKPOINT_TAG: checkpoint.name, ROLE_TAG: role, PARENT_TAG: training_run}
    runs = [
        run
        for run in client.search_runs([found.experiment_id], filter_string=query, max_results=1000)
        if all(run.data.tags.get(key) == value for key, value in wanted.items())
    ]
    finished = None
    for run in runs:
        if run.info.status in ("FINISHED", "FAILED") and finished is None:
            failed = run.data.tags.get("cajajejo.failed_run_specs", "")
            finished = CheckpointEvaluation(
                run.info.run_id,
                checkpoint.step,
                dict(run.data.metrics),
                tuple(name for name in failed.split(",") if name),
                reused=True,
            )
        elif run.info.status not in ("FINISHED", "FAILED"):
            _delete_unfinished(client, run.info.run_id, checkpoint, role, lease)
    return finished


def _delete_unfinished(client: Any, run_id: str, checkpoint: Checkpoint, role: str, lease: LeaseKeeper | None) -> None:
    if _held_elsewhere(checkpoint, role, lease):
        raise CajajejoError(
            f"{checkpoint.name}: MLflow run {run_id} is still being logged under a live claim of role {role}: "
            "left alone, and not evaluated again here"
        )
    client.delete_run(run_id)


def log_into_training_run(
    tracking_uri: str, training_run: str, role: str, metrics: Mapping[str, float], checkpoint: Checkpoint
) -> None:
    """The checkpoint's metrics in the training run, as `<role>/<metric>` at its step (idempotent)."""
    timestamp = int(checkpoint.time * 1000)  # fixed per checkpoint: logging again writes identical rows
    with talking_to_mlflow(tracking_uri):
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
        rows = [Metric(f"{role}/{name}", value, timestamp, checkpoint.step) for name, value in sorted(metrics.items())]
        for start in range(0, len(rows), BATCH):
            client.log_batch(training_run, metrics=rows[start : start + BATCH])
