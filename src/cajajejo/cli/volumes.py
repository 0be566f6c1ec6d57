"""`cajajejo volumes ...`: volumes made on their own (SkyPilot's `sky volume apply`), that groups mount."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cajajejo.cli import options
from cajajejo.cli.root import cli


@cli.group()
def volumes() -> None:
    """Volumes (PersistentVolumeClaims) that outlive the groups that mount them."""


@volumes.command("apply")
@click.argument("volume_file", type=click.Path(path_type=Path))
@options.SUBMIT_NAMESPACE
@options.DRY_RUN
@options.ALLOW_DIRTY_REPO
def apply_volume_command(volume_file: Path, **flags: Any) -> None:
    """Make the PersistentVolumeClaim of VOLUME_FILE (SkyPilot's volume file format: name, type: k8s-pvc, size,
    config.access_mode, config.storage_class_name), from a clean git tree, stamped with the commit. A group
    that names the same file in its volume_files mounts this claim; `groups delete` leaves it alone.
    Applying again changes nothing.
    """
    from cajajejo import submission

    lines = submission.apply_volume(
        volume_file, allow_dirty=flags["allow_dirty_repo"], namespace=flags["namespace"], dry_run=flags["dry_run"]
    )
    for line in lines:
        click.echo(line)


@volumes.command("delete")
@click.argument("volume_name")
@options.NAMESPACE_OPTION
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete_volume_command(volume_name: str, namespace: str | None, yes: bool) -> None:
    """Delete VOLUME_NAME, a claim `volumes apply` made, and its data (Kubernetes waits until no pod uses it)."""
    from cajajejo.errors import Problem, UserInputError
    from cajajejo.kube import dns1123_subdomain_problem

    problem = dns1123_subdomain_problem(volume_name)
    if problem:
        raise UserInputError(Problem("VOLUME_NAME", f"{volume_name!r} {problem}"))
    cluster, namespace = options.cluster_and_namespace(namespace)
    name = volume_name
    if not yes:
        click.confirm(f"delete volume {name} in namespace {namespace} and its data?", abort=True)
    click.echo(f"deleted {cluster.delete_volume(name, namespace)} in namespace {namespace}")
