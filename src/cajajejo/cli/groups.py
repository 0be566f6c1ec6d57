"""`cajajejo groups ...`: job group files, the manifests made from them, and the groups on the cluster."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from cajajejo.cli import options
from cajajejo.cli.root import cli, warn

GROUP_NAME_OPTION = click.option("--group-name", help="Use this name for the group instead of its header's.")


@cli.group()
def groups() -> None:
    """Job groups: training, evaluation and command tasks that run at once and find each other by name."""


@groups.command("validate")
@click.argument("group", type=click.Path(path_type=Path))
def validate_group(group: Path) -> None:
    """Check a GROUP file (its header, its tasks and every file they name) without rendering anything."""
    from cajajejo.config.group_loader import load_group

    loaded = load_group(group)
    warn(loaded.warnings)
    tasks = ", ".join(
        f"{task.name} ({task.kind}, {task.nodes} pod{'s' if task.nodes > 1 else ''})" for task in loaded.tasks
    )
    click.echo(f"{group}: valid job group {loaded.name} ({len(loaded.tasks)} tasks: {tasks})")


@groups.command("parse")
@click.argument("group", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(path_type=Path, allow_dash=True))
@GROUP_NAME_OPTION
@options.NAMESPACE_TO_RENDER
@options.CONFIG_VERSION_TO_STAMP
@click.option("--group-path-in-repo", default="unknown", show_default=True, help="GROUP's repository path.")
@options.KUBERNETES_VERSION
@options.TEMPLATE_DIR
def parse_group(group: Path, output: Path, group_name: str | None, group_path_in_repo: str, **flags: Any) -> None:
    """Render GROUP into Kubernetes manifests at OUTPUT ('-' for stdout): a Job per task (and a ConfigMap per
    training or evaluation task), the group's headless Service, and the volumes it makes. Everything is
    validated before anything is written. The files a group names are stamped with their repository paths
    relative to --group-path-in-repo.
    """
    from cajajejo.config.group_loader import load_group
    from cajajejo.render.group import GroupProvenance, render_group_plan

    loaded = load_group(group)
    warn(loaded.warnings)
    provenance = GroupProvenance.from_group_path(loaded, flags["config_version"], group_path_in_repo)
    options.write_plan(
        render_group_plan(loaded, provenance, options.options_from(flags), group_name=group_name), output
    )


def _submit_options(command: Callable[..., None]) -> Callable[..., None]:
    submit = [options.SUBMIT_CONFIG_VERSION, options.SUBMIT_NAMESPACE, options.DRY_RUN, options.ALLOW_DIRTY_REPO]
    return options.with_options([GROUP_NAME_OPTION, *submit, options.spec_output_option("")], command)


@groups.command("submit")
@click.argument("group", type=click.Path(path_type=Path))
@_submit_options
def submit_group_command(group: Path, **flags: Any) -> None:
    """Submit GROUP to the cluster of the current kubeconfig context, from a clean git tree: the group file
    and every file it names must be committed; the commit is stamped into every object. The cluster checks
    every object in a dry run before anything is made, and a failure midway deletes what was made.
    Submitting the same group again changes nothing; a group whose name another holds is refused.
    """
    from cajajejo import submission

    result = submission.submit_group(
        group,
        spec_output_path=flags["kubernetes_job_spec_output_path"],
        allow_dirty=flags["allow_dirty_repo"],
        namespace=flags["namespace"],
        dry_run=flags["dry_run"],
        config_version=flags["config_version"],
        group_name=flags["group_name"],
    )
    warn(result.warnings)
    for line in submission.describe(result):
        click.echo(line)


def _group_name(value: str) -> str:
    from cajajejo.errors import Problem, UserInputError
    from cajajejo.names import dns1035_label_problem

    problem = dns1035_label_problem(value)
    if problem:
        raise UserInputError(Problem("GROUP_NAME", f"{value!r} {problem}"))
    return value


@groups.command("status")
@click.argument("group_name")
@options.NAMESPACE_OPTION
def group_status(group_name: str, namespace: str | None) -> None:
    """Show the state of GROUP_NAME: one line per task, with its kind, its pods and its state."""
    cluster, namespace = options.cluster_and_namespace(namespace)
    jobs = cluster.group_status(_group_name(group_name), namespace)
    click.echo(f"group {group_name} in {namespace}: {_group_state([job.state for job in jobs])} ({len(jobs)} tasks)")
    click.echo(f"  {'TASK':<24} {'KIND':<11} {'PODS':<9} STATE")
    for job in jobs:
        waiting = "; ".join(f"{pod.name}: {pod.reason}" for pod in job.pods if pod.reason)
        state = job.state + (f" ({job.failed} failed)" if job.failed else "") + (f"; {waiting}" if waiting else "")
        pods = f"{job.active}/{job.completions}"
        click.echo(f"  {job.task or job.name:<24} {job.kind:<11} {pods:<9} {state}")


def _group_state(states: list[str]) -> str:
    """One word for a group: failed if a task failed, succeeded when all did, else as far as the tasks are."""
    for state in ("failed", "suspended", "running", "pending"):
        if state in states:
            return state
    return "succeeded"


@groups.command("delete")
@click.argument("group_name")
@options.NAMESPACE_OPTION
@click.option("--keep-volumes", is_flag=True, help="Keep the volumes the group made (its checkpoints).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete_group(group_name: str, namespace: str | None, keep_volumes: bool, yes: bool) -> None:
    """Delete GROUP_NAME: its jobs, their pods and ConfigMaps, its Service, and the volumes it made (only what
    cajajejo made for this group; volumes it only mounted stay)."""
    cluster, namespace = options.cluster_and_namespace(namespace)
    group_name = _group_name(group_name)
    if not yes:
        volumes = "" if keep_volumes else " and the volumes it made (their data is lost)"
        click.confirm(f"delete group {group_name} in namespace {namespace}: its jobs, their pods{volumes}?", abort=True)
    for item in cluster.delete_group(group_name, namespace, keep_volumes=keep_volumes):
        click.echo(f"deleted {item}")


@groups.command("run")
@click.argument("group", type=click.Path(path_type=Path))
@click.option("--local", is_flag=True, required=True, help="Run every task on this machine (the only way, so far).")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where volumes, task folders and the local MLflow go (default .tmp/groups/<group file name>).",
)
@click.option("--tracking-uri", help="Log to this MLflow instead of a local `mlflow server` in the work folder.")
def run_group(group: Path, local: bool, workdir: Path | None, tracking_uri: str | None) -> None:
    """Run GROUP's tasks here, all at once: trainers under torchrun, evaluators, commands with bash.

    Each volume is a folder under the work folder; every line of output is prefixed with its task.
    The first task to fail stops the others (exit code: its own).
    """
    from cajajejo.extras import require_runtime

    require_runtime("evaluation", "cajajejo groups run --local")
    from cajajejo.backends.local_group import run_group_locally
    from cajajejo.evaluation.runner import mlflow_ui_command

    stem = group.name.removesuffix(".yml").removesuffix(".yaml").removesuffix(".group")
    folder = workdir or Path(".tmp/groups") / stem
    run = run_group_locally(group, workdir=folder, tracking_uri=tracking_uri)
    for name, path in run.volumes.items():
        click.echo(f"volume {name}: {path}")
    if tracking_uri is None:
        store = f"sqlite:///{run.workdir / 'mlflow' / 'mlflow.db'}"
        click.echo(f"MLflow: {store} (artifacts in {run.workdir / 'mlflow' / 'artifacts'})")
        click.echo(f"look at it: {mlflow_ui_command(store)}")
    else:
        click.echo(f"MLflow: {run.tracking_uri}")
    if run.returncode:
        raise SystemExit(run.returncode)
