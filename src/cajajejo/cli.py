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
@click.option("--namespace", help="Namespace of the Job and ConfigMap (default: the config's, else 'default').")
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
            kubernetes_version=kubernetes_version or DEFAULT_KUBERNETES_VERSION,
            template_dir=template_dir,
            rng=random.Random(seed) if seed is not None else None,  # noqa: S311 - names, not secrets
        ),
    )
    write_text_atomically(output, plan.to_yaml())
    if str(output) != "-":
        click.echo(f"wrote {output}: job {plan.job_name} in namespace {plan.namespace}", err=True)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="cajajejo")


if __name__ == "__main__":
    main()
