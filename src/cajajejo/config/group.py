"""A job group file (seed 002): a header document, then one document per task, all run at once.

    ---
    name: train-eval            # the header
    execution: parallel
    placement: SAME_INFRA
    volumes: [{name: train-eval-ckpts, size: 10Gi}]
    ---
    name: trainer               # a training job: its config file (relative to this file) or inline
    volumes: {/checkpoints: train-eval-ckpts}
    training: ../training/debug.job_config.yml
    ---
    name: evaluator             # an evaluation job, here evaluating checkpoints as they appear
    volumes: {/checkpoints: train-eval-ckpts}
    evaluation: ../evaluation/debug.job_config.yml
    helm_config: ../evaluation/app/debug.conf
    watch: /checkpoints
    ---
    name: data-server           # a plain command (SkyPilot's task format): an image and a script
    image: python:3.12-slim
    resources: {cpus: 4+, memory: 32+}
    run: python data_server.py

These are the models of each document; `group_loader.py` reads the file, tells the task kinds apart,
loads the job configs they name and checks the rules that span documents.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from cajajejo import kube
from cajajejo.config.common import (
    IMAGE_REPOSITORY,
    IMAGE_TAG,
    KNOWN_GKE_ACCELERATORS,
    KubernetesConfig,
    PlainEnvName,
    PlainText,
    SecretRef,
    UserEnvName,
)
from cajajejo.config.fields import DnsLabel, DnsSubdomain, NonBlankText, StrictModel, positive_quantity
from cajajejo.config.training import MAX_NODES, RESERVED_MOUNT_PATHS, AbsolutePath, mount_overlap_problem
from cajajejo.errors import quoted
from cajajejo.names import dns1035_label_problem, is_group_variable, local_volume_variable

# Where a task's pods mount things of cajajejo's own: a volume there would hide them.
TASK_RESERVED_MOUNT_PATHS = (*RESERVED_MOUNT_PATHS, "/dev/shm")  # noqa: S108 - a mount path, not a temp file
AccessMode = Literal["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]

# SkyPilot's accelerator names, as GKE labels its nodes (cloud.google.com/gke-accelerator).
SKYPILOT_ACCELERATORS = {
    "A100": "nvidia-tesla-a100",
    "A100-80GB": "nvidia-a100-80gb",
    "H100": "nvidia-h100-80gb",
    "H100-MEGA": "nvidia-h100-mega-80gb",
    "H200": "nvidia-h200-141gb",
    "B200": "nvidia-b200",
    "GB200": "nvidia-gb200",
    "L4": "nvidia-l4",
    "T4": "nvidia-tesla-t4",
    "V100": "nvidia-tesla-v100",
    "P100": "nvidia-tesla-p100",
    "P4": "nvidia-tesla-p4",
    "K80": "nvidia-tesla-k80",
    "RTX-PRO-6000": "nvidia-rtx-pro-6000",
}
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+")
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}")


def _group_name(value: str) -> str:
    problem = dns1035_label_problem(value)
    if problem:
        raise ValueError(f"{quoted(value)} {problem}")
    return value


GroupName = Annotated[str, AfterValidator(_group_name)]  # it names the group's Service


def _number_text(value: Any) -> Any:
    """YAML reads `cpus: 4` as a number and `cpus: 4+` as text; keep both as text."""
    if isinstance(value, bool):
        return value  # refused by the str type, with its own message
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else value
    return value


def _gigabytes_or_quantity(value: str) -> str:
    """SkyPilot's sizes are gigabytes (`32`); a Kubernetes quantity (`16Gi`, `500Mi`) is taken as it is."""
    forms = "a number of gigabytes (32) or a Kubernetes quantity (32Gi)"
    return positive_quantity(f"{value}G" if _NUMBER.fullmatch(value) else value, forms)


Size = Annotated[str, BeforeValidator(_number_text), AfterValidator(_gigabytes_or_quantity)]


