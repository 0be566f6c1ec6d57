"""`cajajejo quickstart`: the whole evaluation on a laptop, with no cluster, GPU or network.

It runs `evaluate --local` on the repository's debug job as it is (jobs/evaluation/debug.job_config.yml
and HELM's offline synthetic scenarios in app/debug.conf): that config asks for the debug model, which
`--local` builds and logs to a local MLflow once (see `debug_model`). Nothing is copied or rewritten,
so a run from a clean clone is stamped with the clean commit and the files' repository paths.
"""

from __future__ import annotations

import os
from pathlib import Path

from cajajejo.config.loader import load_evaluation_config
from cajajejo.evaluation.debug_model import MODEL_EXPERIMENT, ensure_experiment
from cajajejo.evaluation.runner import EvaluationResult, evaluate, prepare
from cajajejo.examples import DEBUG_EVALUATION_CONFIG, DEBUG_RUN_SPECS, example_file
from cajajejo.mlflow_http import talking_to_mlflow
from cajajejo.runtime_contract import ENV_MLFLOW_TRACKING_URI


def local_tracking_uri(workdir: Path) -> str:
    return os.environ.get(ENV_MLFLOW_TRACKING_URI) or f"sqlite:///{(workdir / 'mlflow.db').resolve()}"


def quickstart(workdir: Path, config: Path | None = None, helm_config: Path | None = None) -> EvaluationResult:
    """Evaluate the debug job (or the given files) locally, keeping everything under `workdir`."""
    config = config or example_file(DEBUG_EVALUATION_CONFIG)
    helm_config = helm_config or example_file(DEBUG_RUN_SPECS)
    experiment = load_evaluation_config(config).config.tracking_config.experiment_name  # bad input: nothing made
    workdir.mkdir(parents=True, exist_ok=True)
    tracking_uri = local_tracking_uri(workdir)
    from mlflow.tracking import MlflowClient

    # Created here so that their artifacts land under the workdir, not in ./mlruns of the current folder.
    with talking_to_mlflow(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri)
        for name in (experiment, MODEL_EXPERIMENT):
            ensure_experiment(client, name, workdir / "mlartifacts")
    setup = prepare(
        local=True, config=config, helm_config=helm_config, scratch_dir=workdir / "scratch", tracking_uri=tracking_uri
    )
    return evaluate(setup)
