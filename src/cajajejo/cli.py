"""The `cajajejo` command line.

Start-up stays fast: this module imports only click; each command imports what it needs when it runs.
Every user mistake prints `error: where: what to do` (one line per problem) and exits 2; other
failures exit 1; a traceback appears only with `--trace`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import click

from cajajejo import __version__
from cajajejo.errors import EXIT_FAILURE, CajajejoError, Problem


class _ErrorReportingGroup(click.Group):
    """Turns CajajejoErrors (and unexpected ones) into short messages unless --trace was given."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except CajajejoError as exc:
            if ctx.params.get("trace"):
                raise
            for line in str(exc).splitlines():
                click.echo(f"error: {line}" if not line.startswith("  ") else line, err=True)
            ctx.exit(exc.exit_code)
        except Exception as exc:
            if ctx.params.get("trace"):
                raise
            click.echo(f"error: internal error: {type(exc).__name__}: {exc} (run with --trace for details)", err=True)
            ctx.exit(EXIT_FAILURE)


@click.group(cls=_ErrorReportingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--trace", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(__version__, prog_name="cajajejo")
def cli(trace: bool) -> None:
    """Render, check and run ML jobs (HELM evaluations first) on Kubernetes, reproducibly."""


@cli.group()
def jobs() -> None:
    """Job configs and the manifests made from them."""


@jobs.group()
def evaluation() -> None:
    """HELM evaluation jobs."""


def _warn(problems: tuple[Problem, ...]) -> None:
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)


@evaluation.command("validate-config")
@click.argument("config", type=click.Path(path_type=Path))
@click.option(
    "--helm-config", type=click.Path(path_type=Path), help="Also check this HELM run-spec file (HOCON .conf)."
)
def validate_config(config: Path, helm_config: Path | None) -> None:
    """Check an evaluation job CONFIG (YAML) without rendering anything."""
    from cajajejo.config.loader import load_evaluation_config
    from cajajejo.config.run_specs import load_run_specs

    loaded = load_evaluation_config(config)
    _warn(loaded.warnings)
    if helm_config is not None:
        load_run_specs(helm_config)
    click.echo(f"{config}: valid evaluation job config (version {loaded.config.version})")


@evaluation.command("parse-job")
@click.argument("config", type=click.Path(path_type=Path))
@click.argument("helm_config", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(path_type=Path, allow_dash=True))
@click.option("--job-name", help="Use this job name instead of a generated eval-<adjective>-<animal>.")
@click.option("--seed", type=int, help="Seed the generated job name, for repeatable output.")
@click.option(
    "--namespace", help="Namespace of the Job and ConfigMap (default: the config's, else the namespace setting)."
)
@click.option("--config-version", default="unversioned", show_default=True, help="Commit SHA stamped into the job.")
@click.option("--config-path-in-repo", default="unknown", show_default=True, help="CONFIG's path in the repository.")
@click.option(
    "--helm-config-path-in-repo", default="unknown", show_default=True, help="HELM_CONFIG's path in the repository."
)
@click.option("--kubernetes-version", default=None, help="Validate against this Kubernetes version's schema.")
@click.option(
    "--template-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder whose templates override the built-in ones (same relative paths).",
)
def parse_job(
    config: Path,
    helm_config: Path,
    output: Path,
    job_name: str | None,
    seed: int | None,
    namespace: str | None,
    config_version: str,
    config_path_in_repo: str,
    helm_config_path_in_repo: str,
    kubernetes_version: str | None,
    template_dir: Path | None,
) -> None:
    """Render CONFIG (evaluation job YAML) and HELM_CONFIG (HELM run specs, HOCON) into Kubernetes
    manifests at OUTPUT ('-' for stdout): a Job, its own ConfigMap with both files, and a StorageClass
    when the config asks for one. Everything is validated before anything is written.
    """
    from cajajejo.config.loader import load_evaluation_config
    from cajajejo.config.run_specs import load_run_specs
    from cajajejo.files import write_text_atomically
    from cajajejo.render.plan import Provenance, RenderOptions, render_evaluation_plan
    from cajajejo.render.schema import DEFAULT_KUBERNETES_VERSION
    from cajajejo.settings import load_settings

    settings = load_settings()
    loaded = load_evaluation_config(config)
    run_specs = load_run_specs(helm_config)
    _warn(loaded.warnings)
    plan = render_evaluation_plan(
        loaded,
        run_specs,
        Provenance(config_version, config_path_in_repo, helm_config_path_in_repo),
        RenderOptions(
            job_name=job_name,
            namespace=namespace,
            default_namespace=settings.get("namespace") or "default",
            default_service_account=settings.get("service_account"),
            kubernetes_version=kubernetes_version or DEFAULT_KUBERNETES_VERSION,
            template_dir=template_dir,
            rng=random.Random(seed) if seed is not None else None,  # noqa: S311 - names, not secrets
        ),
    )
    write_text_atomically(output, plan.to_yaml())
    if str(output) != "-":
        click.echo(f"wrote {output}: job {plan.job_name} in namespace {plan.namespace}", err=True)