class AtLeast(StrictModel):
    """A resource amount; `at_least` (SkyPilot's `4+`) asks for a minimum instead of an exact amount."""

    amount: str
    at_least: bool


def _at_least(unit: str) -> Any:
    def parse(value: Any) -> Any:
        value = _number_text(value)
        if not isinstance(value, str):
            return value
        at_least = value.endswith("+")
        amount = value[:-1].strip() if at_least else value.strip()
        if unit == "cpu":
            if _NUMBER.fullmatch(amount) is None and kube.parse_quantity(amount) is None:
                raise ValueError(f"{quoted(value)} is not a CPU count such as 4, 4+ or 500m")
        else:
            amount = _gigabytes_or_quantity(amount)
        if (kube.parse_quantity(amount) or 0) <= 0:
            raise ValueError(f"{quoted(value)} must be greater than zero")
        return AtLeast(amount=amount, at_least=at_least)

    return BeforeValidator(parse)


def _accelerator(value: Any) -> Any:
    """`A100:1`, `A100` or `{A100: 1}` (SkyPilot) or a GKE name such as `nvidia-l4:2` -> (GKE name, count)."""
    if isinstance(value, dict):
        if len(value) != 1:
            raise ValueError("name one accelerator and its count, e.g. A100:1 (a choice of several is not supported)")
        ((name, count),) = value.items()
    elif isinstance(value, str):
        name, _, count_text = value.partition(":")
        count = count_text.strip() or 1
    else:
        raise ValueError(f"{quoted(value)} is not an accelerator such as A100:1")
    name = str(name).strip()
    gke = SKYPILOT_ACCELERATORS.get(name.upper()) or (name if name in KNOWN_GKE_ACCELERATORS else None)
    if gke is None:
        known = [*SKYPILOT_ACCELERATORS, *sorted(KNOWN_GKE_ACCELERATORS)]
        close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.6) or difflib.get_close_matches(
            name, known, n=1, cutoff=0.6
        )
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"unknown accelerator {quoted(name)}; {hint}use e.g. A100, H100, L4, T4 or a GKE name")
    if isinstance(count, bool) or not (isinstance(count, int) or (isinstance(count, str) and count.isdigit())):
        raise ValueError(f"accelerator count {quoted(count)} must be a whole number of GPUs")
    if not 1 <= int(count) <= 16:
        raise ValueError(f"accelerator count {count} must be from 1 to 16")
    return Accelerator(gke_name=gke, count=int(count))


class Accelerator(StrictModel):
    gke_name: str
    count: int


class Resources(StrictModel):
    """A plain command's resources, in SkyPilot's words: `cpus: 4+`, `memory: 32+` (GB), `accelerators: A100:1`.

    An amount with `+` is a request (the pod may use more); without it, memory is also the limit. CPU is
    never limited (a CPU limit throttles), as for every cajajejo job. Left out: no request.
    """

    cpus: Annotated[AtLeast, _at_least("cpu")] | None = None
    memory: Annotated[AtLeast, _at_least("memory")] | None = None
    accelerators: Annotated[Accelerator, BeforeValidator(_accelerator)] | None = None


def _image_reference(value: str) -> str:
    """A full image reference, as SkyPilot's tasks give it: repository[:tag][@sha256:digest]."""
    digest = _DIGEST.search(value)
    rest = value[: digest.start()] if digest is not None and digest.end() == len(value) else value
    repository, colon, tag = rest.rpartition(":")
    if not colon or "/" in tag:  # no tag: the colon, if any, belonged to a registry's port
        repository, tag = rest, ""
    if not IMAGE_REPOSITORY.fullmatch(repository) or (tag and not IMAGE_TAG.fullmatch(tag)):
        raise ValueError(f"{quoted(value)} is not an image such as registry.example.com/team/trainer:3f2c9d1")
    return value


ImageReference = Annotated[str, AfterValidator(_image_reference)]


def _env_value_text(value: Any) -> Any:
    # SkyPilot's envs take numbers and booleans too; a container's env values are text.
    if isinstance(value, bool):
        return "true" if value else "false"
    return _number_text(value)


