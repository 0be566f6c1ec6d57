"""The MLflow tags every cajajejo run carries, whatever its kind: provenance, image, compute, the config's tags.

Evaluation runs add their own (HELM, model) tags on top (`evaluation/tracking.py`), training runs
theirs (`training/tracking.py`). The provenance stamps come from the env vars the job manifest sets
(`runtime_contract`); a run outside a job fills them with placeholders that say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cajajejo import __version__
from cajajejo import runtime_contract as contract
from cajajejo.config.common import JobConfigBase
from cajajejo.provenance import DIRTY_SUFFIX

UNVERSIONED = "unversioned"  # CONFIG_VERSION of a run outside a job
LOCAL_JOB_NAME = "local"  # JOB_NAME of a run outside a job


@dataclass(frozen=True)
class Stamps:
    """Where a run's config came from: the commit, the config's path in the repository, the job's name."""

    config_version: str
    config_path_in_repo: str
    job_name: str


def stamps_from_env(environ: Mapping[str, str], config_path: str) -> Stamps:
    """The stamps in the job's env vars; unset ones become `unversioned`, `config_path` and `local`."""

    def read(name: str) -> str:
        return environ.get(name, "").strip()

    return Stamps(
        config_version=read(contract.ENV_CONFIG_VERSION) or UNVERSIONED,
        config_path_in_repo=read(contract.ENV_CONFIG_PATH) or config_path,
        job_name=read(contract.ENV_JOB_NAME) or LOCAL_JOB_NAME,
    )


def provenance_tags(config: JobConfigBase, stamps: Stamps) -> dict[str, str]:
    """The tags every kind shares, under the original tool's names."""
    compute = config.compute_config
    return {
        "config_git_sha": stamps.config_version,
        "config_path_git_repo": stamps.config_path_in_repo,
        "image_build_cajajejo_version": __version__,
        "job_name": stamps.job_name,
        "image": config.image,
        "image_tag": str(config.image_tag),
        "accelerator": str(compute.accelerator),
        "cpu": compute.cpu,
        "memory": compute.memory,
    }


def user_tags(config: JobConfigBase) -> dict[str, str]:
    """The config's tags as MLflow tag values: lists joined with commas, booleans as true/false."""
    tags = {}
    for key, value in config.tracking_config.tags.items():
        items = value if isinstance(value, list) else [value]
        tags[key] = ",".join(str(item).lower() if isinstance(item, bool) else str(item) for item in items)
    return tags


def run_tags(config: JobConfigBase, stamps: Stamps, own: Mapping[str, str]) -> dict[str, str]:
    """All tags of a run: the config's, then the shared ones and the kind's `own` (the config may not override).

    A clean 40-character commit also becomes `mlflow.source.git.commit`, and the config's description
    the run's note.
    """
    tags = {**user_tags(config), **provenance_tags(config, stamps), **own}
    sha = stamps.config_version.removesuffix(DIRTY_SUFFIX)
    if len(sha) == 40:
        tags["mlflow.source.git.commit"] = sha
    if config.tracking_config.description:
        tags["mlflow.note.content"] = config.tracking_config.description
    return tags