@evaluation.command("submit-job")
@click.option(
    "--job-spec-path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Submit this job spec, written earlier by parse-job.",
)
@click.option("--path-to-config", type=click.Path(path_type=Path), help="Render this job config and submit it.")
@click.option("--path-to-helm-config", type=click.Path(path_type=Path), help="The HELM run specs for --path-to-config.")
@click.option(
    "--config-version",
    help="The commit you mean to submit; refused unless it matches the checked-out one (or the spec's stamp).",
)
@click.option("--namespace", help="Namespace to submit to (default: the config's, else the namespace setting).")
@click.option("--dry-run", is_flag=True, help="Let the cluster validate everything but create nothing.")
@click.option("--allow-dirty-repo", is_flag=True, help="Render from a dirty tree, stamped '<sha>-dirty'.")
@click.option(
    "--kubernetes-job-spec-output-path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also save the rendered job spec here (with --path-to-config).",
)
def submit_job(
    job_spec_path: Path | None,
    path_to_config: Path | None,
    path_to_helm_config: Path | None,
    config_version: str | None,
    namespace: str | None,
    dry_run: bool,
    allow_dirty_repo: bool,
    kubernetes_job_spec_output_path: Path | None,
) -> None:
    """Submit an evaluation job to the cluster of the current kubeconfig context.

    Either give --job-spec-path, or --path-to-config and --path-to-helm-config to render from a clean
    git tree (the commit is stamped into the job) and submit in one go. Submitting the same spec again
    changes nothing (server-side apply).
    """
    from cajajejo import submission

    from_config = path_to_config is not None or path_to_helm_config is not None
    if (job_spec_path is not None) == from_config:
        raise click.UsageError("give either --job-spec-path, or --path-to-config with --path-to-helm-config")
    if job_spec_path is not None:
        if allow_dirty_repo or kubernetes_job_spec_output_path is not None:
            raise click.UsageError("--allow-dirty-repo and --kubernetes-job-spec-output-path need --path-to-config")
        result = submission.submit_job_spec(
            job_spec_path, config_version=config_version, namespace=namespace, dry_run=dry_run
        )
    else:
        if path_to_config is None or path_to_helm_config is None:
            raise click.UsageError("--path-to-config and --path-to-helm-config go together")
        result = submission.submit_evaluation_job(
            path_to_config,
            path_to_helm_config,
            spec_output_path=kubernetes_job_spec_output_path,
            allow_dirty=allow_dirty_repo,
            namespace=namespace,
            dry_run=dry_run,
            config_version=config_version,
        )
    _warn(result.warnings)
    for line in submission.describe(result):
        click.echo(line)


_NAMESPACE_OPTION = click.option("--namespace", help="Namespace of the job (default: the namespace setting).")


def _cluster_and_namespace(namespace: str | None) -> tuple[Any, str]:
    from cajajejo.backends.kubernetes import KubernetesCluster, load_api_client
    from cajajejo.render.names import check_dns_label
    from cajajejo.settings import load_settings

    settings = load_settings()
    namespace = check_dns_label(namespace or settings.get("namespace") or "default", "--namespace")
    return KubernetesCluster(load_api_client(settings.get("kube_context"))), namespace


