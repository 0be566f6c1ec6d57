"""Options and helpers that the job and group commands share, so that they mean the same everywhere."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

NAMESPACE_OPTION = click.option("--namespace", help="Namespace of the job or group (default: the namespace setting).")


# Options every parse command takes (jobs and groups): where, which commit, which schema, which templates.
NAMESPACE_TO_RENDER = click.option(
    "--namespace", help="Namespace of the objects (default: the config's, else the namespace setting)."
)
CONFIG_VERSION_TO_STAMP = click.option(
    "--config-version", default="unversioned", show_default=True, help="Commit SHA stamped in."
)
KUBERNETES_VERSION = click.option(
    "--kubernetes-version", default=None, help="Validate against this Kubernetes version's schema."
)
TEMPLATE_DIR = click.option(
    "--template-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder whose templates override the built-in ones (same relative paths).",
)


# Options every submit command takes (jobs and groups).
SUBMIT_CONFIG_VERSION = click.option(
    "--config-version",
    help="The commit you mean to submit; refused unless it matches the checked-out one (or the spec's stamp).",
)
SUBMIT_NAMESPACE = click.option(
    "--namespace", help="Namespace to submit to (default: the config's, else the namespace setting)."
)
DRY_RUN = click.option("--dry-run", is_flag=True, help="Let the cluster validate everything but create nothing.")
ALLOW_DIRTY_REPO = click.option(
    "--allow-dirty-repo", is_flag=True, help="Render from a dirty tree, stamped '<sha>-dirty'."
)


def spec_output_option(needs: str) -> Callable[[Any], Any]:
    return click.option(
        "--kubernetes-job-spec-output-path",
        type=click.Path(path_type=Path, dir_okay=False),
        help=f"Also save the rendered spec here{needs}.",
    )


def with_options(options: list[Callable[[Any], Any]], command: Callable[..., None]) -> Callable[..., None]:
    """`command` with `options`, listed in the order `--help` shows them."""
    for option in reversed(options):
        command = option(command)
    return command


def options_from(flags: dict[str, Any]) -> Any:
    """RenderOptions from the flags of a parse command, with the defaults from settings."""
    from cajajejo.render.plan import RenderOptions
    from cajajejo.render.schema import DEFAULT_KUBERNETES_VERSION
    from cajajejo.settings import load_settings

    return RenderOptions.from_settings(
        load_settings(),
        job_name=flags.get("job_name"),
        namespace=flags["namespace"],
        kubernetes_version=flags["kubernetes_version"] or DEFAULT_KUBERNETES_VERSION,
        template_dir=flags["template_dir"],
        rng=generated_name_rng(flags),
    )


def write_plan(plan: Any, output: Path) -> None:
    """Write a rendered plan to OUTPUT ('-': stdout) whole or not at all, and say what was written."""
    from cajajejo.files import write_text_atomically
    from cajajejo.render.checks import client_side_apply_warnings

    write_text_atomically(output, plan.to_yaml())
    for note in client_side_apply_warnings(list(plan.documents)):
        click.echo(f"warning: {note}", err=True)
    if str(output) != "-":
        click.echo(f"wrote {output}: {plan.title} in namespace {plan.namespace}", err=True)


def cluster_and_namespace(namespace: str | None) -> tuple[Any, str]:
    from cajajejo.backends.kubernetes import KubernetesCluster, load_api_client
    from cajajejo.render.names import check_dns_label
    from cajajejo.settings import load_settings

    settings = load_settings()
    namespace = check_dns_label(namespace or settings.get("namespace") or "default", "--namespace")
    return KubernetesCluster(load_api_client(settings.get("kube_context"))), namespace


def check_label_option(value: str, option: str) -> None:
    """A role or worker name given on the command line, checked before any work starts (one line, exit 2)."""
    from cajajejo.checkpoints import check_label
    from cajajejo.errors import Problem, UserInputError

    try:
        check_label(value, option.lstrip("-"))
    except ValueError as exc:
        raise UserInputError(Problem(option, str(exc))) from None


# Where a job goes, and the Slurm options that come with it.
BACKEND = click.option(
    "--backend",
    type=click.Choice(["kubernetes", "slurm"]),
    default="kubernetes",
    show_default=True,
    help="Where the job runs: Kubernetes manifests, or a Slurm batch script.",
)
SLURM_WORKDIR = click.option(
    "--workdir", help="With --backend slurm: the shared folder on the cluster (default: slurm.workdir, slurm_workdir)."
)
SLURM_HOST = click.option(
    "--slurm-host",
    help="With --backend slurm: the login node as [user@]host[:port], over SSH (default: slurm_host, else here).",
)


def refuse_for_slurm(flags: dict[str, Any], names: list[str]) -> None:
    """Kubernetes-only options given with --backend slurm: refused, not silently dropped."""
    given = [name for name in names if flags.get(name) not in (None, False)]
    if flags.get("backend") == "slurm" and given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        raise click.UsageError(f"{options}: for Kubernetes only, not with --backend slurm")
    if flags.get("backend") != "slurm":
        slurm_only = [name for name in ("workdir", "slurm_host") if flags.get(name) is not None]
        if slurm_only:
            options = ", ".join("--" + name.replace("_", "-") for name in slurm_only)
            raise click.UsageError(f"{options}: need --backend slurm")


@contextlib.contextmanager
def slurm_host(option: str | None) -> Iterator[Any]:
    """The Slurm host of --slurm-host (else the slurm_host setting, else this machine), closed after."""
    from cajajejo.backends.hosts import connect_host
    from cajajejo.settings import load_settings

    host = connect_host(option or load_settings().get("slurm_host"))
    try:
        yield host
    finally:
        host.close()


def generated_name_rng(flags: dict[str, Any]) -> random.Random | None:
    seed = flags.get("seed")
    return random.Random(seed) if seed is not None else None  # noqa: S311 - names, not secrets