EnvValue = Annotated[PlainText, BeforeValidator(_env_value_text)]


class TaskBase(StrictModel):
    """What every task has: its name, its pods, and the group's volumes it mounts (path -> volume)."""

    name: DnsLabel
    num_nodes: int | None = Field(default=None, ge=1, le=MAX_NODES)
    volumes: dict[AbsolutePath, DnsSubdomain] = Field(default_factory=dict)

    @field_validator("volumes")
    @classmethod
    def _mounts_apart(cls, volumes: dict[str, str]) -> dict[str, str]:
        problem = mount_overlap_problem([(v, p) for p, v in volumes.items()], TASK_RESERVED_MOUNT_PATHS)
        if problem:
            raise ValueError(f"{problem}; choose another mount path")
        return volumes

    @property
    def nodes(self) -> int:
        return self.num_nodes or 1


class CommandTask(TaskBase):
    """A plain command (SkyPilot's task format): `run` is a shell script, run by bash in `image`."""

    image: ImageReference
    run: NonBlankText
    envs: dict[PlainEnvName, EnvValue] = Field(default_factory=dict)
    secret_env: dict[UserEnvName, SecretRef] = Field(default_factory=dict)
    resources: Resources = Resources()

    @field_validator("envs", "secret_env")
    @classmethod
    def _group_variables_are_cajajejos(cls, env: dict[str, Any]) -> dict[str, Any]:
        taken = sorted(name for name in env if is_group_variable(name))
        if taken:
            raise ValueError(f"{', '.join(taken)} is set by cajajejo in every task of a group; choose another name")
        return env

    @field_validator("volumes")
    @classmethod
    def _one_local_variable_per_mount(cls, volumes: dict[str, str]) -> dict[str, str]:
        # Run on this machine (`groups run --local`), a command finds its volumes' folders in variables
        # named after the mount paths; two mounts with one name would leave the script one of the folders.
        seen: dict[str, str] = {}
        for mount in volumes:
            variable = local_volume_variable(mount)
            if variable in seen:
                raise ValueError(
                    f"mount paths {seen[variable]} and {mount} would both be {variable} in a local run "
                    "(groups run --local); change one of them"
                )
            seen[variable] = mount
        return volumes

    @model_validator(mode="after")
    def _env_names_once(self) -> CommandTask:
        both = set(self.envs) & set(self.secret_env)
        if both:
            raise ValueError(f"{', '.join(sorted(both))} set in both envs and secret_env; keep one")
        return self


def _config_reference(value: Any) -> Any:
    """A job config: the path of its file (relative to the group file) or the config itself, inline."""
    if isinstance(value, str):
        if not value.strip() or value.startswith("/") or "\x00" in value:
            raise ValueError(f"{quoted(value)} must be a path relative to the group file, or the config inline")
        return value
    if isinstance(value, dict):
        return value
    raise ValueError(f"expected a config file's path or the config itself (a mapping), found {quoted(value)}")


ConfigReference = Annotated[Any, AfterValidator(_config_reference)]


def _file_path(value: str) -> str:
    # The operating system ends a path at a NUL: what was written is not the file that would be read.
    if "\x00" in value:
        raise ValueError(f"{quoted(value)} is not a file path: it holds a NUL character")
    return value


FilePath = Annotated[NonBlankText, AfterValidator(_file_path)]  # a file the group file names, relative to it


class TrainingTask(TaskBase):
    """A training job (`kind: training` config); `num_nodes`, when given, must be its `training.nnodes`."""

    training: ConfigReference


