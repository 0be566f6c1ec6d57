"""A whole evaluation against a real MLflow server and real HELM: what lands in MLflow, and failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from cajajejo import __version__
from cajajejo.runtime_contract import RESERVED_TAGS
from tests.evaluation.conftest import EvaluationRun, MlflowServer, run_evaluate_in_job, write_job_inputs

SYNTHETIC = ("simple_mcqa", "simple_classification", "simple_short_answer_qa")


LoggedRun = tuple[MlflowClient, Run]


@pytest.fixture(scope="module")
def logged_run(evaluation_run: EvaluationRun) -> LoggedRun:
    client = MlflowClient(tracking_uri=evaluation_run.tracking_uri)
    experiment = client.get_experiment_by_name("debug")
    assert experiment is not None, evaluation_run.stderr[-3000:]
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_a_scenario_needing_the_network_fails_by_name_and_the_others_are_logged(
    evaluation_run: EvaluationRun, logged_run: LoggedRun
) -> None:
    assert evaluation_run.exit_code == 1
    errors = [line for line in evaluation_run.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: run spec boolq:model=huggingface_model,data_augmentation=canonical failed: it needs a download "
        "that is not reachable from here (" + errors[0].split("(", 1)[1]
    ]
    assert "URLError" in errors[0]
    _, run = logged_run
    assert run.info.status == "FAILED"
    assert run.data.tags["cajajejo.failed_run_specs"] == "boolq:model=huggingface_model,data_augmentation=canonical"
    for scenario in SYNTHETIC:
        assert any(name.startswith(f"{scenario}/model-huggingface_model/test/") for name in run.data.metrics), scenario
    assert not any(name.startswith("boolq") for name in run.data.metrics)


def test_the_seed_tags_and_the_config_tags(logged_run: LoggedRun, model_run_id: str) -> None:
    _, run = logged_run
    tags = run.data.tags
    expected = {
        "config_git_sha": "0123456789abcdef0123456789abcdef01234567",
        "config_path_git_repo": "jobs/evaluation/debug.job_config.yml",
        "helm_config_path_git_repo": "jobs/evaluation/app/debug.conf",
        "image_build_cajajejo_version": __version__,
        "model_run_id": model_run_id,
        "model_artifact_path": "model",
        "model_gs_uri": "None",
        "accelerator": "None",
        "cpu": "2",
        "memory": "4Gi",
        "helm_args": "--max-eval-instances 5",
        "image": "registry.example.com/ml-platform/evaluation",
        "image_tag": "debug",
        "job_name": "eval-test-tiny-sloth",
    }
    assert tags.items() >= expected.items()
    assert set(tags) >= RESERVED_TAGS
    assert tags["lifecycle"] == "debug"
    assert tags["datasets"] == "dolly,synthetic"
    assert tags["mlflow.source.git.commit"] == "0123456789abcdef0123456789abcdef01234567"
    assert tags["mlflow.note.content"] == "Debug run on HELM's synthetic scenarios."
    assert tags["cajajejo.device"] in ("cpu",) or tags["cajajejo.device"].startswith("cuda:0")
    assert run.info.run_name == "debug"
    assert run.data.params == {
        "helm.suite": "debug",
        "helm.run_specs": "4",
        "helm.model": "huggingface/model",
        "helm.max_eval_instances": "5",
    }


def test_metrics_match_helm_stats(evaluation_run: EvaluationRun, logged_run: LoggedRun) -> None:
    _, run = logged_run
    stats_file = evaluation_run.scratch / "helm/output/runs/debug/simple_mcqa:model=huggingface_model/stats.json"
    stats = json.loads(stats_file.read_text())
    with_mean = [s for s in stats if "mean" in s]
    assert len(with_mean) < len(stats)  # HELM writes count-0 entries without a mean; they are skipped
    exact = next(s for s in with_mean if s["name"] == {"name": "exact_match", "split": "test"})
    assert run.data.metrics["simple_mcqa/model-huggingface_model/test/exact_match"] == pytest.approx(exact["mean"])
    mcqa = [k for k in run.data.metrics if k.startswith("simple_mcqa/")]
    assert len(mcqa) == len({(s["name"]["name"], str(s["name"].get("perturbation"))) for s in with_mean})


def test_artifacts_hold_the_helm_output_and_both_configs(evaluation_run: EvaluationRun, logged_run: LoggedRun) -> None:
    client, run = logged_run
    configs = {a.path for a in client.list_artifacts(run.info.run_id, "configs")}
    assert configs == {"configs/eval_config.yml", "configs/run_specs.conf"}
    output = {a.path for a in client.list_artifacts(run.info.run_id, "helm_output")}
    assert "helm_output/summary.json" in output
    assert "helm_output/simple_mcqa:model=huggingface_model" in output
    assert "helm_output/helm-debug.log" in output
    local = client.download_artifacts(run.info.run_id, "configs/eval_config.yml")
    assert Path(local).read_text() == evaluation_run.config.read_text()


def test_the_job_output_says_where_results_are(evaluation_run: EvaluationRun, logged_run: LoggedRun) -> None:
    _, run = logged_run
    assert f"MLflow run {run.info.run_id} at {evaluation_run.tracking_uri} (device: cpu" in evaluation_run.stdout
    steps = [line for line in evaluation_run.stderr.splitlines() if line.startswith("[")]
    assert [step[:5] for step in steps] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert steps[1].startswith("[2/4] model: huggingface/model from ")
    assert "Running simple_mcqa" in evaluation_run.stdout  # in a job, HELM's whole log goes to the job's log


def test_the_model_is_fetched_once(evaluation_run: EvaluationRun) -> None:
    model = evaluation_run.scratch / "model"
    assert (model / ".cajajejo-download-complete").is_file()
    assert (model / "model" / "config.json").is_file()
    assert (model / "tokenizer" / "tokenizer.json").is_file()


def test_mlflow_down_is_a_clear_failure_that_says_where_the_results_are(
    evaluation_run: EvaluationRun, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    # The model is already in scratch from the session's run, so only the logging needs MLflow.
    configs = tmp_path / "configs"
    write_job_inputs(configs, "0" * 32, "http://127.0.0.1:9")  # nothing listens on port 9
    scratch = tmp_path / "scratch"
    shutil.copytree(evaluation_run.scratch / "model", scratch / "model")
    (configs / "run_specs.conf").write_text(
        'entries: [\n  {description: "simple_mcqa:model=huggingface/model", priority: 1}\n]\n'
    )
    code, _, err = run_evaluate_in_job(
        configs,
        scratch,
        {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0"},
    )
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ")
    assert "http://127.0.0.1:9" in last
    assert f"results are in {scratch / 'helm/output/runs/debug'}" in last
    assert "Traceback" not in err


def test_missing_job_variables_are_named(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CONFIG_VERSION", "JOB_NAME")}
    result = subprocess.run(
        [sys.executable, "-m", "cajajejo.cli", "evaluate"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "CONFIG_VERSION" in result.stderr
    assert "--local" in result.stderr
