"""`cajajejo evaluate`, `quickstart`, `models download` and `train`: what runs inside a job's containers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from cajajejo.cli import options
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
@click.option(
    "--watch",
    "watch_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Evaluate each checkpoint published in this directory (the model), until training is complete.",
)
@click.option("--role", default="helm", show_default=True, help="With --watch: this evaluator's role.")
@click.option("--worker", help="With --watch: this evaluator's name (default: host and process id).")
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=1.0),
    default=120.0,
    show_default=True,
    help="With --watch: a claim not renewed for this long is taken over.",
)
@click.option("--step", type=click.IntRange(min=0), help="With --watch: only the checkpoint of this step, then exit.")
@click.option(
    "--metrics-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="With --step: also write the checkpoint's result (metrics, MLflow run) to this JSON file.",
)
def evaluate_command(
    local: bool,
    config: Path | None,
    helm_config: Path | None,
    scratch_dir: Path | None,
    keep_tracking_uri: bool,
    watch_dir: Path | None,
    role: str,
    worker: str | None,
    lease_seconds: float,
    step: int | None,
    metrics_file: Path | None,
) -> None:
    """Run the evaluation: fetch the model, run HELM, log results, tags and artifacts to MLflow.

    In a job, the inputs come from /etc/configs ($CAJAJEJO_CONFIG_DIR), /scratch ($CAJAJEJO_SCRATCH_DIR)
    and the CONFIG_VERSION, CONFIG_PATH_GIT_REPO, HELM_CONFIG_PATH_GIT_REPO and JOB_NAME variables.
    With --watch the model is each checkpoint a trainer publishes in the directory: each is evaluated
    once per role, logged as a run nested under the training run and at its step in the training run.
    """
    if watch_dir is None and (step is not None or metrics_file is not None):
        raise click.UsageError("--step and --metrics-file need --watch")
    if metrics_file is not None and step is None:
        raise click.UsageError("--metrics-file needs --step")
    if watch_dir is not None:
        options.check_label_option(role, "--role")
        if worker is not None:
            options.check_label_option(worker, "--worker")
    _runtime("cajajejo evaluate")
    from cajajejo.evaluation.runner import evaluate, prepare

    setup = prepare(
        local=local,
        config=config,
        helm_config=helm_config,
        scratch_dir=scratch_dir,
        keep_tracking_uri=keep_tracking_uri,
    )
    if watch_dir is None:
        _finish(evaluate(setup))
        return
    from cajajejo.evaluation.checkpoint_runs import watch_and_evaluate
    from cajajejo.termination import exit_cleanly_on_termination

    # SIGTERM (the pod deleted) unwinds like Ctrl-C: the claim is released, another evaluator goes on at once.
    with exit_cleanly_on_termination():
        summary = watch_and_evaluate(setup, watch_dir, role, worker=worker, lease_seconds=lease_seconds, only_step=step)
    if step is not None:
        _one_step_outcome(watch_dir, role, step, summary.reason, metrics_file)
    click.echo(
        f"evaluated {len(summary.handled)} checkpoint(s) as {role}"
        + (f"; gave up on {', '.join(summary.failed)}" if summary.failed else "")
        + f" ({summary.reason})"
    )
    if summary.failed:
        raise SystemExit(1)


def _one_step_outcome(directory: Path, role: str, step: int, reason: str, metrics_file: Path | None) -> None:
    """After `evaluate --watch --step`: fail when there was no such checkpoint; write the metrics file."""
    import json

    from cajajejo.checkpoints import CheckpointDir
    from cajajejo.errors import Problem, UserInputError
    from cajajejo.files import write_text_atomically
    from cajajejo.watch import NO_SUCH_STEP

    if reason == NO_SUCH_STEP:
        raise UserInputError(Problem(str(directory), f"no published checkpoint of step {step}", field="--step"))
    if metrics_file is None:
        return
    checkpoints = CheckpointDir(directory)
    checkpoint = next(c for c in checkpoints.published() if c.step == step)
    result = checkpoints.result(role, checkpoint.name)
    record = {
        "checkpoint": checkpoint.name,
        "step": step,
        "epoch": checkpoint.epoch,
        "role": role,
        "status": result.status if result else "missing",
        "result": result.value if result else {},
    }
    write_text_atomically(metrics_file, json.dumps(record, indent=2, sort_keys=True) + "\n")


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


@cli.command("train", context_settings={"ignore_unknown_options": False})
@click.argument("config", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--local", is_flag=True, help="Run CONFIG's job on this machine under real torchrun (no cluster).")
@click.option("--nnodes", type=click.IntRange(1, 64), default=1, show_default=True, help="With --local: agents.")
@click.option("--nproc-per-node", type=click.IntRange(1, 64), help="With --local: processes per agent.")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    help="With --local: where checkpoints, scratch and the local MLflow go (default .tmp/train/<config name>).",
)
@click.option("--keep-tracking-uri", is_flag=True, help="With --local: log to the config's MLflow, not a local one.")
@click.option("--checkpoint-dir", type=click.Path(path_type=Path, file_okay=False), help="Override the config's.")
@click.option("--max-steps", type=click.IntRange(min=1), help="Train at most this many steps in all.")
@click.option("--stop-after-steps", type=click.IntRange(min=1), help="Run at most N more steps, checkpoint, exit 0.")
@click.option("--hold-for", metavar="ROLE", help="Keep the last checkpoint until evaluator role ROLE has a result.")
def train_command(
    config: Path | None,
    local: bool,
    nnodes: int,
    nproc_per_node: int | None,
    workdir: Path | None,
    keep_tracking_uri: bool,
    checkpoint_dir: Path | None,
    max_steps: int | None,
    stop_after_steps: int | None,
    hold_for: str | None,
) -> None:
    """Train with the built-in trainer. This is what every process of a training pod runs (torchrun starts
    it); CONFIG defaults to the job's ConfigMap ($CAJAJEJO_CONFIG_DIR/train_config.yml).

    With --local, run CONFIG's whole job here instead: torchrun with gloo on CPU (nccl on GPUs),
    --nproc-per-node processes per agent, --nnodes agents on loopback, a local MLflow.
    """
    require_runtime("evaluation", "cajajejo train")
    trainer_args = [
        *(["--max-steps", str(max_steps)] if max_steps is not None else []),
        *(["--stop-after-steps", str(stop_after_steps)] if stop_after_steps is not None else []),
        *(["--hold-for", hold_for] if hold_for is not None else []),
    ]
    if local:
        if config is None:
            raise click.UsageError("--local needs CONFIG, the training job config to run")
        _train_locally(config, nnodes, nproc_per_node, workdir, keep_tracking_uri, checkpoint_dir, trainer_args)
        return
    if nnodes != 1 or nproc_per_node is not None or workdir is not None or keep_tracking_uri:
        raise click.UsageError("--nnodes, --nproc-per-node, --workdir and --keep-tracking-uri need --local")
    from cajajejo import runtime_contract
    from cajajejo.training import main

    config = config or Path(runtime_contract.config_dir()) / runtime_contract.TRAIN_CONFIG_FILE
    extra = ["--checkpoint-dir", str(checkpoint_dir)] if checkpoint_dir is not None else []
    raise SystemExit(main(["--config", str(config), *extra, *trainer_args]))


def _train_locally(
    config: Path,
    nnodes: int,
    nproc_per_node: int | None,
    workdir: Path | None,
    keep_tracking_uri: bool,
    checkpoint_dir: Path | None,
    trainer_args: list[str],
) -> None:
    from cajajejo.backends.local import run_training_locally
    from cajajejo.evaluation.runner import mlflow_ui_command

    if checkpoint_dir is not None:
        trainer_args = ["--checkpoint-dir", str(checkpoint_dir), *trainer_args]
    run = run_training_locally(
        config,
        workdir=workdir or Path(".tmp/train") / config.stem.split(".")[0],
        nnodes=nnodes,
        nproc_per_node=nproc_per_node,
        trainer_args=trainer_args,
        keep_tracking_uri=keep_tracking_uri,
    )
    click.echo(f"checkpoints: {checkpoint_dir or run.checkpoint_dir}")
    click.echo(f"MLflow: {run.tracking_uri}")
    click.echo(f"look at them: {mlflow_ui_command(run.tracking_uri)}")
    if run.returncode != 0:
        raise SystemExit(run.returncode if 0 < run.returncode < 128 else 1)
