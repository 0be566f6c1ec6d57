"""`cajajejo logs` and `cajajejo config show`: what a job printed, and which settings are in effect."""

from __future__ import annotations

from pathlib import Path

import click

from cajajejo.cli.options import BACKEND, NAMESPACE_OPTION, SLURM_HOST, SLURM_WORKDIR, refuse_for_slurm, slurm_host
from cajajejo.cli.root import cli


@cli.command("logs")
@click.argument("job_name")
@NAMESPACE_OPTION
@click.option(
    "--shift-unit",
    type=click.Choice(["days", "hours", "minutes"]),
    default="days",
    show_default=True,
    help="Unit of --shift-amount.",
)
@click.option(
    "--shift-amount",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Read entries from this far back.",
)
@click.option(
    "--output-path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the entries here: .jsonl for JSON Lines, .json for a JSON array.",
)
@click.option("--follow", "-f", is_flag=True, help="Keep polling for new entries until Ctrl-C.")
@click.option("--quiet", "-q", is_flag=True, help="Do not print entries (with --output-path).")
@click.option("--rank", type=click.IntRange(min=0), help="Only this pod of a training job (its node rank).")
@click.option("--task", help="Only this task of the group JOB_NAME (without it: every task, each line after [task]).")
@BACKEND
@SLURM_HOST
@SLURM_WORKDIR
def logs(
    job_name: str,
    namespace: str | None,
    shift_unit: str,
    shift_amount: int,
    output_path: Path | None,
    follow: bool,
    quiet: bool,
    rank: int | None,
    task: str | None,
    backend: str,
    slurm_host: str | None,
    workdir: str | None,
) -> None:
    """Print the container logs of JOB_NAME (a job, or a group of jobs) from Google Cloud Logging, oldest first.

    With --backend slurm, JOB_NAME is a Slurm job id and its output file is printed (--follow: until the
    job ends); --workdir finds the file once Slurm has forgotten the job.
    """
    flags = {"backend": backend, "slurm_host": slurm_host, "workdir": workdir, "namespace": namespace}
    refuse_for_slurm(
        {**flags, "output_path": output_path, "quiet": quiet, "rank": rank, "task": task},
        ["namespace", "output_path", "quiet", "rank", "task"],
    )
    if backend == "slurm":
        _slurm_logs(job_name, slurm_host, workdir, follow)
        return
    from cajajejo.log_output import FetchSummary, fetch_job_logs
    from cajajejo.settings import load_settings

    summary = FetchSummary()
    try:
        fetch_job_logs(
            job_name,
            settings=load_settings(),
            namespace=namespace,
            shift_unit=shift_unit,
            shift_amount=shift_amount,
            output_path=output_path,
            follow=follow,
            quiet=quiet,
            rank=rank,
            task=task,
            summary=summary,
        )
    except KeyboardInterrupt:
        if not follow:
            raise
    else:
        span = f" from {summary.first} to {summary.last}" if summary.count else ""
        click.echo(f"{summary.count:,} entries{span}" + (f"; wrote {output_path}" if output_path else ""), err=True)
    hint = summary.group_hint(job_name) if task is None else None
    if hint:
        click.echo(hint, err=True)


def _slurm_logs(job_id: str, host_option: str | None, workdir: str | None, follow: bool) -> None:
    import sys

    from cajajejo.backends.slurm import slurm_on
    from cajajejo.backends.slurm_jobs import follow_log, log_path
    from cajajejo.settings import load_settings

    with slurm_host(host_option) as host:
        cluster = slurm_on(host)
        path = log_path(cluster, job_id, workdir or load_settings().get("slurm_workdir"))
        click.echo(f"{path} on {host.name}:", err=True)
        try:
            for chunk in follow_log(cluster, job_id, path, follow=follow):
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
        except KeyboardInterrupt:
            if not follow:
                raise


@cli.group("config")
def config_group() -> None:
    """cajajejo's own settings."""


@config_group.command("show")
def config_show() -> None:
    """Print every setting, its effective value and where that value came from."""
    from cajajejo.settings import SPECS, load_settings

    settings = load_settings()
    for spec in SPECS:
        value = settings.get(spec.name)
        click.echo(f"{spec.name:<16} {value if value is not None else '(unset)':<45} {settings.source_of(spec.name)}")
