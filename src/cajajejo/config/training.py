"""The training job config: a torchrun DDP job over `nnodes` pods (seed 003), the shared fields in `common.py`.

A training job runs either the built-in trainer (`training.trainer`, see `cajajejo.training`) or the
user's own script inside the image (`training.script`), under torchrun on every pod. Field names are
the ones users write in YAML.
"""

from __future__ import annotations

import math
import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from cajajejo import runtime_contract
from cajajejo.config.common import JobConfigBase, PlainText
from cajajejo.config.fields import DnsSubdomain, NonBlankText, StrictModel
from cajajejo.errors import quoted

MAX_NODES = 4096  # pods of one job; an Indexed Job allows more, torchrun worlds this size are already rare
MAX_PROCS_PER_NODE = 64
DEFAULT_RDZV_PORT = 29500  # torchrun's own default, and the seed's
_HOST_PORT = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}")
# Paths the pod uses itself: a volume mounted there would hide the job's config or scratch space.
RESERVED_MOUNT_PATHS = (runtime_contract.CONFIG_DIR, runtime_contract.SCRATCH_DIR)


def _absolute_path(value: str) -> str:
    parts = PurePosixPath(value).parts
    if not value.startswith("/") or value == "/" or "\x00" in value or "\\" in value or ".." in parts:
        raise ValueError(f"{quoted(value)} must be an absolute path in the container, such as /out/checkpoints")
    if len(value) > 1024:
        raise ValueError(f"is {len(value)} characters long; at most 1024")
    return value.rstrip("/")


AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]


def _number_from_text(value: Any) -> Any:
    # YAML 1.1 reads 3e-3 (no dot) as text; a learning rate written that way is still meant as a number.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Number = Annotated[float, BeforeValidator(_number_from_text), AfterValidator(_finite)]


class VolumeMount(StrictModel):
    """An existing PersistentVolumeClaim, mounted into every pod of the job (seed: datasets → /data)."""

    claim_name: DnsSubdomain
    mount_path: AbsolutePath
    read_only: bool = False


class ClassifierModel(StrictModel):
    """The seed's smoke test: an MLP on a synthetic classification set, the same on every rank."""

    type: Literal["classifier"]
    samples: int = Field(default=4096, ge=16, le=100_000_000)
    features: int = Field(default=128, ge=1, le=65_536)
    classes: int = Field(default=4, ge=2, le=65_536)
    hidden: int = Field(default=256, ge=1, le=65_536)


class CausalLmModel(StrictModel):
    """A small Hugging Face causal LM (GPT-2 shape), saved as checkpoints HELM can evaluate."""

    type: Literal["causal_lm"]
    n_layer: int = Field(default=2, ge=1, le=128)
    n_head: int = Field(default=2, ge=1, le=128)
    n_embd: int = Field(default=64, ge=8, le=16_384)
    sequence_length: int = Field(default=64, ge=8, le=32_768)
    vocab_size: int = Field(default=512, ge=64, le=1_000_000)  # of a tokenizer trained on the training text
    model_dir: AbsolutePath | None = None  # start from these weights (a save_pretrained folder) instead
    tokenizer_dir: AbsolutePath | None = None  # else a byte-level BPE tokenizer is trained on the training text
    local_files_only: bool = True  # never reach the Hugging Face hub (seed §4, offline training)
    train_data: AbsolutePath | None = None  # a JSONL ({"text": ...}) or text file, or a folder of them
    validation_data: AbsolutePath | None = None  # else the last tenth of the training text

    @model_validator(mode="after")
    def _heads_divide_width(self) -> CausalLmModel:
        if self.model_dir is None and self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        return self


class TrainerConfig(StrictModel):
    """The built-in trainer (`cajajejo train`): the model, and how long and how fast it learns."""

    model: Annotated[ClassifierModel | CausalLmModel, Field(discriminator="type")]
    epochs: int = Field(default=2, ge=1, le=100_000)
    batch_size: int = Field(default=256, ge=1, le=1_000_000)  # per process
    learning_rate: Number = 3e-3
    weight_decay: Number = 0.0
    warmup_steps: int = Field(default=0, ge=0, le=10_000_000)
    seed: int = Field(default=42, ge=0, le=2**32 - 1)
    max_steps: int | None = Field(default=None, ge=1, le=10**12)  # stop after this many steps in all

    @model_validator(mode="after")
    def _positive_rate(self) -> TrainerConfig:
        if not 0 < self.learning_rate <= 10:
            raise ValueError(f"learning_rate {self.learning_rate} must be greater than 0 and at most 10")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay {self.weight_decay} must not be negative")
        return self


class ScriptCommand(StrictModel):
    """The user's own training script inside the image, run by torchrun on every pod."""

    path: NonBlankText  # e.g. /app/src/train_framework.py
    args: list[PlainText] = Field(default_factory=list)
    python: bool = True  # False: torchrun runs `path` as a program (--no-python)


