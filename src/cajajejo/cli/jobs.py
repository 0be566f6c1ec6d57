"""`cajajejo jobs ...`: job configs, the manifests made from them, and the jobs on the cluster."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from cajajejo.cli.options import (
    ALLOW_DIRTY_REPO,
    BACKEND,
    CONFIG_VERSION_TO_STAMP,
    DRY_RUN,
    KUBERNETES_VERSION,
    NAMESPACE_OPTION,
    NAMESPACE_TO_RENDER,
    SLURM_HOST,
    SLURM_WORKDIR,
    SUBMIT_CONFIG_VERSION,
    SUBMIT_NAMESPACE,
    TEMPLATE_DIR,
    cluster_and_namespace,
    generated_name_rng,
    options_from,
    refuse_for_slurm,
    slurm_host,
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
        BACKEND,
        SLURM_WORKDIR,
    ]
    return with_options(options, command)


_KUBERNETES_RENDERING = ["namespace", "kubernetes_version", "template_dir"]


def _parse_for_slurm(kind: str, config: Path, helm_config: Path | None, output: Path, flags: dict[str, Any]) -> None:
    """parse-job --backend slurm: the job's batch script at OUTPUT (its config files go beside it on submit)."""
    from cajajejo.files import write_text_atomically
    from cajajejo.render.names import generate_job_name
    from cajajejo.render.plan import Provenance
    from cajajejo.settings import load_settings
    from cajajejo.submission import slurm_job_plan

    helm_path = flags.get("helm_config_path_in_repo", "unknown")
    rng = generated_name_rng(flags)
    plan = slurm_job_plan(
        config,
        helm_config,
        kind=kind,
        provenance=Provenance(flags["config_version"], flags["config_path_in_repo"], helm_path),
        settings=load_settings(),
        workdir=flags["workdir"],
        job_name=flags["job_name"] or (generate_job_name(kind=kind, rng=rng) if rng else None),
    )
    write_text_atomically(output, plan.script)
    if str(output) != "-":
        click.echo(f"wrote {output}: the Slurm batch script of {plan.title} (workdir {plan.workdir})", err=True)


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
    refuse_for_slurm(flags, _KUBERNETES_RENDERING)
    if flags["backend"] == "slurm":
        _parse_for_slurm(
            "evaluation", config, helm_config, output, {**flags, "helm_config_path_in_repo": helm_config_path_in_repo}
        )
        return
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
        BACKEND,
        SLURM_WORKDIR,
        SLURM_HOST,
    ]
    return with_options(options, command)


def _submit(kind: str, helm_config: Path | None, flags: dict[str, Any]) -> None:
    """Submit a saved spec (--job-spec-path) or render CONFIG from a clean tree and submit it."""
    from cajajejo import submission

    spec, config = flags["job_spec_path"], flags["path_to_config"]
    from_config = config is not None or helm_config is not None
    needs = "--path-to-config with --path-to-helm-config" if kind == "evaluation" else "--path-to-config"
    refuse_for_slurm(flags, ["namespace", "job_spec_path", "kubernetes_job_spec_output_path"])
    if (spec is not None) == from_config:
        raise click.UsageError(f"give either --job-spec-path, or {needs}")
    if spec is None and (config is None or (kind == "evaluation" and helm_config is None)):
        raise click.UsageError(f"{needs} go together")
    common = {"config_version": flags["config_version"], "dry_run": flags["dry_run"]}
    if flags["backend"] == "slurm":
        assert config is not None
        for line in submission.submit_to_slurm(
            config,
            helm_config,
            kind=kind,
            allow_dirty=flags["allow_dirty_repo"],
            workdir=flags["workdir"],
            slurm_host=flags["slurm_host"],
            **common,
        ):
            click.echo(line)
        return
    common["namespace"] = flags["namespace"]
    if spec is not None:
        if flags["allow_dirty_repo"] or flags["kubernetes_job_spec_output_path"] is not None:
            raise click.UsageError("--allow-dirty-repo and --kubernetes-job-spec-output-path need --path-to-config")
        result = submission.submit_job_spec(spec, **common)
    else:
        assert config is not None
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
    refuse_for_slurm(flags, _KUBERNETES_RENDERING)
    if flags["backend"] == "slurm":
        _parse_for_slurm("training", config, None, output, flags)
        return
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


_BACKEND_OPTIONS = [NAMESPACE_OPTION, BACKEND, SLURM_HOST]


@contextlib.contextmanager
def _job_backend(flags: dict[str, Any]) -> Iterator[Any]:
    """The JobBackend the flags name (Kubernetes in a namespace, or Slurm on a host), for one command."""
    from cajajejo.backends.jobs import KubernetesJobs, SlurmJobs
    from cajajejo.backends.slurm import slurm_on

    refuse_for_slurm(flags, ["namespace"])
    if flags["backend"] == "slurm":
        with slurm_host(flags["slurm_host"]) as host:
            yield SlurmJobs(slurm_on(host))
        return
    cluster, namespace = cluster_and_namespace(flags["namespace"])
    yield KubernetesJobs(cluster, namespace)


def _job_handle(flags: dict[str, Any], job: str) -> str:
    """A Kubernetes job name is checked here (a DNS label); a Slurm job id by the Slurm backend."""
    from cajajejo.render.names import check_dns_label

    return job if flags["backend"] == "slurm" else check_dns_label(job, "JOB_NAME")


@jobs.command("list")
@functools.partial(with_options, _BACKEND_OPTIONS)
def list_jobs(**flags: Any) -> None:
    """List the jobs cajajejo made in a namespace, newest first (with --backend slurm: your Slurm jobs)."""
    with _job_backend(flags) as backend:
        for line in backend.list_jobs():
            click.echo(line)


@jobs.command("status")
@click.argument("job_name")
@functools.partial(with_options, _BACKEND_OPTIONS)
def job_status(job_name: str, **flags: Any) -> None:
    """Show the state of JOB_NAME and of its pods (with --backend slurm, JOB_NAME is the Slurm job id)."""
    job = _job_handle(flags, job_name)
    with _job_backend(flags) as backend:
        for line in backend.job_status(job):
            click.echo(line)


@jobs.command("delete")
@click.argument("job_name")
@functools.partial(with_options, _BACKEND_OPTIONS)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete_job(job_name: str, yes: bool, **flags: Any) -> None:
    """Delete JOB_NAME, its pods and its ConfigMap (only jobs that cajajejo made). With --backend slurm:
    cancel Slurm job JOB_NAME (an id) unless it has ended; its files and logs stay."""
    job = _job_handle(flags, job_name)
    slurm = flags["backend"] == "slurm"
    with _job_backend(flags) as backend:
        if not yes:
            what = (
                f"cancel Slurm job {job}"
                if slurm
                else f"delete job {job} in namespace {backend.namespace}, its pods and its ConfigMap"
            )
            click.confirm(f"{what}?", abort=True)
        ended = backend.end_job(job)
        for item in ended:
            click.echo(f"{'cancelled' if slurm else 'deleted'} {item}")
        if slurm and not ended:
            click.echo(f"slurm job {job} had ended already: nothing to cancel")
