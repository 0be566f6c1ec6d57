"""Job images and cloud logins: the commands behind `invoke build-and-push-job-image`, `docker-login`
and `authenticate-kubectl`. Every value comes from settings or validated arguments; commands are
argument lists.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from cajajejo.config.common import IMAGE_TAG
from cajajejo.errors import Problem, UserInputError
from cajajejo.provenance import open_repository, require_clean_tree
from cajajejo.settings import Settings

Runner = Callable[[Sequence[str]], None]
_JOB_KIND = re.compile(r"[a-z][a-z0-9-]{0,30}")
# What GCP accepts for these names; checked so that no setting can pass for a gcloud option.
_GCP_NAMES = {
    "gke_cluster": re.compile(r"[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?"),
    "gcp_region": re.compile(r"[a-z]+-[a-z]+[0-9]+(?:-[a-z])?"),
    "gcp_project": re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]|[a-z0-9.-]+:[a-z][a-z0-9-]{4,28}[a-z0-9]"),
    "registry": re.compile(r"[a-z0-9.-]+(?::[0-9]+)?(?:/[a-z0-9._-]+)*"),
}
SHORT_SHA = 12


def dockerfile_for(job_kind: str, repo_root: Path) -> Path:
    """`<job_kind>.Dockerfile` at the repository root (evaluation.Dockerfile for evaluation jobs)."""
    if not _JOB_KIND.fullmatch(job_kind):
        raise UserInputError(Problem("JOB_KIND", f"{job_kind!r} is not a job kind such as 'evaluation'"))
    dockerfile = repo_root / f"{job_kind}.Dockerfile"
    if not dockerfile.is_file():
        raise UserInputError(Problem("JOB_KIND", f"no {dockerfile.name} at {repo_root}; the image is built from it"))
    return dockerfile


def _gcp_setting(settings: Settings, name: str, needed_for: str) -> str:
    value = settings.require(name, needed_for)
    if not _GCP_NAMES[name].fullmatch(value):
        raise UserInputError(
            Problem(f"setting {name}", f"{value!r} is not a valid {name} ({settings.source_of(name)})")
        )
    return value


def build_and_push(
    job_kind: str,
    *,
    settings: Settings,
    run: Runner,
    tag: str | None = None,
    allow_dirty: bool = False,
    start: Path | None = None,
) -> str:
    """Build `<registry>/<job_kind>:<tag>` from a clean tree and push it; returns the image reference.

    The tag defaults to the commit the image is built from, so a job config can pin exactly that.
    """
    repo_root = Path(open_repository(start or Path.cwd()).working_tree_dir or ".")
    dockerfile = dockerfile_for(job_kind, repo_root)
    version = require_clean_tree(repo_root, allow_dirty=allow_dirty, purpose="build an image")
    sha = version.removesuffix("-dirty")
    tag = tag or sha[:SHORT_SHA] + version[len(sha) :]
    if not IMAGE_TAG.fullmatch(tag):
        raise UserInputError(Problem("--tag", f"{tag!r} is not an image tag (letters, digits, '_', '.', '-')"))
    image = f"{_gcp_setting(settings, 'registry', 'push job images').rstrip('/')}/{job_kind}:{tag}"
    run(
        [
            "docker",
            "build",
            "--file",
            str(dockerfile),
            "--tag",
            image,
            "--label",
            f"org.opencontainers.image.revision={version}",
            str(repo_root),
        ]
    )
    run(["docker", "push", image])
    return image


def docker_login(*, settings: Settings, run: Runner) -> None:
    """Let docker push to the registry's host with the user's gcloud credentials."""
    registry = _gcp_setting(settings, "registry", "log docker in to the registry")
    run(["gcloud", "auth", "configure-docker", registry.split("/", 1)[0], "--quiet"])


def authenticate_kubectl(*, settings: Settings, run: Runner) -> None:
    """Write kubeconfig credentials for the GKE cluster named in settings."""
    run(
        [
            "gcloud",
            "container",
            "clusters",
            "get-credentials",
            _gcp_setting(settings, "gke_cluster", "authenticate kubectl"),
            "--location",
            _gcp_setting(settings, "gcp_region", "authenticate kubectl"),
            "--project",
            _gcp_setting(settings, "gcp_project", "authenticate kubectl"),
        ]
    )
