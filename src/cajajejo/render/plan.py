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

    def to_yaml(self) -> str:
        header = (
            f"# Rendered by cajajejo {__version__} for job {self.job_name}.\n"
            "# Re-render from the job config instead of editing this file.\n"
        )
        return dump_documents(self.documents, header=header)


@dataclass(frozen=True)
class JobInputs:
    """What a kind hands the shared pipeline: its config, the files its ConfigMap carries, its own paths."""

    kind: str  # "evaluation", "training": the job-kind label and the template folder
    config: JobConfigBase
    files: dict[str, str]  # ConfigMap file name -> text, hashed into the inputs hash in this order
    input_paths: dict[str, str] = field(default_factory=dict)  # env name -> repo path of a further input
    path_annotations: dict[str, str] = field(default_factory=dict)  # annotation key -> repo path of it


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
    config = inputs.config
    k8s = config.kubernetes_config
    if options.job_name is not None:
        job_name = check_dns_label(options.job_name, "--job-name")
    else:
        job_name = generate_job_name(k8s.job_name_prefix, options.rng, kind=inputs.kind)
    if options.namespace is not None:
        namespace = check_dns_label(options.namespace, "--namespace")
    else:
        namespace = k8s.namespace or check_dns_label(options.default_namespace, "setting namespace")
    resolve_version(options.kubernetes_version)  # a bad version is the user's error, before any rendering
    job = _shared_job_context(inputs, job_name, namespace, provenance)
    job["service_account"] = k8s.service_account or _checked_default_service_account(options)
    context = {
        "config": config,
        "job": job,
        "files": inputs.files,
        "paths": {"config_dir": runtime_contract.CONFIG_DIR, "scratch_dir": runtime_contract.SCRATCH_DIR},
        "storage_class": _storage_class(config),
        **kind_context(job),
    }

    entry = f"{inputs.kind}/plan.yaml.j2"
    template = template_environment(options.template_dir).get_template(entry)
    try:
        rendered = template.render(context)
        documents = load_documents(rendered, trusted=True)
    except Exception as exc:  # a bug in a template (ours or a user's override): say where, not a traceback
        raise RenderedManifestError(f"rendering {entry} failed: {exc} ({_BLAME})") from exc

    problems = manifest_problems(
        documents, job_name=job_name, namespace=namespace, kubernetes_version=options.kubernetes_version
    )
    if problems:
        raise RenderedManifestError(
            f"the rendered manifests are invalid ({_BLAME}):\n" + "\n".join(f"  {p}" for p in problems)
        )
    return Plan(job_name, namespace, tuple(documents))


def _checked_default_service_account(options: RenderOptions) -> str | None:
    account = options.default_service_account
    problem = dns1123_subdomain_problem(account) if account is not None else None
    if problem:
        raise UserInputError(Problem("setting service_account", f"{account!r} {problem}"))
    return account


def manifest_problems(
    documents: list[Any], *, job_name: str, namespace: str, kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
) -> list[str]:
    """Everything wrong with a job's manifests: the rules the schema misses, then the schema itself."""
    version = resolve_version(kubernetes_version)
    problems = semantic_problems(documents, job_name=job_name, namespace=namespace)
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


def _storage_class(config: JobConfigBase) -> dict[str, Any] | None:
    """The StorageClass the config asks to have made for its scratch volume, or None."""
    scratch = config.compute_config.scratch
    if scratch.provision_storage_class is None:
        return None
    return {
        "name": scratch.storage_class,
        "disk_type": scratch.provision_storage_class.disk_type,
        "labels": {LABEL_MANAGED_BY: LABEL_PREFIX},
    }


def job_labels(kind: str, job_name: str) -> dict[str, str]:
    """The labels that identify a job's objects and pods: selectors for status, logs and cleanup use them."""
    return {LABEL_MANAGED_BY: LABEL_PREFIX, LABEL_JOB_KIND: kind, LABEL_JOB_NAME: job_name}


def kubelet_literal(value: str) -> str:
    """`value` as the kubelet passes it on: it expands `$(VAR)` in commands, args and env values, `$$` is `$`."""
    return value.replace("$", "$$")


def _shared_job_context(inputs: JobInputs, job_name: str, namespace: str, provenance: Provenance) -> dict[str, Any]:
    config = inputs.config
    inputs_hash = inputs_sha256(*inputs.files.values())
    identity = job_labels(inputs.kind, job_name)
    labels = {
        **identity,
        f"{LABEL_PREFIX}/config-version": _version_label(provenance.config_version),
        f"{LABEL_PREFIX}/inputs-hash": inputs_hash[:16],
        f"{LABEL_PREFIX}/version": __version__,
    }
    annotations = {
        f"{LABEL_PREFIX}/config-version": provenance.config_version,
        f"{LABEL_PREFIX}/config-path": provenance.config_path,
        **inputs.path_annotations,
        f"{LABEL_PREFIX}/inputs-sha256": inputs_hash,
    }
    node_selector = dict(config.kubernetes_config.node_selector)
    if config.compute_config.accelerator is not None:
        node_selector[GKE_ACCELERATOR_LABEL] = config.compute_config.accelerator
    env = {
        runtime_contract.ENV_CONFIG_VERSION: provenance.config_version,
        runtime_contract.ENV_CONFIG_PATH: provenance.config_path,
        **inputs.input_paths,
        runtime_contract.ENV_JOB_NAME: job_name,
        runtime_contract.ENV_CONFIG_DIR: runtime_contract.CONFIG_DIR,
        runtime_contract.ENV_SCRATCH_DIR: runtime_contract.SCRATCH_DIR,
        runtime_contract.ENV_MLFLOW_TRACKING_URI: config.mlflow_config.tracking_uri,
        **{name: kubelet_literal(value) for name, value in config.kubernetes_config.env.items()},
    }
    return {
        "name": job_name,
        "namespace": namespace,
        "configmap_name": job_name,
        "labels": labels,
        "annotations": annotations,
        "pod_labels": identity,
        "image": config.image_reference,
        "node_selector": node_selector,
        "env": env,
        "field_env": {},  # env read from the pod's own fields (downward API), e.g. an Indexed Job's index
    }
