"""The pipeline every job kind's plan goes through: its Kubernetes objects as data, checked, ready to print or send.

Nothing here touches the network. Values that only exist at submission (the commit, the repository
paths of the input files) are parameters; when absent they are clear placeholders.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cajajejo import __version__, runtime_contract
from cajajejo.config.common import GKE_ACCELERATOR_LABEL, JobConfigBase
from cajajejo.errors import Problem, RenderedManifestError, UserInputError
from cajajejo.kube import dns1123_subdomain_problem
from cajajejo.render.checks import semantic_problems
from cajajejo.render.environment import template_environment
from cajajejo.render.names import check_dns_label, generate_job_name
from cajajejo.render.schema import DEFAULT_KUBERNETES_VERSION, resolve_version, schema_problems
from cajajejo.render.yaml_text import dump_documents, load_documents
from cajajejo.settings import Settings

UNVERSIONED = "unversioned"
UNKNOWN_PATH = "unknown"
DEFAULT_NAMESPACE = "default"

LABEL_PREFIX = "cajajejo"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_JOB_NAME = f"{LABEL_PREFIX}/job-name"
LABEL_JOB_KIND = f"{LABEL_PREFIX}/job-kind"
LABEL_GROUP = f"{LABEL_PREFIX}/group"  # the objects and pods of a job group, and of each of its tasks
LABEL_TASK = f"{LABEL_PREFIX}/task"
LABEL_VOLUME = f"{LABEL_PREFIX}/volume"  # a claim `cajajejo volumes apply` made, by its name

_CONFIG_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,79}")
_HEX_SHA = re.compile(r"([0-9a-f]{12})[0-9a-f]{28,}(-dirty)?")


@dataclass(frozen=True)
class Provenance:
    """Where the job's inputs come from: the commit and the files' paths inside the repository."""

    config_version: str = UNVERSIONED
    config_path: str = UNKNOWN_PATH
    helm_config_path: str = UNKNOWN_PATH

    def __post_init__(self) -> None:
        if not _CONFIG_VERSION.fullmatch(self.config_version):
            raise UserInputError(
                Problem("--config-version", f"{self.config_version!r} must be a commit SHA or a plain version name")
            )


@dataclass(frozen=True)
class RenderOptions:
    job_name: str | None = None  # None: generated
    namespace: str | None = None  # None: the config's, else default_namespace
    default_namespace: str = DEFAULT_NAMESPACE  # from settings
    default_service_account: str | None = None  # from settings, for configs that name none
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
    template_dir: Path | None = None
    rng: random.Random | None = field(default=None, compare=False)  # pins the generated name in tests

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> RenderOptions:
        """Options whose defaults for configs that name no namespace or service account come from settings."""
        return cls(
            default_namespace=settings.get("namespace") or DEFAULT_NAMESPACE,
            default_service_account=settings.get("service_account"),
            **options,
        )


@dataclass(frozen=True)
class Plan:
    """The objects of one job, in the order they are applied."""

    job_name: str
    namespace: str
    documents: tuple[dict[str, Any], ...]

    @property
    def title(self) -> str:
        return f"job {self.job_name}"

    @property
    def job_names(self) -> tuple[str, ...]:
        return (self.job_name,)

    def to_yaml(self) -> str:
        return dump_documents(self.documents, header=rendered_header(self.title, "job config"))


def rendered_header(title: str, source: str) -> str:
    """The comment at the top of a rendered file: who wrote it, and where to change it instead."""
    return (
        f"# Rendered by cajajejo {__version__} for {title}.\n"
        f"# Re-render from the {source} instead of editing this file.\n"
    )


@dataclass(frozen=True)
class JobInputs:
    """What a kind hands the shared pipeline: its config, the files its ConfigMap carries, its own paths."""

    kind: str  # "evaluation", "training": the job-kind label and the template folder
    config: JobConfigBase
    files: dict[str, str]  # ConfigMap file name -> text, hashed into the inputs hash in this order
    input_paths: dict[str, str] = field(default_factory=dict)  # env name -> repo path of a further input
    path_annotations: dict[str, str] = field(default_factory=dict)  # annotation key -> repo path of it
    # A job that is a task of a group: the group's labels, its inputs hash (of all the group's files) and the
    # variables that tell the task where the others are.
    group_labels: dict[str, str] = field(default_factory=dict)
    inputs_hash: str | None = None  # None: the hash of `files`
    group_env: dict[str, str] = field(default_factory=dict)


def render_plan(
    inputs: JobInputs,
    provenance: Provenance,
    options: RenderOptions,
    kind_context: Callable[[dict[str, Any]], dict[str, Any]],
) -> Plan:
    """The one pipeline every kind goes through: name → context → templates → parse back → checks → Plan.

    `kind_context` gets the shared part of the context (the `job` mapping) and returns the kind's
    own additions; everything the kinds share (identity, stamps, env, placement) is made here.
    """
    k8s = inputs.config.kubernetes_config
    if options.job_name is not None:
        job_name = check_dns_label(options.job_name, "--job-name")
    else:
        job_name = generate_job_name(k8s.job_name_prefix, options.rng, kind=inputs.kind)
    namespace = plan_namespace(options, k8s.namespace)
    context = job_context(inputs, job_name, namespace, provenance, options, kind_context)
    documents = render_documents(f"{inputs.kind}/plan.yaml.j2", context, options.template_dir)
    check_documents(documents, [job_name], namespace, options.kubernetes_version)
    return Plan(job_name, namespace, tuple(documents))


def plan_namespace(options: RenderOptions, configured: str | None) -> str:
    """--namespace, else the config's, else the setting; a bad Kubernetes version is refused here too, before
    any rendering."""
    resolve_version(options.kubernetes_version)
    if options.namespace is not None:
        return check_dns_label(options.namespace, "--namespace")
    return configured or check_dns_label(options.default_namespace, "setting namespace")


def job_context(
    inputs: JobInputs,
    job_name: str,
    namespace: str,
    provenance: Provenance,
    options: RenderOptions,
    kind_context: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """What a job config's templates are rendered with: the shared part, then the kind's own."""
    config = inputs.config
    inputs_hash = inputs.inputs_hash or inputs_sha256(*inputs.files.values())
    identity = {**job_labels(inputs.kind, job_name), **inputs.group_labels}
    job = stamped_identity(identity, job_name, namespace, provenance, inputs_hash, inputs.path_annotations)
    job.update(
        image=config.image_reference,
        node_selector=node_selector(config.kubernetes_config.node_selector, config.compute_config.accelerator),
        env=_config_env(inputs, job_name, provenance),
        service_account=config.kubernetes_config.service_account or checked_default_service_account(options),
    )
    return {
        "config": config,
        "job": job,
        "files": inputs.files,
        "paths": {"config_dir": runtime_contract.CONFIG_DIR, "scratch_dir": runtime_contract.SCRATCH_DIR},
        "scratch": config.compute_config.scratch,
        "claims": [],
        "storage_class": storage_class(config),
        **kind_context(job),
    }


def render_documents(entry: str, context: dict[str, Any], template_dir: Path | None) -> list[Any]:
    """The objects template `entry` makes with `context`, parsed back."""
    template = template_environment(template_dir).get_template(entry)
    try:
        return load_documents(template.render(context), trusted=True)
    except Exception as exc:  # a bug in a template (ours or a user's override): say where, not a traceback
        raise RenderedManifestError(f"rendering {entry} failed: {exc} ({_BLAME})") from exc


def check_documents(documents: list[Any], job_names: list[str], namespace: str, kubernetes_version: str) -> None:
    problems = manifest_problems(
        documents, job_names=job_names, namespace=namespace, kubernetes_version=kubernetes_version
    )
    if problems:
        raise RenderedManifestError(
            f"the rendered manifests are invalid ({_BLAME}):\n" + "\n".join(f"  {p}" for p in problems)
        )


def checked_default_service_account(options: RenderOptions) -> str | None:
    account = options.default_service_account
    problem = dns1123_subdomain_problem(account) if account is not None else None
    if problem:
        raise UserInputError(Problem("setting service_account", f"{account!r} {problem}"))
    return account


def manifest_problems(
    documents: list[Any],
    *,
    job_names: list[str],
    namespace: str,
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION,
) -> list[str]:
    """Everything wrong with a plan's manifests: the rules the schema misses, then the schema itself."""
    version = resolve_version(kubernetes_version)
    problems = semantic_problems(documents, job_names=job_names, namespace=namespace)
    for document in documents:
        if isinstance(document, dict):
            problems += [f"{_describe(document)}: {p}" for p in schema_problems(document, version)]
    return problems


