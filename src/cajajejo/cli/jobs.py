"""`cajajejo jobs ...`: job configs, the manifests made from them, and the jobs on the cluster."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from cajajejo.cli.options import (
    ALLOW_DIRTY_REPO,
    CONFIG_VERSION_TO_STAMP,
    DRY_RUN,
    KUBERNETES_VERSION,
    NAMESPACE_OPTION,
    NAMESPACE_TO_RENDER,
    SUBMIT_CONFIG_VERSION,
    SUBMIT_NAMESPACE,
    TEMPLATE_DIR,
    cluster_and_namespace,
    options_from,
    spec_output_option,
    with_options,
    write_plan,
)
from cajajejo.cli.root import cli, warn


@cli.group()
def jobs() -> None:
    """Job configs and the manifests made from them."""


@jobs.group()
def evaluation() -> None:
    """HELM evaluation jobs."""


@evaluation.command("validate-config")
@click.argument("config", type=click.Path(path_type=Path))
@click.option(
    "--helm-config", type=click.Path(path_type=Path), help="Also check this HELM run-spec file (HOCON .conf)."
)
def validate_config(config: Path, helm_config: Path | None) -> None:
    """Check an evaluation job CONFIG (YAML) without rendering anything."""
    from cajajejo.config.loader import evaluation_inputs, load_evaluation_config
    from cajajejo.config.run_specs import load_run_specs

    loaded = load_evaluation_config(config)
    warn(loaded.warnings)
    if helm_config is not None:
        evaluation_inputs(loaded, load_run_specs(helm_config))
    click.echo(f"{config}: valid evaluation job config (version {loaded.config.version})")


def _render_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options every parse-job command takes: naming, namespace, stamps, schema version, templates."""
    options = [
        click.option(
            "--job-name", help="Use this job name instead of a generated <kind>-<adjective>-<animal>-<4 characters>."
        ),
        click.option("--seed", type=int, help="Seed the generated job name, for repeatable output."),
        NAMESPACE_TO_RENDER,
        CONFIG_VERSION_TO_STAMP,
        click.option("--config-path-in-repo", default="unknown", show_default=True, help="CONFIG's repository path."),
        KUBERNETES_VERSION,
        TEMPLATE_DIR,
    ]
    return with_options(options, command)


@evaluation.command("parse-job")
@click.argument("config", type=click.Path(path_type=Path))
@click.argument("helm_config", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(path_type=Path, allow_dash=True))
@_render_options
@click.option(
    "--helm-config-path-in-repo", default="unknown", show_default=True, help="HELM_CONFIG's path in the repository."
)
def parse_job(config: Path, helm_config: Path, output: Path, helm_config_path_in_repo: str, **flags: Any) -> None:
    """Render CONFIG (evaluation job YAML) and HELM_CONFIG (HELM run specs, HOCON) into Kubernetes
    manifests at OUTPUT ('-' for stdout): a Job, its own ConfigMap with both files, and a StorageClass
    when the config asks for one. Everything is validated before anything is written.
    """
    from cajajejo.config.loader import load_evaluation_config
    from cajajejo.config.run_specs import load_run_specs
    from cajajejo.render.evaluation import render_evaluation_plan
    from cajajejo.render.plan import Provenance

    loaded = load_evaluation_config(config)
    run_specs = load_run_specs(helm_config)
    warn(loaded.warnings)
    provenance = Provenance(flags["config_version"], flags["config_path_in_repo"], helm_config_path_in_repo)
    write_plan(render_evaluation_plan(loaded, run_specs, provenance, options_from(flags)), output)