class EvaluationTask(TaskBase):
    """An evaluation job and its HELM run specs; with `watch`, it evaluates each checkpoint that appears there."""

    evaluation: ConfigReference
    helm_config: FilePath
    watch: AbsolutePath | None = None

    @field_validator("num_nodes")
    @classmethod
    def _one_pod(cls, nodes: int | None) -> int | None:
        if nodes not in (None, 1):
            raise ValueError("an evaluation task runs in one pod; leave num_nodes out or set it to 1")
        return nodes

    @field_validator("watch")
    @classmethod
    def _on_a_mount(cls, watch: str | None, info: ValidationInfo) -> str | None:
        volumes = info.data.get("volumes", {})
        if watch is not None and not any(watch == path or watch.startswith(path + "/") for path in volumes):
            raise ValueError(
                f"{watch} is not on a volume of this task; mount the checkpoints' volume there "
                "(volumes: {/checkpoints: <volume>})"
            )
        return watch


# Which key makes a task document which kind of task.
TASK_KINDS: dict[str, tuple[str, type[TaskBase]]] = {
    "training": ("training", TrainingTask),
    "evaluation": ("evaluation", EvaluationTask),
    "run": ("command", CommandTask),
}


class GroupVolume(StrictModel):
    """A PersistentVolumeClaim the group makes. It outlives the group's pods (it holds checkpoints)."""

    name: DnsSubdomain
    size: Size
    access_mode: AccessMode = "ReadWriteMany"  # tasks on different nodes share it
    storage_class: DnsSubdomain | None = None  # None: the cluster's default class


class VolumeFileConfig(StrictModel):
    access_mode: AccessMode = "ReadWriteMany"
    storage_class_name: DnsSubdomain | None = None


def _kubernetes_infra(value: str) -> str:
    if value.split("/", 1)[0] not in ("k8s", "kubernetes"):
        raise ValueError(f"{quoted(value)}: cajajejo makes volumes on Kubernetes only (k8s or k8s/<context>)")
    return value


class VolumeFile(StrictModel):
    """A SkyPilot volume file (what `sky volume apply` reads), named in the header's `volume_files`."""

    name: DnsSubdomain
    type: Literal["k8s-pvc"]
    infra: Annotated[str, AfterValidator(_kubernetes_infra)] | None = None  # the kubeconfig's cluster is used
    size: Size | None = None
    use_existing: bool = False  # the claim exists already: the group mounts it, never makes or deletes it
    config: VolumeFileConfig = VolumeFileConfig()

    @model_validator(mode="after")
    def _size_to_make(self) -> VolumeFile:
        if self.size is None and not self.use_existing:
            raise ValueError("size is needed to make the volume (e.g. size: 10Gi), unless use_existing: true")
        return self

    def to_volume(self) -> GroupVolume:
        assert self.size is not None  # checked above for every volume the group makes
        return GroupVolume(
            name=self.name,
            size=self.size,
            access_mode=self.config.access_mode,
            storage_class=self.config.storage_class_name,
        )


class GroupHeader(StrictModel):
    """The first document: the group's name, how it runs, the volumes it makes or mounts, its pods' settings."""

    name: GroupName
    execution: Literal["parallel"]
    placement: Literal["SAME_INFRA"] = "SAME_INFRA"
    volumes: list[GroupVolume] = Field(default_factory=list)
    existing_volumes: list[DnsSubdomain] = Field(default_factory=list)
    volume_files: list[FilePath] = Field(default_factory=list)  # relative to the group file
    # The namespace of every task, and the pod settings of plain commands (a job config has its own).
    kubernetes_config: KubernetesConfig = KubernetesConfig()

    @model_validator(mode="after")
    def _no_prefix_and_volumes_once(self) -> GroupHeader:
        if self.kubernetes_config.job_name_prefix is not None:
            raise ValueError("job_name_prefix does not apply to a group: its jobs are named <group>-<task>")
        names = [volume.name for volume in self.volumes] + list(self.existing_volumes)
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"volume {', '.join(twice)} is named more than once in volumes and existing_volumes")
        bad_env = sorted(name for name in self.kubernetes_config.env if is_group_variable(name))
        if bad_env:
            raise ValueError(f"kubernetes_config.env sets {', '.join(bad_env)}, which cajajejo sets in every task")
        return self
