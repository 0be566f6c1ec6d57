"""Fields every job kind shares: image, compute, Kubernetes settings, env and secret env, MLflow, tracking.

Each kind's config (`evaluation.py`, `training.py`) derives from `JobConfigBase`, so a rule about a
shared field is written once and holds for every kind.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from cajajejo import kube, runtime_contract
from cajajejo.config.fields import (
    DnsLabel,
    DnsSubdomain,
    EnvVarName,
    LabelKey,
    LabelValue,
    NonBlankText,
    Quantity,
    SecretKey,
    StrictModel,
)
from cajajejo.config.slurm import SlurmSettings
from cajajejo.credentials import credential_in_url, credential_in_value, is_credential_name
from cajajejo.errors import quoted

SUPPORTED_VERSIONS = ("v4",)

# Values of the node label `cloud.google.com/gke-accelerator` that GKE documents for its GPUs.
KNOWN_GKE_ACCELERATORS = frozenset(
    {
        "nvidia-tesla-k80",
        "nvidia-tesla-p4",
        "nvidia-tesla-p100",
        "nvidia-tesla-v100",
        "nvidia-tesla-t4",
        "nvidia-tesla-a100",
        "nvidia-a100-80gb",
        "nvidia-l4",
        "nvidia-h100-80gb",
        "nvidia-h100-mega-80gb",
        "nvidia-h200-141gb",
        "nvidia-b200",
        "nvidia-gb200",
        "nvidia-rtx-pro-6000",
    }
)
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"

_DOMAIN = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REPOSITORY = re.compile(rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*")
IMAGE_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_MLFLOW_TAG_KEY = re.compile(r"[\w./ -]{1,250}")
INT32_MAX = 2**31 - 1
MAX_ENV_BYTES = 256 * 1024
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_USE_SECRET_ENV_HINT = "give it through kubernetes_config.secret_env (a Kubernetes Secret) instead"  # noqa: S105 - advice, not a password

ScalarTag = str | int | float | bool


def no_credential_in(value: str) -> str:
    """`value` unless it looks like it holds a credential; the error never repeats the value."""
    what = credential_in_value(value)
    if what:
        raise ValueError(f"looks like it holds a credential ({what}); {_USE_SECRET_ENV_HINT}")
    return value


PlainText = Annotated[str, AfterValidator(no_credential_in)]


def _check_version(value: Any) -> Any:
    if value not in SUPPORTED_VERSIONS:
        supported = ", ".join(SUPPORTED_VERSIONS)
        raise ValueError(f"unsupported config version {quoted(value)}; this cajajejo reads version {supported}")
    return value


def _check_image(value: str) -> str:
    last = value.rsplit("/", 1)[-1]
    if "@" in value or ":" in last:
        raise ValueError(f"{quoted(value)} includes a tag or digest; put the repository here and the tag in image_tag")
    if not IMAGE_REPOSITORY.fullmatch(value):
        raise ValueError(f"{quoted(value)} is not an image repository such as registry.example.com/team/evaluation")
    return value


def _check_tag(value: str) -> str:
    if not IMAGE_TAG.fullmatch(value):
        raise ValueError(f"{quoted(value)} is not an image tag (letters, digits, '_', '.', '-'; at most 128)")
    return value


def _check_tag_value(value: Any) -> Any:
    # One hand-written check instead of a pydantic union, which would report one error per member type.
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, ScalarTag) or (isinstance(item, float) and item != item):
            raise ValueError("a tag value must be text, a number, true/false, or a list of those")
        if isinstance(item, str):
            no_credential_in(item)
    return value


TagValue = Annotated[Any, AfterValidator(_check_tag_value)]

# Rules on single keys and items are checked per key/item, not on the whole dict or list: then a
# wrong value elsewhere in the same block does not hide them, and every problem is reported in one run.


def _check_tag_name(key: str) -> str:
    if not _MLFLOW_TAG_KEY.fullmatch(key):
        raise ValueError(f"tag name {quoted(key)}: MLflow allows letters, digits, '_', '-', '.', '/' and spaces")
    if key in runtime_contract.RESERVED_TAGS or key.startswith(("mlflow.", "cajajejo.")):
        raise ValueError(f"tag name {quoted(key)} is set by cajajejo itself; choose another name")
    if is_credential_name(key):
        raise ValueError(f"tag name {quoted(key)} names a credential; MLflow tags are readable, {_USE_SECRET_ENV_HINT}")
    return key


def _check_node_selector_key(key: str) -> str:
    if key == GKE_ACCELERATOR_LABEL:
        raise ValueError(f"{GKE_ACCELERATOR_LABEL!r} is set from compute_config.accelerator; remove it here")
    return key


def _check_env_name_is_free(name: str) -> str:
    if name in runtime_contract.RESERVED_ENV:
        raise ValueError(f"{name} is set by cajajejo; choose another name")
    return name


def _check_not_a_credential_name(name: str) -> str:
    if is_credential_name(name):
        raise ValueError(f"{name} looks like a credential; move it to secret_env so its value stays in a Secret")
    return name


TagName = Annotated[str, AfterValidator(_check_tag_name)]
NodeSelectorKey = Annotated[LabelKey, AfterValidator(_check_node_selector_key)]
UserEnvName = Annotated[EnvVarName, AfterValidator(_check_env_name_is_free)]
PlainEnvName = Annotated[UserEnvName, AfterValidator(_check_not_a_credential_name)]


class ScratchStorageClass(StrictModel):
    """Ask for a GKE persistent-disk StorageClass to be created along with the job."""

    disk_type: Literal["pd-standard", "pd-balanced", "pd-ssd", "pd-extreme", "hyperdisk-balanced"] = "pd-balanced"


class ScratchVolume(StrictModel):
    """The generic ephemeral volume where the model is downloaded and HELM writes its output."""

    size: Quantity = "50Gi"
    storage_class: DnsSubdomain | None = None  # None: the cluster's default StorageClass
    provision_storage_class: ScratchStorageClass | None = None

    @model_validator(mode="after")
    def _provisioning_needs_a_name(self) -> ScratchVolume:
        if self.provision_storage_class is not None and self.storage_class is None:
            raise ValueError("provision_storage_class needs storage_class: the name of the class to create")
        return self


class ComputeConfig(StrictModel):
    accelerator: str | None = None  # None: a CPU-only job
    accelerator_count: int | None = Field(default=None, ge=1, le=16)
    allow_custom_accelerator: bool = False
    cpu: Quantity
    memory: Quantity
    scratch: ScratchVolume = ScratchVolume()

    @model_validator(mode="after")
    def _accelerator_is_known(self) -> ComputeConfig:
        if self.accelerator is None:
            if self.accelerator_count is not None:
                raise ValueError("accelerator_count is set but accelerator is not; set both or neither")
        elif self.accelerator not in KNOWN_GKE_ACCELERATORS and not self.allow_custom_accelerator:
            close = difflib.get_close_matches(self.accelerator, sorted(KNOWN_GKE_ACCELERATORS), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"unknown GKE accelerator {quoted(self.accelerator)}; {hint}the README lists the known ones; "
                "for another set allow_custom_accelerator: true"
            )
        elif problem := kube.label_value_problem(self.accelerator):
            # It becomes the value of the node selector label cloud.google.com/gke-accelerator.
            raise ValueError(f"accelerator {quoted(self.accelerator)} is not a node label value: it {problem}")
        return self

    @property
    def gpu_count(self) -> int:
        if self.accelerator is None:
            return 0
        return self.accelerator_count or 1


def urlsplit_problem(value: str) -> str | None:
    """Why Python cannot split `value` as a URL (e.g. an unclosed '[' of an IPv6 host), or None."""
    try:
        urlsplit(value)
    except ValueError as exc:
        return str(exc)
    return None


class MlflowConfig(StrictModel):
    tracking_uri: NonBlankText

    @field_validator("tracking_uri")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        # The URI lands in a ConfigMap and in MLflow tags: credentials belong in a Kubernetes Secret.
        # No message here repeats the URI: it may hold a password.
        where = credential_in_url(value) or credential_in_value(value)
        unsplittable = urlsplit_problem(value)
        if where is None and unsplittable:
            raise ValueError(f"is not a valid URI ({unsplittable})")
        if where is None and "#" in value:
            where = "a URL with a fragment (#...)"
        if where:
            raise ValueError(
                f"must not contain credentials ({where}); give them through kubernetes_config.secret_env "
                "(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN)"
            )
        return value


class TrackingConfig(StrictModel):
    experiment_name: Annotated[NonBlankText, AfterValidator(no_credential_in)]
    description: PlainText | None = None
    run_name: PlainText | None = None
    tags: dict[TagName, TagValue] = Field(default_factory=dict)


class Toleration(StrictModel):
    """A pod toleration, with the rules the API server applies to it (core/v1 validation)."""

    key: LabelKey | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)

    @model_validator(mode="after")
    def _as_the_api_server_checks(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("value must be empty when operator is Exists; remove value or use operator: Equal")
        if not self.key and self.operator != "Exists":
            raise ValueError("a toleration without key tolerates every taint only with operator: Exists; set key")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError(
                "toleration_seconds needs effect: NoExecute (it is how long a NoExecute taint is tolerated)"
            )
        return self


class SecretRef(StrictModel):
    """An environment variable read from a Kubernetes Secret: the manifest names it, never its value."""

    secret: DnsSubdomain
    key: SecretKey


class KubernetesConfig(StrictModel):
    """What the original tool hard-coded in its manifest template."""

    namespace: DnsLabel | None = None  # None: from settings, else "default"
    service_account: DnsSubdomain | None = None
    job_name_prefix: DnsLabel | None = None  # at most 20 characters, so that names stay <= 63
    # Bounds as the API server has them: int32 for the first two, int64 for the deadline.
    ttl_seconds_after_finished: int | None = Field(default=1800, ge=0, le=INT32_MAX)
    backoff_limit: int = Field(default=3, ge=0, le=100)
    active_deadline_seconds: int | None = Field(default=None, ge=1, le=INT64_MAX)
    node_selector: dict[NodeSelectorKey, LabelValue] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    env: dict[PlainEnvName, PlainText] = Field(default_factory=dict)
    secret_env: dict[UserEnvName, SecretRef] = Field(default_factory=dict)
    image_pull_secrets: list[DnsSubdomain] = Field(default_factory=list)  # Secrets for a private registry

    @field_validator("job_name_prefix")
    @classmethod
    def _prefix_leaves_room_for_words(cls, prefix: str | None) -> str | None:
        if prefix is not None and len(prefix) > 20:
            raise ValueError(f"{quoted(prefix)} is {len(prefix)} characters long; at most 20 leave room for the words")
        return prefix

    @model_validator(mode="after")
    def _env_names_are_free(self) -> KubernetesConfig:
        both = set(self.env) & set(self.secret_env)
        if both:
            raise ValueError(f"{', '.join(sorted(both))} set in both env and secret_env; keep one")
        return self

    @model_validator(mode="after")
    def _env_fits_in_a_job(self) -> KubernetesConfig:
        # Each container of the Job gets a copy, and the API server stores an object of at most ~1.5 MiB.
        size = sum(len(name.encode()) + len(value.encode()) for name, value in self.env.items())
        if size > MAX_ENV_BYTES:
            raise ValueError(
                f"env holds {size} bytes; at most {MAX_ENV_BYTES} fit (each container of the Job gets a copy "
                "and a Kubernetes object holds about 1.5 MiB): ship large values as files in the image or a volume"
            )
        return self


class JobConfigBase(StrictModel):
    """What every job config has, whatever its kind."""

    version: Annotated[str, BeforeValidator(_check_version)]
    image: Annotated[str, AfterValidator(_check_image)]
    image_tag: Annotated[str, AfterValidator(_check_tag)] | None = None
    compute_config: ComputeConfig
    mlflow_config: MlflowConfig
    tracking_config: TrackingConfig
    kubernetes_config: KubernetesConfig = KubernetesConfig()
    slurm: SlurmSettings | None = None  # where and how the job runs when it goes to Slurm (--backend slurm)

    @property
    def image_reference(self) -> str:
        return f"{self.image}:{self.image_tag or 'latest'}"
