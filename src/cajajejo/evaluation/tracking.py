"""One MLflow run per evaluation: the seed's tags, the config's tags, HELM settings, metrics, artifacts.

Everything is logged after HELM has finished, in one go, so an MLflow outage never costs an
evaluation: MLflow's own HTTP retries (bounded in `mlflow_http`) ride out short outages, and a
longer one ends with a message that says where the results are on disk.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cajajejo.config.evaluation import EvaluationJobConfig
from cajajejo.errors import CajajejoError, one_line
from cajajejo.evaluation.inputs import RuntimeInputs
from cajajejo.mlflow_http import talking_to_mlflow
from cajajejo.run_tags import Stamps, provenance_tags
from cajajejo.run_tags import run_tags as shared_run_tags
from cajajejo.run_tags import user_tags as user_tags  # moved to run_tags; still importable from here

T = TypeVar("T")
BATCH = 900  # MLflow accepts at most 1000 metrics per batch request
MAX_PARAM_LENGTH = 500


@dataclass(frozen=True)
class EvaluationRecord:
    """What goes into the MLflow run, gathered before MLflow is contacted."""

    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    artifacts: tuple[tuple[str, Path], ...]  # (artifact folder, local file or folder)
    run_name: str
    experiment_name: str
    failed: bool
    step: int = 0  # of every metric: a checkpoint's training step, 0 for a model outside training


def seed_tags(config: EvaluationJobConfig, inputs: RuntimeInputs) -> dict[str, str]:
    """The 14 tags of the original tool, under their original names: the shared ones and the model's, HELM's."""
    artifact = config.model.mlflow_artifact
    return {
        **provenance_tags(config, stamps_of(inputs)),
        "helm_config_path_git_repo": inputs.helm_config_path_in_repo,
        "model_run_id": str(artifact.run_id if artifact else None),
        "model_artifact_path": str(artifact.artifact_path if artifact else None),
        "model_gs_uri": str(config.model.gs_uri),
        "helm_args": " ".join(config.helm.args),
    }


def stamps_of(inputs: RuntimeInputs) -> Stamps:
    return Stamps(inputs.config_version, inputs.config_path_in_repo, inputs.job_name)


def helm_params(config: EvaluationJobConfig, run_spec_count: int, helm_name: str) -> dict[str, str]:
    """HELM settings as params: the suite, each `--option value` of helm.args, and the model name."""
    params = {"helm.suite": config.helm.suite, "helm.run_specs": str(run_spec_count), "helm.model": helm_name}
    args = list(config.helm.args)
    for index, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        option, has_value, value = arg[2:].partition("=")
        if not has_value:
            following = args[index + 1] if index + 1 < len(args) else None
            value = following if following is not None and not following.startswith("--") else "true"
        params[f"helm.{option.replace('-', '_')}"] = value[:MAX_PARAM_LENGTH]
    return params


def log_evaluation(record: EvaluationRecord, tracking_uri: str, results_dir: Path) -> str:
    """Create the run and log everything; returns the run id."""
    with talking_to_mlflow(tracking_uri):
        return _log_evaluation(record, tracking_uri, results_dir)


def _log_evaluation(record: EvaluationRecord, tracking_uri: str, results_dir: Path) -> str:
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        experiment = client.get_experiment_by_name(record.experiment_name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(record.experiment_name)
        run = client.create_run(experiment_id, run_name=record.run_name, tags=record.tags)
        run_id = run.info.run_id
        params = [Param(k, v) for k, v in record.params.items()]
        client.log_batch(run_id, params=params)
        timestamp = int(run.info.start_time)
        metrics = [Metric(k, v, timestamp, record.step) for k, v in sorted(record.metrics.items())]
        for chunk in _chunks(metrics, BATCH):
            client.log_batch(run_id, metrics=chunk)
        for folder, path in record.artifacts:
            if path.is_dir():
                client.log_artifacts(run_id, str(path), folder)
            else:
                client.log_artifact(run_id, str(path), folder)
        client.set_terminated(run_id, "FAILED" if record.failed else "FINISHED")
    except (MlflowException, OSError) as exc:
        raise CajajejoError(
            f"could not log to MLflow at {tracking_uri}; the evaluation itself finished and its results "
            f"are in {results_dir} ({_short(exc)})"
        ) from exc
    except Exception as exc:  # requests' connection errors arrive wrapped in various types
        if type(exc).__module__.startswith(("requests", "urllib3")):
            raise CajajejoError(
                f"MLflow at {tracking_uri} is unreachable; the evaluation itself finished and its results "
                f"are in {results_dir} ({_short(exc)})"
            ) from exc
        raise
    return str(run_id)


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _short(exc: BaseException) -> str:
    return one_line(getattr(exc, "message", None) or exc, 300)


def run_tags(config: EvaluationJobConfig, inputs: RuntimeInputs, extra: Mapping[str, str]) -> dict[str, str]:
    """All tags of the run: the config's, then cajajejo's (which the config may not override)."""
    return shared_run_tags(config, stamps_of(inputs), {**seed_tags(config, inputs), **extra})
