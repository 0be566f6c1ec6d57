"""`cajajejo evaluate`, `quickstart` and `models download`: what runs inside the evaluation job."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from cajajejo.cli.root import cli
from cajajejo.extras import require_runtime


def _runtime(command: str) -> None:
    """What every command that runs a job's work does first: check the extra is there, quiet the libraries."""
    require_runtime("evaluation", command)
    from cajajejo.evaluation import quiet_libraries

    quiet_libraries()


if TYPE_CHECKING:
    from cajajejo.evaluation.runner import EvaluationResult


def _finish(result: EvaluationResult) -> None:
    """Say where the results are, then fail (exit 1) naming each run spec that failed."""
    from cajajejo.evaluation.runner import check_failures, report

    for line in report(result):
        click.echo(line)
    check_failures(result)


@cli.command("evaluate")
@click.option("--local", is_flag=True, help="Run outside a job: stamps from local git, MLflow local.")
@click.option(
    "--config", type=click.Path(path_type=Path, dir_okay=False), help="Job config (default: in the config dir)."
)
@click.option(
    "--helm-config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="HELM run specs (default: in the config dir).",
)
@click.option("--scratch-dir", type=click.Path(path_type=Path, file_okay=False), help="Where the model and results go.")
@click.option(
    "--keep-tracking-uri", is_flag=True, help="With --local: log to the config's MLflow instead of a local one."
)
def evaluate_command(
    local: bool, config: Path | None, helm_config: Path | None, scratch_dir: Path | None, keep_tracking_uri: bool
) -> None:
    """Run the evaluation: fetch the model, run HELM, log results, tags and artifacts to MLflow.

    In a job, the inputs come from /etc/configs ($CAJAJEJO_CONFIG_DIR), /scratch ($CAJAJEJO_SCRATCH_DIR)
    and the CONFIG_VERSION, CONFIG_PATH_GIT_REPO, HELM_CONFIG_PATH_GIT_REPO and JOB_NAME variables.
    """
    _runtime("cajajejo evaluate")
    from cajajejo.evaluation.runner import evaluate

    result = evaluate(
        local=local,
        config=config,
        helm_config=helm_config,
        scratch_dir=scratch_dir,
        keep_tracking_uri=keep_tracking_uri,
    )
    _finish(result)


@cli.command("quickstart")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(".tmp/quickstart"),
    show_default=True,
    help="Where the tiny model, the local MLflow and the results go.",
)
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Job config (default: cajajejo's jobs/evaluation/debug.job_config.yml).",
)
@click.option(
    "--helm-config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="HELM run specs (default: cajajejo's jobs/evaluation/app/debug.conf, which needs no network).",
)
def quickstart_command(workdir: Path, config: Path | None, helm_config: Path | None) -> None:
    """Evaluate a tiny local model end to end: local MLflow, HELM's offline scenarios, no GPU, no network."""
    _runtime("cajajejo quickstart")
    from cajajejo.evaluation.quickstart import quickstart

    result = quickstart(workdir, config, helm_config)
    _finish(result)


@cli.group("models")
def models() -> None:
    """Models that jobs evaluate."""


@models.command("download")
@click.option("--config", type=click.Path(path_type=Path, dir_okay=False), required=True, help="Job config.")
@click.option(
    "--scratch-dir", type=click.Path(path_type=Path, file_okay=False), required=True, help="Where to put the model."
)
def download_model(config: Path, scratch_dir: Path) -> None:
    """Fetch the config's model (MLflow artifact or gs:// folder) into SCRATCH_DIR, unless it is there."""
    _runtime("cajajejo models download")
    from cajajejo.config.loader import load_evaluation_config
    from cajajejo.evaluation.model_fetch import fetch_model

    loaded = load_evaluation_config(config)
    files = fetch_model(loaded.config, scratch_dir)
    click.echo(f"model {files.helm_name} in {files.model_dir} (tokenizer {files.tokenizer_dir})")
