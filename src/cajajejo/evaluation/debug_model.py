"""The tiny debug model that `evaluate --local` and the quickstart evaluate when no real model exists yet.

A config whose MLflow model run id is `DEBUG_MODEL_RUN_ID` (32 zeros, as in
jobs/evaluation/debug.job_config.yml) asks for it. With `--local`, the tiny model is built and logged
to the local MLflow once, as a trained model's artifact would be, and the evaluation uses that run;
the config file itself is never rewritten, so its provenance stamp stays the committed file's. In a
job (no `--local`) the id is an ordinary id that MLflow will not find.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from cajajejo.config.evaluation import EvaluationJobConfig, MlflowArtifact
from cajajejo.evaluation.tiny_model import build_tiny_model
from cajajejo.mlflow_http import talking_to_mlflow

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

DEBUG_MODEL_RUN_ID = "0" * 32
MODEL_EXPERIMENT = "quickstart-models"
MODEL_TAG = "cajajejo.quickstart_model"
# Where the tiny model lies inside its MLflow run (build_tiny_model's two folders under `model`).
DEBUG_ARTIFACT = {"artifact_path": "model", "model_directory": "model", "tokenizer_directory": "tokenizer"}


def uses_debug_model(config: EvaluationJobConfig) -> bool:
    artifact = config.model.mlflow_artifact
    return artifact is not None and artifact.run_id == DEBUG_MODEL_RUN_ID


def with_debug_model(config: EvaluationJobConfig, tracking_uri: str, build_dir: Path) -> EvaluationJobConfig:
    """`config` pointing at the tiny model's MLflow run (logged now unless the MLflow already has it)."""
    run_id = log_tiny_model(build_dir, tracking_uri)
    artifact = MlflowArtifact(run_id=run_id, **DEBUG_ARTIFACT)
    model = config.model.model_copy(update={"mlflow_artifact": artifact})
    return config.model_copy(update={"model": model})


def log_tiny_model(build_dir: Path, tracking_uri: str) -> str:
    """The id of an MLflow run holding the tiny model under artifact path `model` (made once per MLflow)."""
    from mlflow.tracking import MlflowClient

    with talking_to_mlflow(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri)
        experiment_id = ensure_experiment(client, MODEL_EXPERIMENT)  # the quickstart creates it first, in its workdir
        existing = client.search_runs([experiment_id], filter_string=f"tags.`{MODEL_TAG}` = 'true'", max_results=1)
        if existing:
            return str(existing[0].info.run_id)
        model_dir = build_dir / "tiny-model"
        if not (model_dir / "model" / "config.json").is_file():
            shutil.rmtree(model_dir, ignore_errors=True)
            build_tiny_model(model_dir)
        run = client.create_run(experiment_id, run_name="tiny-random-gpt2", tags={MODEL_TAG: "true"})
        client.log_artifacts(run.info.run_id, str(model_dir), DEBUG_ARTIFACT["artifact_path"])
        client.set_terminated(run.info.run_id)
        return str(run.info.run_id)


def ensure_experiment(client: MlflowClient, name: str, artifact_location: Path | None = None) -> str:
    """The experiment's id; a new one keeps its artifacts in `artifact_location` when given."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = artifact_location.resolve().as_uri() if artifact_location else None
    return str(client.create_experiment(name, artifact_location=location))
