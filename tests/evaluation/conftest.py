"""Real parts for the evaluation runtime tests: a tiny model, one full evaluation (MLflow: tests/conftest.py).

The evaluation (HELM on the offline synthetic scenarios plus one that needs the network) runs once per
session; the tests then read what it logged through MlflowClient.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support import DEBUG_EXAMPLE, DEBUG_RUN_SPECS

# The tests here import these from this module; they live in tests/support.py (shared with tests/training).
from tests.support import MlflowServer as MlflowServer
from tests.support import free_port as free_port

NETWORK_RUN_SPEC = '{description: "boolq:model=huggingface/model,data_augmentation=canonical", priority: 2}'


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cajajejo.evaluation.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model-files")


@pytest.fixture(scope="session")
def model_run_id(mlflow_server: MlflowServer, tiny_model: Path) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    experiment_id = client.create_experiment("models")
    run = client.create_run(experiment_id, run_name="tiny")
    client.log_artifacts(run.info.run_id, str(tiny_model), "model")
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


@dataclass(frozen=True)
class EvaluationRun:
    exit_code: int
    stdout: str
    stderr: str
    config: Path
    run_specs: Path
    scratch: Path
    tracking_uri: str


def write_job_inputs(folder: Path, run_id: str, tracking_uri: str, *, extra_run_spec: str | None = None) -> None:
    """/etc/configs as the job's ConfigMap would lay it out, for the debug job pointed at `run_id`."""
    folder.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load(DEBUG_EXAMPLE.read_text())
    data["model_config"]["mlflow_artifact"]["run_id"] = run_id
    data["mlflow_config"]["tracking_uri"] = tracking_uri
    data["tracking_config"]["tags"]["datasets"] = ["dolly", "synthetic"]
    (folder / "eval_config.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    specs = DEBUG_RUN_SPECS.read_text()
    if extra_run_spec:
        specs = specs.rstrip().removesuffix("]") + f"  {extra_run_spec}\n]\n"
    (folder / "run_specs.conf").write_text(specs)


def run_evaluate_in_job(folder: Path, scratch: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`cajajejo evaluate` as the job's container runs it: a fresh process with the job's env vars."""
    job_env = {
        **os.environ,
        "CAJAJEJO_CONFIG_DIR": str(folder),
        "CAJAJEJO_SCRATCH_DIR": str(scratch),
        "CONFIG_VERSION": "0123456789abcdef0123456789abcdef01234567",
        "CONFIG_PATH_GIT_REPO": "jobs/evaluation/debug.job_config.yml",
        "HELM_CONFIG_PATH_GIT_REPO": "jobs/evaluation/app/debug.conf",
        "JOB_NAME": "eval-test-tiny-sloth",
        **env,
    }
    result = subprocess.run(
        [sys.executable, "-m", "cajajejo.cli", "evaluate", *args],
        env=job_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="session")
def evaluation_run(
    mlflow_server: MlflowServer, model_run_id: str, tmp_path_factory: pytest.TempPathFactory
) -> EvaluationRun:
    root = tmp_path_factory.mktemp("job")
    configs, scratch = root / "configs", root / "scratch"
    write_job_inputs(configs, model_run_id, mlflow_server.uri, extra_run_spec=NETWORK_RUN_SPEC)
    code, out, err = run_evaluate_in_job(configs, scratch, {})
    return EvaluationRun(
        code, out, err, configs / "eval_config.yml", configs / "run_specs.conf", scratch, mlflow_server.uri
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests run where CUDA works and are skipped, saying so, everywhere else."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with CUDA; none here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