@jobs.command("list")
@_NAMESPACE_OPTION
def list_jobs(namespace: str | None) -> None:
    """List the jobs cajajejo made in a namespace, newest first."""
    cluster, namespace = _cluster_and_namespace(namespace)
    summaries = cluster.list_jobs(namespace)
    if not summaries:
        click.echo(f"no cajajejo jobs in namespace {namespace}")
        return
    click.echo(f"{'NAME':<45} {'STATE':<10} {'CREATED':<26} CONFIG VERSION")
    for job in summaries:
        click.echo(f"{job.name:<45} {job.state:<10} {job.created or '-':<26} {job.config_version or '-'}")


@jobs.command("status")
@click.argument("job_name")
@_NAMESPACE_OPTION
def job_status(job_name: str, namespace: str | None) -> None:
    """Show the state of JOB_NAME and of its pods."""
    from cajajejo.render.names import check_dns_label

    cluster, namespace = _cluster_and_namespace(namespace)
    job = cluster.job_status(check_dns_label(job_name, "JOB_NAME"), namespace)
    click.echo(f"job {job.name} in {job.namespace}: {job.state}")
    click.echo(f"  active {job.active}, succeeded {job.succeeded}, failed {job.failed}; created {job.created or '-'}")
    click.echo(f"  config version {job.config_version or '-'}")
    for pod in job.pods:
        click.echo(f"  pod {pod.name}: {pod.phase}" + (f" ({pod.reason})" if pod.reason else ""))


@jobs.command("delete")
@click.argument("job_name")
@_NAMESPACE_OPTION
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete_job(job_name: str, namespace: str | None, yes: bool) -> None:
    """Delete JOB_NAME, its pods and its ConfigMap (only jobs that cajajejo made)."""
    from cajajejo.render.names import check_dns_label

    cluster, namespace = _cluster_and_namespace(namespace)
    job_name = check_dns_label(job_name, "JOB_NAME")
    if not yes:
        click.confirm(f"delete job {job_name} in namespace {namespace}, its pods and its ConfigMap?", abort=True)
    for item in cluster.delete_job(job_name, namespace):
        click.echo(f"deleted {item}")


@cli.command("logs")
@click.argument("job_name")
@_NAMESPACE_OPTION
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
def logs(
    job_name: str,
    namespace: str | None,
    shift_unit: str,
    shift_amount: int,
    output_path: Path | None,
    follow: bool,
    quiet: bool,
) -> None:
    """Print the container logs of JOB_NAME from Google Cloud Logging, oldest first."""
    from cajajejo.log_output import fetch_job_logs
    from cajajejo.settings import load_settings

    try:
        summary = fetch_job_logs(
            job_name,
            settings=load_settings(),
            namespace=namespace,
            shift_unit=shift_unit,
            shift_amount=shift_amount,
            output_path=output_path,
            follow=follow,
            quiet=quiet,
        )
    except KeyboardInterrupt:
        if not follow:
            raise
        return
    span = f" from {summary.first} to {summary.last}" if summary.count else ""
    click.echo(f"{summary.count:,} entries{span}" + (f"; wrote {output_path}" if output_path else ""), err=True)


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
    from cajajejo.evaluation.runner import check_failures, evaluate, report

    result = evaluate(
        local=local,
        config=config,
        helm_config=helm_config,
        scratch_dir=scratch_dir,
        keep_tracking_uri=keep_tracking_uri,
    )
    for line in report(result):
        click.echo(line)
    check_failures(result)


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
    default=Path("jobs/evaluation/debug.job_config.yml"),
    show_default=True,
    help="The debug job config to start from.",
)
@click.option(
    "--helm-config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("jobs/evaluation/app/debug.conf"),
    show_default=True,
    help="HELM run specs that need no network.",
)
def quickstart_command(workdir: Path, config: Path, helm_config: Path) -> None:
    """Evaluate a tiny local model end to end: local MLflow, HELM's offline scenarios, no GPU, no network."""
    from cajajejo.evaluation.quickstart import quickstart
    from cajajejo.evaluation.runner import check_failures, report

    result = quickstart(workdir, config, helm_config)
    for line in report(result):
        click.echo(line)
    check_failures(result)


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
    from cajajejo.config.loader import load_evaluation_config
    from cajajejo.evaluation.model_fetch import fetch_model

    loaded = load_evaluation_config(config)
    files = fetch_model(loaded.config, scratch_dir)
    click.echo(f"model {files.helm_name} in {files.model_dir} (tokenizer {files.tokenizer_dir})")


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


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="cajajejo")


if __name__ == "__main__":
    main()
