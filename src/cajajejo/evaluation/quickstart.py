"""`cajajejo quickstart`: the whole evaluation on a laptop, with no cluster, GPU or network.

It makes (or reuses) a tiny model, logs it to a local MLflow as an artifact exactly like a trained
model would be, writes a job config pointing at that run, and runs `evaluate --local` on HELM's
offline synthetic scenarios (jobs/evaluation/app/debug.conf).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from cajajejo.evaluation.runner import EvaluationResult, evaluate
from cajajejo.evaluation.tiny_model import build_tiny_model

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

MODEL_EXPERIMENT = "quickstart-models"
MODEL_TAG = "cajajejo.quickstart_model"


def local_tracking_uri(workdir: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(workdir / 'mlflow.db').resolve()}"


def log_tiny_model(workdir: Path, tracking_uri: str) -> str:
    """The id of an MLflow run holding the tiny model under artifact path `model` (made once)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = _experiment(client, MODEL_EXPERIMENT, workdir)
    existing = client.search_runs([experiment_id], filter_string=f"tags.`{MODEL_TAG}` = 'true'", max_results=1)
    if existing:
        return str(existing[0].info.run_id)
    model_dir = workdir / "tiny-model"
    if not (model_dir / "model" / "config.json").is_file():
        shutil.rmtree(model_dir, ignore_errors=True)
        build_tiny_model(model_dir)
    run = client.create_run(experiment_id, run_name="tiny-random-gpt2", tags={MODEL_TAG: "true"})
    client.log_artifacts(run.info.run_id, str(model_dir), "model")
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def _experiment(client: MlflowClient, name: str, workdir: Path) -> str:
    """The experiment's id, creating it with its artifacts under `workdir` (not ./mlruns)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = (workdir / "mlartifacts").resolve().as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def write_quickstart_inputs(
    workdir: Path, run_id: str, source_config: Path, source_run_specs: Path
) -> tuple[Path, Path]:
    """The debug config with the model run id filled in, and the debug run specs, in `workdir`."""
    data = yaml.safe_load(source_config.read_text())
    data["model_config"]["mlflow_artifact"]["run_id"] = run_id
    config = workdir / "eval_config.yml"
    config.write_text(
        "# Written by `cajajejo quickstart` from jobs/evaluation/debug.job_config.yml.\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    run_specs = workdir / "run_specs.conf"
    shutil.copyfile(source_run_specs, run_specs)
    return config, run_specs


def quickstart(workdir: Path, source_config: Path, source_run_specs: Path) -> EvaluationResult:
    workdir.mkdir(parents=True, exist_ok=True)
    tracking_uri = local_tracking_uri(workdir)
    from mlflow.tracking import MlflowClient

    data = yaml.safe_load(source_config.read_text())
    _experiment(MlflowClient(tracking_uri=tracking_uri), data["tracking_config"]["experiment_name"], workdir)
    run_id = log_tiny_model(workdir, tracking_uri)
    config, run_specs = write_quickstart_inputs(workdir, run_id, source_config, source_run_specs)
    return evaluate(
        local=True,
        config=config,
        helm_config=run_specs,
        scratch_dir=workdir / "scratch",
        tracking_uri=tracking_uri,
    )
