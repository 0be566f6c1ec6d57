"""`cajajejo workflows ...`: Slurm workflows (segmented training with evaluations beside it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cajajejo.cli import options
from cajajejo.cli.root import cli

SLURM_HOST_OPTION = click.option(
    "--slurm-host",
    help="Slurm login node as [user@]host[:port], reached over SSH (default: the slurm_host setting, else here).",
)


@cli.group()
def workflows() -> None:
    """Workflows on Slurm: chains of jobs submitted at once, with no controller left running."""


@workflows.command("train-eval")
@click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--epochs", type=click.IntRange(1, 10_000), default=3, show_default=True)
@click.option("--epoch-steps", type=click.IntRange(1), required=True, help="Training steps per epoch.")
@click.option("--steps-per-job-cap", type=click.IntRange(1), required=True, help="At most this many steps per job.")
@click.option("--partition-train", help="Partition of the training jobs (default: the config's, else the cluster's).")
@click.option("--partition-eval", help="Partition of the evaluation jobs (default: the evaluation config's).")
@click.option(
    "--eval-config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Evaluation job config (default: cajajejo's debug evaluation on HELM's offline scenarios).",
)
@click.option("--helm-config", type=click.Path(path_type=Path, dir_okay=False), help="HELM run specs for it.")
@click.option("--workdir", help="The workflow's folder on the shared filesystem (default: a new one, printed).")
@click.option("--name", help="The workflow's name, the prefix of its jobs' names (default: from CONFIG and the time).")
@SLURM_HOST_OPTION
@click.option("--dry-run", is_flag=True, help="Check and print the plan; write and submit nothing.")
@click.option("--allow-dirty-repo", is_flag=True, help="Submit from a dirty tree, stamped '<sha>-dirty'.")
def train_eval(config: Path, **flags: Any) -> None:
    """Train CONFIG's built-in trainer for --epochs epochs of --epoch-steps steps, each epoch in jobs of at
    most --steps-per-job-cap steps that continue from the last checkpoint, and evaluate each epoch's
    last checkpoint in a job of its own that the next epoch does not wait for. The whole chain is
    submitted at once with Slurm dependencies (afterok); follow it with `cajajejo workflows status DIR`.
    """
    from cajajejo.backends.hosts import connect_host
    from cajajejo.backends.slurm import slurm_on
    from cajajejo.examples import DEBUG_EVALUATION_CONFIG, DEBUG_RUN_SPECS, example_file
    from cajajejo.settings import load_settings
    from cajajejo.workflows.submit import TrainEvalRequest, default_name, prepare_train_eval, submit_workflow

    settings = load_settings()
    if (flags["eval_config"] is None) != (flags["helm_config"] is None):
        raise click.UsageError("give both --eval-config and --helm-config, or neither (the debug evaluation)")
    own_evaluation = flags["eval_config"] is not None
    name = flags["name"] or default_name(config)
    host_spec = flags["slurm_host"] or settings.get("slurm_host")
    workdir, workdir_from = _workdir(flags["workdir"], name, config, settings, remote=bool(host_spec))
    request = TrainEvalRequest(
        config=config,
        eval_config=flags["eval_config"] or example_file(DEBUG_EVALUATION_CONFIG),
        helm_config=flags["helm_config"] or example_file(DEBUG_RUN_SPECS),
        epochs=flags["epochs"],
        epoch_steps=flags["epoch_steps"],
        steps_per_job_cap=flags["steps_per_job_cap"],
        workdir=workdir,
        workdir_from=workdir_from,
        name=name,
        train_partition=flags["partition_train"],
        eval_partition=flags["partition_eval"],
        allow_dirty=flags["allow_dirty_repo"],
        stamp_evaluation_inputs=own_evaluation,
    )
    prepared = prepare_train_eval(request, settings)
    for line in prepared.plan.describe():
        click.echo(line)
    if not own_evaluation:
        click.echo("  evaluations: cajajejo's debug evaluation (--eval-config and --helm-config for your own)")
    if flags["dry_run"]:
        click.echo("dry run: nothing written, nothing submitted")
        return
    host = connect_host(host_spec)
    try:
        ids = submit_workflow(prepared, slurm_on(host))
    finally:
        host.close()
    click.echo(f"submitted {len(ids)} jobs to Slurm on {host.name} (first {next(iter(ids.values()))})")
    click.echo(f"follow it:  cajajejo workflows status {workdir}" + (f" --slurm-host {host_spec}" if host_spec else ""))


def _workdir(option: str | None, name: str, config: Path, settings: Any, *, remote: bool) -> tuple[str, str]:
    """--workdir, else `<base>/workflows/<name>` with base the config's slurm.workdir, the slurm_workdir
    setting, or (on this machine) the current directory; and where it came from, for errors."""
    from cajajejo.config.loader import load_training_config
    from cajajejo.errors import Problem, UserInputError

    if option is not None:
        if remote and not option.startswith("/"):
            raise UserInputError(Problem("--workdir", f"{option!r}: on a remote cluster give an absolute path"))
        return (option if option.startswith("/") else str(Path(option).resolve())), "--workdir"
    section = load_training_config(config).config.slurm
    if section is not None and section.workdir is not None:
        return f"{section.workdir}/workflows/{name}", f"{config}: slurm.workdir"
    if settings.get("slurm_workdir"):
        return f"{settings.get('slurm_workdir')}/workflows/{name}", "setting slurm_workdir"
    if remote:
        raise UserInputError(
            Problem(
                "--workdir",
                "on a remote cluster say where the workflow goes: --workdir, slurm.workdir or slurm_workdir",
            )
        )
    return f"{Path.cwd()}/workflows/{name}", "the current folder (give --workdir)"


@workflows.command("status")
@click.argument("workdir")
@SLURM_HOST_OPTION
def status(workdir: str, slurm_host: str | None) -> None:
    """Show each epoch's training jobs and evaluation: Slurm state, steps, start and end."""
    from cajajejo.backends.slurm import slurm_on
    from cajajejo.workflows.follow import load_workflow, status_lines

    with options.slurm_host(slurm_host) as host:
        workflow = load_workflow(host, workdir)
        for line in status_lines(workflow, slurm_on(host)):
            click.echo(line)


@workflows.command("cancel")
@click.argument("workdir")
@SLURM_HOST_OPTION
def cancel(workdir: str, slurm_host: str | None) -> None:
    """Cancel every job of the workflow that has not ended yet."""
    from cajajejo.backends.slurm import slurm_on
    from cajajejo.workflows.follow import cancel_workflow, load_workflow

    with options.slurm_host(slurm_host) as host:
        cancelled = cancel_workflow(load_workflow(host, workdir), slurm_on(host))
    click.echo(f"cancelled {len(cancelled)} job(s)" + (f": {', '.join(cancelled)}" if cancelled else ""))


@workflows.command("record", hidden=True)
@click.argument("workdir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--job", required=True, help="The job that has just finished its work.")
def record(workdir: Path, job: str) -> None:
    """A workflow job's last step: mark it finished and rebuild state.json (runs on the cluster)."""
    from cajajejo.workflows.state import record_finished

    state = record_finished(workdir, job)
    click.echo(json.dumps({"recorded": job, "trained_steps": state["trained_steps"], "complete": state["complete"]}))
