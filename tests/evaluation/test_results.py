"""Turning HELM's output into MLflow names and values, and reading its failures."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from cajajejo.evaluation.helm_run import failed_runs
from cajajejo.evaluation.results import metric_name, run_metrics, summary_metrics
from cajajejo.evaluation.tracking import helm_params, user_tags
from tests.support import MLFLOW_EXAMPLE

MLFLOW_NAME = re.compile(r"^[/\w.\- ]*$")  # what MLflow accepts in a metric name


@given(st.lists(st.text(max_size=60), min_size=1, max_size=5))
def test_metric_names_are_always_acceptable_to_mlflow(parts: list[str]) -> None:
    name = metric_name(*parts)
    assert MLFLOW_NAME.fullmatch(name)
    assert len(name) <= 250


def test_metric_names_stay_readable() -> None:
    assert metric_name("mmlu:model=huggingface_model,subject=anatomy", "test", "exact_match", "robustness") == (
        "mmlu/model-huggingface_model/subject-anatomy/test/exact_match/robustness"
    )


def test_stats_without_a_mean_are_skipped(tmp_path: Path) -> None:
    run = tmp_path / "simple_mcqa:model=m"
    run.mkdir()
    stats = [
        {"name": {"name": "exact_match", "split": "test"}, "count": 2, "mean": 0.5},
        {"name": {"name": "training_co2_cost", "split": "test"}, "count": 0, "sum": 0},
        {"name": {"name": "exact_match", "split": "test", "perturbation": {"name": "fairness"}}, "mean": 1},
        {"name": {"name": "odd", "split": "test"}, "mean": float("nan")},
    ]
    (run / "stats.json").write_text(json.dumps(stats))
    assert run_metrics(run) == {
        "simple_mcqa/model-m/test/exact_match": 0.5,
        "simple_mcqa/model-m/test/exact_match/fairness": 1.0,
    }


def test_summary_tables_give_their_numeric_cells(tmp_path: Path) -> None:
    table = {
        "title": "Accuracy",
        "header": [{"value": "Model"}, {"value": "EM"}, {"value": "Note"}, {"value": "# instances"}],
        "rows": [[{"value": "huggingface/model"}, {"value": 0.25}, {"value": "text"}, {"value": 5}]],
    }
    (tmp_path / "groups").mkdir()
    (tmp_path / "groups" / "core.json").write_text(json.dumps([table]))
    assert summary_metrics(tmp_path) == {"summary/Accuracy/huggingface/model/EM": 0.25}


def test_failed_runs_are_read_from_the_helm_log() -> None:
    log = "\n".join(
        [
            "2026-11-24 02:24:55,361 INFO       Error when running boolq:model=huggingface_model,data_augmentation=c:",
            "Traceback (most recent call last):",
            "urllib.error.URLError: <urlopen error [Errno -2] Name or service not known>",
            "2026-11-24 02:24:55,400 INFO     } [0.1s]",
            "ValueError: logged later by another part of HELM",
            "2026-11-24 02:24:56,000 INFO       Error when running other:model=m:",
            "ValueError: bad prompt",
            'helm.benchmark.runner.RunnerError: Failed runs: ["boolq:model=huggingface_model,data_augmentation=c", '
            '"other:model=m", "third:model=m"]',
        ]
    )
    failures = failed_runs(log)
    assert [f.name for f in failures] == [
        "boolq:model=huggingface_model,data_augmentation=c",
        "other:model=m",
        "third:model=m",
    ]
    assert failures[0].reason.startswith("it needs a download that is not reachable from here (urllib.error.URLError")
    assert failures[1].reason == "ValueError: bad prompt"
    assert failures[2].reason == "see the HELM log"


def test_params_and_tags_from_the_config() -> None:
    import yaml

    from cajajejo.config.evaluation import EvaluationJobConfig

    data = yaml.safe_load(MLFLOW_EXAMPLE.read_text())
    data["helm"]["args"] = ["--max-eval-instances", "10", "--num-threads=4", "--dry-run"]
    data["tracking_config"]["tags"]["flag"] = True
    config = EvaluationJobConfig.model_validate(data)
    assert helm_params(config, 4, "huggingface/model") == {
        "helm.suite": "v1",
        "helm.run_specs": "4",
        "helm.model": "huggingface/model",
        "helm.max_eval_instances": "10",
        "helm.num_threads": "4",
        "helm.dry_run": "true",
    }
    tags = user_tags(config)
    assert tags["datasets"] == "dolly,dataset2"
    assert tags["flag"] == "true"
