"""`cajajejo evaluate [--local]`: one evaluation from config files to an MLflow run."""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from cajajejo import runtime_contract as contract
from cajajejo.config.evaluation import EvaluationJobConfig
from cajajejo.config.loader import load_evaluation_config
from cajajejo.config.run_specs import load_run_specs
from cajajejo.errors import CajajejoError
from cajajejo.evaluation.debug_model import uses_debug_model, with_debug_model
from cajajejo.evaluation.helm_run import FailedRun, run_helm
from cajajejo.evaluation.helm_setup import (
    ensure_punkt_tab,
    model_max_length,
    nltk_environment,
    write_helm_model_configs,
)
from cajajejo.evaluation.inputs import RuntimeInputs, resolve_inputs
from cajajejo.evaluation.model_fetch import ModelFiles, fetch_model
from cajajejo.evaluation.results import all_metrics
from cajajejo.evaluation.tracking import EvaluationRecord, helm_params, log_evaluation, run_tags

LOCAL_TRACKING_URI = "sqlite:///mlflow.db"


@dataclass(frozen=True)
class EvaluationResult:
    run_id: str
    tracking_uri: str
    results_dir: Path
    helm_log: Path
    failed: tuple[FailedRun, ...]
    device: str
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass
class Progress:
    """Numbered steps with the time since the start, on stderr: what a person (or a job log) follows."""

    stream: TextIO = field(default_factory=lambda: sys.stderr)
    total: int = 4
    started: float = field(default_factory=time.monotonic)
    done: int = 0

    def step(self, text: str) -> None:
        self.done += 1
        self._say(f"[{self.done}/{self.total}] {text}")

    def detail(self, text: str) -> None:
        self._say(f"      {text}")

    def _say(self, text: str) -> None:
        print(f"{text}  ({time.monotonic() - self.started:.0f} s)", file=self.stream, flush=True)


def tracking_uri_for(config_uri: str, *, local: bool, keep_tracking_uri: bool) -> str:
    """Where results (and, locally, the model) live: the config's URI in a job, a local one with --local."""
    if not local or keep_tracking_uri:
        return config_uri
    return os.environ.get(contract.ENV_MLFLOW_TRACKING_URI) or LOCAL_TRACKING_URI


def describe_device() -> str:
    """The device HELM's Hugging Face client will pick: the first GPU when CUDA works, else the CPU."""
    import torch

    if torch.cuda.is_available():
        return f"cuda:0 ({torch.cuda.get_device_name(0)})"
    return "cpu"


@dataclass(frozen=True)
class EvaluationSetup:
    """What every evaluation of this job shares, read once: the inputs, the config, where MLflow is."""

    inputs: RuntimeInputs
    config: EvaluationJobConfig
    run_spec_count: int
    tracking_uri: str
    local: bool
    progress: Progress


def prepare(
    *,
    local: bool,
    config: Path | None = None,
    helm_config: Path | None = None,
    scratch_dir: Path | None = None,
    keep_tracking_uri: bool = False,
    tracking_uri: str | None = None,
) -> EvaluationSetup:
    """Read and check the inputs (step 1 of 4). `tracking_uri` overrides where MLflow is."""
    progress = Progress()
    inputs = resolve_inputs(local=local, config=config, helm_config=helm_config, scratch_dir=scratch_dir)
    loaded = load_evaluation_config(inputs.config_path)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    run_specs = load_run_specs(inputs.helm_config_path)
    job_config = loaded.config
    tracking_uri = tracking_uri or tracking_uri_for(
        job_config.mlflow_config.tracking_uri, local=local, keep_tracking_uri=keep_tracking_uri
    )
    progress.step(
        f"inputs: {inputs.config_path_in_repo} and {inputs.helm_config_path_in_repo} "
        f"({len(run_specs.descriptions)} run specs) at {inputs.config_version}"
    )
    return EvaluationSetup(inputs, job_config, len(run_specs.descriptions), tracking_uri, local, progress)


def evaluate(setup: EvaluationSetup) -> EvaluationResult:
    """Fetch the config's model, register it, run HELM, log to MLflow (steps 2-4 after `prepare`).

    In a job HELM's whole output is streamed to stdout (the job's log); with `local` it goes to a log
    file whose path is reported, and only the start of each run spec is shown.
    """
    job_config, scratch = setup.config, setup.inputs.scratch_dir
    if setup.local and uses_debug_model(job_config):
        job_config = with_debug_model(job_config, setup.tracking_uri, scratch)
        setup = replace(setup, config=job_config)
        artifact = job_config.model.mlflow_artifact
        setup.progress.detail(
            f"the debug model: a tiny random GPT-2 in MLflow run {artifact.run_id if artifact else '?'}"
        )
    model = fetch_model(job_config, scratch, tracking_uri=setup.tracking_uri)
    return evaluate_model(setup, model, scratch / "helm")