_BLAME = "a bug in cajajejo, or in a template of --template-dir; please report it with the config"


def _describe(document: dict[str, Any]) -> str:
    name = (document.get("metadata") or {}).get("name", "?")
    return f"{document.get('kind', '?')} {name}"


def inputs_sha256(*texts: str) -> str:
    """One hash of all of a job's input files, to tell jobs with the same inputs apart from the rest."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def _version_label(config_version: str) -> str:
    match = _HEX_SHA.fullmatch(config_version)
    short = match[1] + (match[2] or "") if match else config_version
    return short[:63].rstrip("-_.")


def storage_class(config: JobConfigBase) -> dict[str, Any] | None:
    """The StorageClass the config asks to have made for its scratch volume, or None."""
    scratch = config.compute_config.scratch
    if scratch.provision_storage_class is None:
        return None
    return {
        "name": scratch.storage_class,
        "disk_type": scratch.provision_storage_class.disk_type,
        "labels": {LABEL_MANAGED_BY: LABEL_PREFIX},
    }


def node_selector(selector: dict[str, str], accelerator: str | None) -> dict[str, str]:
    """The pods' node selector: the configured one, and the GKE accelerator label when there are GPUs."""
    selected = dict(selector)
    if accelerator is not None:
        selected[GKE_ACCELERATOR_LABEL] = accelerator
    return selected


