"""invoke tasks for the people who run jobs: `invoke --list`, `invoke --help <task>`.

Each task only parses its arguments and calls the cajajejo package, where the logic is tested.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke.context import Context
from invoke.tasks import task

from cajajejo.invoke_bridge import reported, task_with_short_flags

if TYPE_CHECKING:
    from cajajejo.submission import Submission


# The flags every submit task shares, with the same short letters and help.
_SUBMIT_SHORT = {"kubernetes_job_spec_output_path": "o", "allow_dirty_repo": "a", "namespace": "n", "dry_run": "d"}
_SUBMIT_HELP = {
    "kubernetes_job_spec_output_path": "also save the rendered job spec to this file",
    "allow_dirty_repo": "submit from a dirty tree anyway; the job is stamped '<sha>-dirty'",
    "namespace": "namespace to submit to (default: the config's, else the namespace setting)",
    "dry_run": "let the cluster validate everything, create nothing",
}


@task_with_short_flags(
    short={"config": "c", "helm_config": "r", **_SUBMIT_SHORT},
    help={
        "config": "evaluation job config (YAML), committed",
        "helm_config": "HELM run specs (HOCON .conf), committed",
        **_SUBMIT_HELP,
    },
)
@reported
def submit_evaluation_job(
    c: Context,
    config: str,
    helm_config: str,
    kubernetes_job_spec_output_path: str | None = None,
    allow_dirty_repo: bool = False,
    namespace: str | None = None,
    dry_run: bool = False,
) -> None:
    """Render an evaluation job from a clean git tree, stamp the commit into it and submit it."""
    from cajajejo.submission import submit_evaluation_job

    options = _submit_options(kubernetes_job_spec_output_path, allow_dirty_repo, namespace, dry_run)
    _print_submission(submit_evaluation_job(Path(config), Path(helm_config), **options))


@task_with_short_flags(
    short={"config": "c", **_SUBMIT_SHORT},
    help={"config": "training job config (YAML), committed", **_SUBMIT_HELP},
)
@reported
def submit_training_job(
    c: Context,
    config: str,
    kubernetes_job_spec_output_path: str | None = None,
    allow_dirty_repo: bool = False,
    namespace: str | None = None,
    dry_run: bool = False,
) -> None:
    """Render a training job (torchrun over nnodes pods) from a clean git tree, stamp the commit, submit it."""
    from cajajejo.submission import submit_training_job

    options = _submit_options(kubernetes_job_spec_output_path, allow_dirty_repo, namespace, dry_run)
    _print_submission(submit_training_job(Path(config), **options))


@task_with_short_flags(
    short={"group": "g", **_SUBMIT_SHORT},
    help={
        "group": "job group file (YAML), committed, with every file it names",
        "group_name": "submit the group under this name instead of its header's",
        **_SUBMIT_HELP,
    },
)
@reported
def submit_job_group(
    c: Context,
    group: str,
    kubernetes_job_spec_output_path: str | None = None,
    allow_dirty_repo: bool = False,
    namespace: str | None = None,
    dry_run: bool = False,
    group_name: str | None = None,
) -> None:
    """Render a job group (its tasks run at once) from a clean git tree, stamp the commit, submit it whole."""
    from cajajejo.submission import submit_group

    options = _submit_options(kubernetes_job_spec_output_path, allow_dirty_repo, namespace, dry_run)
    _print_submission(submit_group(Path(group), group_name=group_name, **options))


def _submit_options(output_path: str | None, allow_dirty: bool, namespace: str | None, dry_run: bool) -> dict[str, Any]:
    """The keyword arguments every `submit_*` function takes, from the flags every submit task has."""
    return {
        "spec_output_path": Path(output_path) if output_path else None,
        "allow_dirty": allow_dirty,
        "namespace": namespace,
        "dry_run": dry_run,
    }


def _print_submission(result: Submission[Any]) -> None:
    from cajajejo.submission import describe

    for warning in result.warnings:
        print(f"warning: {warning}")
    print("\n".join(describe(result)))


@task_with_short_flags(
    short={
        "job_name": "j",
        "shift_unit": "u",
        "shift_amount": "s",
        "output_path": "o",
        "namespace": "n",
        "follow": "f",
    },
    help={
        "job_name": "the job's name, e.g. eval-merciful-crocodile, or a group's",
        "shift_unit": "days, hours or minutes (default: days)",
        "shift_amount": "read entries from this many units back (default: 1)",
        "output_path": "also write the entries here: .jsonl (JSON Lines) or .json (JSON array)",
        "namespace": "the job's namespace (default: the namespace setting)",
        "follow": "keep polling for new entries until Ctrl-C",
        "task": "only this task of the group JOB_NAME (without it: every task, each line after [task])",
    },
)
@reported
def get_job_logs(
    c: Context,
    job_name: str,
    shift_unit: str = "days",
    shift_amount: int = 1,
    output_path: str | None = None,
    namespace: str | None = None,
    follow: bool = False,
    task: str | None = None,
) -> None:
    """Print a job's (or a job group's) container logs from Google Cloud Logging, oldest first."""
    from cajajejo.log_output import fetch_job_logs
    from cajajejo.settings import load_settings

    summary = fetch_job_logs(
        job_name,
        settings=load_settings(),
        namespace=namespace,
        shift_unit=shift_unit,
        shift_amount=int(shift_amount),
        output_path=Path(output_path) if output_path else None,
        follow=follow,
        task=task,
    )
    print(f"{summary.count:,} entries" + (f"; wrote {output_path}" if output_path else ""))
    hint = summary.group_hint(job_name, "invoke get-job-logs") if task is None else None
    if hint:
        print(hint)


@task
@reported
def authenticate_kubectl(c: Context) -> None:
    """Fetch kubectl credentials for the GKE cluster of your settings (gke_cluster, gcp_region, gcp_project)."""
    from cajajejo.images import authenticate_kubectl as authenticate
    from cajajejo.settings import load_settings
    from cajajejo.tools import run_tool

    authenticate(settings=load_settings(), run=run_tool)


@task
@reported
def docker_login(c: Context) -> None:
    """Let docker push to the registry of your settings, with your gcloud credentials."""
    from cajajejo.images import docker_login as login
    from cajajejo.settings import load_settings
    from cajajejo.tools import run_tool

    login(settings=load_settings(), run=run_tool)


@task_with_short_flags(
    short={"job_kind": "k", "tag": "t", "allow_dirty_repo": "a"},
    help={
        "job_kind": "which image: 'evaluation' builds evaluation.Dockerfile",
        "tag": "image tag (default: the commit the image is built from)",
        "allow_dirty_repo": "build from a dirty tree anyway; the tag ends in '-dirty'",
    },
)
@reported
def build_and_push_job_image(c: Context, job_kind: str, tag: str | None = None, allow_dirty_repo: bool = False) -> None:
    """Build a job image from a clean tree, tagged with its commit, and push it to the registry."""
    from cajajejo.images import build_and_push
    from cajajejo.settings import load_settings
    from cajajejo.tools import run_tool

    image = build_and_push(job_kind, settings=load_settings(), run=run_tool, tag=tag, allow_dirty=allow_dirty_repo)
    print(f"pushed {image}; pin it in job configs with image_tag: {image.rsplit(':', 1)[1]}")