class Rendezvous(StrictModel):
    """How torchrun's agents find each other: c10d hosted by pod 0 (default), or an etcd server."""

    backend: Literal["c10d", "etcd"] = "c10d"
    endpoint: str | None = None  # etcd only: host:port of the etcd server (v2 API)
    port: int = Field(default=DEFAULT_RDZV_PORT, ge=1024, le=65535)  # c10d: pod 0's port
    join_timeout_seconds: int = Field(default=900, ge=10, le=86_400)  # pods of a big job start over minutes

    @model_validator(mode="after")
    def _endpoint_fits_backend(self) -> Rendezvous:
        if self.backend == "etcd":
            if self.endpoint is None:
                raise ValueError("backend etcd needs endpoint: the etcd server's host:port, e.g. etcd.infra:2379")
            if not _HOST_PORT.fullmatch(self.endpoint) or not 0 < int(self.endpoint.rsplit(":", 1)[1]) < 65536:
                raise ValueError(f"endpoint {quoted(self.endpoint)} must be host:port, e.g. etcd.infra:2379")
        elif self.endpoint is not None:
            raise ValueError("endpoint is for backend etcd; with c10d, pod 0 hosts the rendezvous (set port)")
        return self


class CheckpointConfig(StrictModel):
    """Where and how often the built-in trainer checkpoints (see `cajajejo.checkpoints`)."""

    directory: AbsolutePath = "/out/checkpoints"
    every_steps: int = Field(default=100, ge=1, le=10**12)
    keep_last: int = Field(default=3, ge=1, le=100_000)


_IFNAME = re.compile(r"[\^=]?[A-Za-z0-9_.:-]{1,64}(?:,[\^=]?[A-Za-z0-9_.:-]{1,64})*")


def _interface_names(value: str) -> str:
    if not _IFNAME.fullmatch(value):
        raise ValueError(f"{quoted(value)} is not a list of interface names such as eth0 or ^lo,docker")
    return value


class NcclConfig(StrictModel):
    """NCCL's settings (seed §7); they matter only on GPUs."""

    debug: Literal["VERSION", "WARN", "INFO", "TRACE"] | None = "INFO"
    socket_ifname: Annotated[str, AfterValidator(_interface_names)] | None = None
    async_error_handling: bool = True  # TORCH_NCCL_ASYNC_ERROR_HANDLING=1: a hung collective fails the world


class TrainingSpec(StrictModel):
    """One torchrun world: `nnodes` pods with `nproc_per_node` processes each, running one command."""

    nnodes: int = Field(default=1, ge=1, le=MAX_NODES)
    nproc_per_node: int | None = Field(default=None, ge=1, le=MAX_PROCS_PER_NODE)  # None: GPUs per pod, else 1
    max_restarts: int = Field(default=3, ge=0, le=1000)  # torchrun restarts the whole world this often
    rendezvous: Rendezvous = Rendezvous()
    trainer: TrainerConfig | None = None
    script: ScriptCommand | None = None
    checkpoints: CheckpointConfig = CheckpointConfig()
    nccl: NcclConfig = NcclConfig()
    volumes: list[VolumeMount] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_command(self) -> TrainingSpec:
        if (self.trainer is None) == (self.script is None):
            found = "both" if self.trainer is not None else "neither"
            raise ValueError(f"set exactly one of trainer (the built-in trainer) or script (your own; found {found})")
        return self

    @model_validator(mode="after")
    def _mount_paths_apart(self) -> TrainingSpec:
        problem = mount_overlap_problem([(volume.claim_name, volume.mount_path) for volume in self.volumes])
        if problem:
            raise ValueError(f"{problem}; choose another mount_path")
        return self


def paths_overlap(a: str, b: str) -> bool:
    """Whether one of two absolute paths is the other or lies inside it."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def mount_overlap_problem(
    mounts: list[tuple[str, str]], reserved: tuple[str, ...] = RESERVED_MOUNT_PATHS
) -> str | None:
    """The first of `mounts` (volume, mount path) that overlaps one of `reserved` or an earlier mount, or None.

    Two mounts at nested paths hide each other's files, and one over cajajejo's own hides the job's config.
    """
    seen: list[str] = []
    for volume, path in mounts:
        for other in (*reserved, *seen):
            if paths_overlap(path, other):
                owner = "cajajejo's own" if other in reserved else "another volume's"
                return f"volume {volume} at {path} overlaps {owner} mount {other}"
        seen.append(path)
    return None


class TrainingJobConfig(JobConfigBase):
    """One training job: the shared fields and the torchrun world in `training`."""

    kind: Literal["training"]
    training: TrainingSpec

    @model_validator(mode="after")
    def _env_leaves_torchrun_alone(self) -> TrainingJobConfig:
        k8s = self.kubernetes_config
        taken = sorted((set(k8s.env) | set(k8s.secret_env)) & runtime_contract.TRAINING_ENV)
        if taken:
            raise ValueError(
                f"kubernetes_config env sets {', '.join(taken)}, which cajajejo sets for torchrun from the "
                "training section; remove it there (set nnodes, nproc_per_node, rendezvous or nccl instead)"
            )
        return self

    @property
    def nproc_per_node(self) -> int:
        """Processes per pod: as configured, else one per GPU, else one."""
        return self.training.nproc_per_node or self.compute_config.gpu_count or 1

    @property
    def world_size(self) -> int:
        return self.training.nnodes * self.nproc_per_node
