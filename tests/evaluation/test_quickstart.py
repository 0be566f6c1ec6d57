"""The README's first command: `cajajejo quickstart`, run as a user runs it, from the repository root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cajajejo.evaluation.quickstart import MODEL_EXPERIMENT, local_tracking_uri, log_tiny_model
from tests.support import REPO


def test_quickstart_evaluates_a_tiny_model_and_says_where_the_results_are(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    workdir = tmp_path / "quickstart"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run(
        [sys.executable, "-m", "cajajejo.cli", "quickstart", "--workdir", str(workdir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    uri = f"sqlite:///{(workdir / 'mlflow.db').resolve()}"
    lines = result.stdout.splitlines()
    assert lines[-3].startswith("MLflow run ")
    assert f" at {uri} (device: " in lines[-3]
    assert lines[-2] == f"HELM results: {workdir / 'scratch/helm/output/runs/debug'}"
    assert lines[-1] == f"look at them: mlflow ui --backend-store-uri {uri}"

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(lines[-3].split()[2])
    assert run.info.status == "FINISHED"
    assert run.data.tags["job_name"] == "local"
    assert any(name.startswith("simple_short_answer_qa/") for name in run.data.metrics)

    # Run again: the tiny model is reused, not made and logged a second time.
    assert log_tiny_model(workdir, local_tracking_uri(workdir)) == run.data.tags["model_run_id"]
    experiment = client.get_experiment_by_name(MODEL_EXPERIMENT)
    assert experiment is not None
    assert len(client.search_runs([experiment.experiment_id])) == 1