def job_labels(kind: str, job_name: str) -> dict[str, str]:
    """The labels that identify a job's objects and pods: selectors for status, logs and cleanup use them."""
    return {LABEL_MANAGED_BY: LABEL_PREFIX, LABEL_JOB_KIND: kind, LABEL_JOB_NAME: job_name}


def kubelet_literal(value: str) -> str:
    """`value` as the kubelet passes it on: it expands `$(VAR)` in commands, args and env values, `$$` is `$`."""
    return value.replace("$", "$$")


def stamped_identity(
    identity: dict[str, str],
    name: str,
    namespace: str,
    provenance: Provenance,
    inputs_hash: str,
    path_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The part of a template context every object of a plan shares: its name, labels and provenance stamps.

    `identity` are the labels that select the object's pods (and that logs, status and cleanup use);
    the stamps (commit, input paths and hash, tool version) say what the object was made from.
    """
    labels = {
        **identity,
        f"{LABEL_PREFIX}/config-version": _version_label(provenance.config_version),
        f"{LABEL_PREFIX}/inputs-hash": inputs_hash[:16],
        f"{LABEL_PREFIX}/version": __version__,
    }
    annotations = {
        f"{LABEL_PREFIX}/config-version": provenance.config_version,
        f"{LABEL_PREFIX}/config-path": provenance.config_path,
        **(path_annotations or {}),
        f"{LABEL_PREFIX}/inputs-sha256": inputs_hash,
    }
    return {
        "name": name,
        "namespace": namespace,
        "configmap_name": name,
        "labels": labels,
        "annotations": annotations,
        "pod_labels": identity,
        "subdomain": None,  # a pod's DNS subdomain: the headless Service that names it, if any
        "hostname": None,  # a single pod's own hostname under that subdomain (an Indexed Job's are set for it)
        "field_env": {},  # env read from the pod's own fields (downward API), e.g. an Indexed Job's index
    }


def _config_env(inputs: JobInputs, job_name: str, provenance: Provenance) -> dict[str, str]:
    """What a job config's containers are told: the stamps, the runtime's paths, MLflow, then the user's env."""
    config = inputs.config
    return {
        runtime_contract.ENV_CONFIG_VERSION: provenance.config_version,
        runtime_contract.ENV_CONFIG_PATH: provenance.config_path,
        **inputs.input_paths,
        runtime_contract.ENV_JOB_NAME: job_name,
        runtime_contract.ENV_CONFIG_DIR: runtime_contract.CONFIG_DIR,
        runtime_contract.ENV_SCRATCH_DIR: runtime_contract.SCRATCH_DIR,
        runtime_contract.ENV_MLFLOW_TRACKING_URI: config.mlflow_config.tracking_uri,
        **inputs.group_env,
        **user_env(config.kubernetes_config.env),
    }


def user_env(env: dict[str, str]) -> dict[str, str]:
    """The user's own variables, passed on exactly as written (see `kubelet_literal`)."""
    return {name: kubelet_literal(value) for name, value in env.items()}