def _submit_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options every submit-job command takes."""
    options = [
        click.option(
            "--job-spec-path",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Submit this job spec, written earlier by parse-job.",
        ),
        click.option("--path-to-config", type=click.Path(path_type=Path), help="Render this job config and submit it."),
        SUBMIT_CONFIG_VERSION,
        SUBMIT_NAMESPACE,
        DRY_RUN,
        ALLOW_DIRTY_REPO,
        spec_output_option(" (with --path-to-config)"),
    ]
    return with_options(options, command)


def _submit(kind: str, helm_config: Path | None, flags: dict[str, Any]) -> None:
    """Submit a saved spec (--job-spec-path) or render CONFIG from a clean tree and submit it."""
    from cajajejo import submission

    spec, config = flags["job_spec_path"], flags["path_to_config"]
    from_config = config is not None or helm_config is not None
    needs = "--path-to-config with --path-to-helm-config" if kind == "evaluation" else "--path-to-config"
    if (spec is not None) == from_config:
        raise click.UsageError(f"give either --job-spec-path, or {needs}")
    common = {"config_version": flags["config_version"], "namespace": flags["namespace"], "dry_run": flags["dry_run"]}
    if spec is not None:
        if flags["allow_dirty_repo"] or flags["kubernetes_job_spec_output_path"] is not None:
            raise click.UsageError("--allow-dirty-repo and --kubernetes-job-spec-output-path need --path-to-config")
        result = submission.submit_job_spec(spec, **common)
    else:
        if config is None or (kind == "evaluation" and helm_config is None):
            raise click.UsageError(f"{needs} go together")
        result = submission.submit_job(
            config,
            helm_config,
            kind=kind,
            spec_output_path=flags["kubernetes_job_spec_output_path"],
            allow_dirty=flags["allow_dirty_repo"],
            **common,
        )
    warn(result.warnings)
    for line in submission.describe(result):
        click.echo(line)


@evaluation.command("submit-job")
@_submit_options
@click.option("--path-to-helm-config", type=click.Path(path_type=Path), help="The HELM run specs for --path-to-config.")
def submit_job(path_to_helm_config: Path | None, **flags: Any) -> None:
    """Submit an evaluation job to the cluster of the current kubeconfig context.

    Either give --job-spec-path, or --path-to-config and --path-to-helm-config to render from a clean
    git tree (the commit is stamped into the job) and submit in one go. The cluster checks every
    object in a dry run before anything is made; a failure midway deletes what was made. Submitting
    the same spec again changes nothing; a spec whose job name another job holds is refused.
    """
    _submit("evaluation", path_to_helm_config, flags)


@jobs.group()
def training() -> None:
    """torchrun DDP training jobs: an Indexed Job of nnodes pods, a headless Service, a ConfigMap."""


@training.command("validate-config")
@click.argument("config", type=click.Path(path_type=Path))
def validate_training_config(config: Path) -> None:
    """Check a training job CONFIG (YAML) without rendering anything."""
    from cajajejo.config.loader import load_training_config, training_inputs

    loaded = load_training_config(config)
    warn(loaded.warnings)
    training_inputs(loaded)
    world = f"{loaded.config.training.nnodes} pod(s) x {loaded.config.nproc_per_node} process(es)"
    click.echo(f"{config}: valid training job config (version {loaded.config.version}; {world})")


@training.command("parse-job")
@click.argument("config", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(path_type=Path, allow_dash=True))
@_render_options
def parse_training_job(config: Path, output: Path, **flags: Any) -> None:
    """Render CONFIG (training job YAML) into Kubernetes manifests at OUTPUT ('-' for stdout): an Indexed
    Job of `nnodes` pods running torchrun, a headless Service naming each pod, and the job's ConfigMap.
    Everything is validated before anything is written.
    """
    from cajajejo.config.loader import load_training_config
    from cajajejo.render.plan import Provenance
    from cajajejo.render.training import render_training_plan

    loaded = load_training_config(config)
    warn(loaded.warnings)
    provenance = Provenance(flags["config_version"], flags["config_path_in_repo"])
    write_plan(render_training_plan(loaded, provenance, options_from(flags)), output)


@training.command("submit-job")
@_submit_options
def submit_training_job(**flags: Any) -> None:
    """Submit a training job to the cluster of the current kubeconfig context.

    Either give --job-spec-path, or --path-to-config to render from a clean git tree (the commit is
    stamped into the job) and submit in one go; all or nothing, as for evaluation jobs.
    """
    _submit("training", None, flags)


@jobs.command("list")
@NAMESPACE_OPTION
def list_jobs(namespace: str | None) -> None:
    """List the jobs cajajejo made in a namespace, newest first."""
    cluster, namespace = cluster_and_namespace(namespace)
    summaries = cluster.list_jobs(namespace)
    if not summaries:
        click.echo(f"no cajajejo jobs in namespace {namespace}")
        return
    click.echo(f"{'NAME':<45} {'KIND':<11} {'STATE':<10} {'CREATED':<26} CONFIG VERSION")
    for job in summaries:
        click.echo(
            f"{job.name:<45} {job.kind:<11} {job.state:<10} {job.created or '-':<26} {job.config_version or '-'}"
        )


@jobs.command("status")
@click.argument("job_name")
@NAMESPACE_OPTION
def job_status(job_name: str, namespace: str | None) -> None:
    """Show the state of JOB_NAME and of its pods."""
    from cajajejo.render.names import check_dns_label

    cluster, namespace = cluster_and_namespace(namespace)
    job = cluster.job_status(check_dns_label(job_name, "JOB_NAME"), namespace)
    pods = f"; {job.completions} pods" if job.completions > 1 else ""
    click.echo(f"{job.kind} job {job.name} in {job.namespace}: {job.state}{pods}")
    click.echo(f"  active {job.active}, succeeded {job.succeeded}, failed {job.failed}; created {job.created or '-'}")
    click.echo(f"  config version {job.config_version or '-'}")
    for pod in job.pods:
        rank = f" (rank {pod.rank})" if pod.rank is not None else ""
        click.echo(f"  pod {pod.name}{rank}: {pod.phase}" + (f" ({pod.reason})" if pod.reason else ""))


@jobs.command("delete")
@click.argument("job_name")
@NAMESPACE_OPTION
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete_job(job_name: str, namespace: str | None, yes: bool) -> None:
    """Delete JOB_NAME, its pods and its ConfigMap (only jobs that cajajejo made)."""
    from cajajejo.render.names import check_dns_label

    cluster, namespace = cluster_and_namespace(namespace)
    job_name = check_dns_label(job_name, "JOB_NAME")
    if not yes:
        click.confirm(f"delete job {job_name} in namespace {namespace}, its pods and its ConfigMap?", abort=True)
    for item in cluster.delete_job(job_name, namespace):
        click.echo(f"deleted {item}")