def evaluate_model(
    setup: EvaluationSetup,
    model: ModelFiles,
    helm_home: Path,
    *,
    tags: Mapping[str, str] | None = None,
    run_name: str | None = None,
    step: int = 0,
) -> EvaluationResult:
    """Steps 2-4 for a model that is on disk: register it with HELM, run HELM, log one MLflow run.

    `tags` are added to the run's (a checkpoint's evaluation names its training run and checkpoint);
    metrics are logged at `step` (a checkpoint's training step). HELM's cache lives in `helm_home`,
    so one `helm_home` per model: HELM would otherwise answer a new checkpoint from an old one's cache.
    """
    job_config, inputs, progress, local = setup.config, setup.inputs, setup.progress, setup.local
    write_helm_model_configs(helm_home / "prod_env", model, model_max_length(model.model_dir, model.tokenizer_dir))
    nltk_dir = ensure_punkt_tab(inputs.scratch_dir / "helm" / "nltk_data")
    device = describe_device()
    progress.step(f"model: {model.helm_name} from {model.model_dir}, on {device}")
    # Model and tokenizer are local folders now, so HELM loads them without the hub; scenarios that
    # download their data still can, where the job has network.
    env = {**os.environ, **nltk_environment(nltk_dir)}
    output_path = helm_home / "output"
    progress.step(
        f"HELM: suite {job_config.helm.suite}, full log in {output_path / f'helm-{job_config.helm.suite}.log'}"
    )
    outcome = run_helm(
        run_specs=inputs.helm_config_path,
        suite=job_config.helm.suite,
        args=job_config.helm.args,
        output_path=output_path,
        local_path=helm_home / "prod_env",
        env=env,
        show_output=not local,
        on_progress=progress.detail if local else None,
    )
    progress.step(
        f"MLflow: logging {len(outcome.succeeded)} evaluated run specs"
        + (f" ({len(outcome.failed)} failed)" if outcome.failed else "")
        + f" to {setup.tracking_uri}"
    )
    record = EvaluationRecord(
        tags=run_tags(
            job_config,
            inputs,
            {
                "cajajejo.device": device,
                "cajajejo.failed_run_specs": ",".join(f.name for f in outcome.failed),
                **(tags or {}),
            },
        ),
        params=helm_params(job_config, setup.run_spec_count, model.helm_name),
        metrics=all_metrics(outcome.suite_dir, outcome.succeeded),
        artifacts=_artifacts(inputs, outcome.suite_dir, outcome.log_path),
        run_name=run_name or job_config.tracking_config.run_name or inputs.job_name,
        experiment_name=job_config.tracking_config.experiment_name,
        failed=bool(outcome.failed),
        step=step,
    )
    run_id = log_evaluation(record, setup.tracking_uri, outcome.suite_dir)
    return EvaluationResult(
        run_id,
        setup.tracking_uri,
        outcome.suite_dir,
        outcome.log_path,
        tuple(outcome.failed),
        device,
        record.metrics,
    )


def _artifacts(inputs: RuntimeInputs, suite_dir: Path, log_path: Path) -> tuple[tuple[str, Path], ...]:
    """The seed's three artifacts (HELM output, eval config, HELM config) plus HELM's log."""
    return (
        ("helm_output", suite_dir),
        ("helm_output", log_path),
        ("configs", inputs.config_path),
        ("configs", inputs.helm_config_path),
    )


def report(result: EvaluationResult) -> list[str]:
    lines = [
        f"MLflow run {result.run_id} at {result.tracking_uri} (device: {result.device})",
        f"HELM results: {result.results_dir} (log: {result.helm_log})",
    ]
    if result.tracking_uri.startswith("sqlite:") or "://" not in result.tracking_uri:
        lines.append(f"look at them: {mlflow_ui_command(result.tracking_uri)}")
    return lines


def mlflow_ui_command(tracking_uri: str) -> str:
    """A command that starts MLflow's UI as shown, without activating the virtual environment first."""
    beside_python = Path(sys.executable).parent / "mlflow"
    program = str(beside_python) if beside_python.is_file() else "mlflow"
    return shlex.join([program, "ui", "--backend-store-uri", tracking_uri])


def check_failures(result: EvaluationResult) -> None:
    if result.failed:
        raise CajajejoError("\n".join(str(f) for f in result.failed))
