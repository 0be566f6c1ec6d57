"""Rules the OpenAPI schema does not express, checked on every rendered plan before it is used.

The schema accepts a container without an image, an upper-case name, a malformed quantity and
`restartPolicy: Always` on a Job; the API server (or the scheduler, much later) would not.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from cajajejo import kube
from cajajejo.names import dns1035_label_problem

_NAMESPACED_KINDS = {"Job", "ConfigMap", "Service", "PersistentVolumeClaim"}
_NAME_RULES: dict[str, Callable[[str], str | None]] = {
    "Job": kube.dns1123_label_problem,  # the name is also a pod label value, so a label, not a subdomain
    "ConfigMap": kube.dns1123_subdomain_problem,
    "Service": dns1035_label_problem,  # an RFC 1035 label: pods are named under it in DNS
    "StorageClass": kube.dns1123_subdomain_problem,
    "PersistentVolumeClaim": kube.dns1123_subdomain_problem,
}


def semantic_problems(documents: list[Any], *, job_names: list[str], namespace: str) -> list[str]:
    """Every rule violation in the plan, as 'Kind name: field.path: message'."""
    problems: list[str] = []
    configmaps = set()
    jobs = []
    for index, document in enumerate(documents):
        if not isinstance(document, dict) or not isinstance(document.get("metadata"), dict):
            problems.append(f"document {index + 1}: not a Kubernetes object with metadata")
            continue
        kind = document.get("kind")
        name = document["metadata"].get("name")
        where = f"{kind} {name}"
        if kind not in _NAME_RULES:
            problems.append(f"{where}: kind: {kind!r} is not one cajajejo knows how to check")
            continue
        problem = _NAME_RULES[kind](name) if isinstance(name, str) else "is missing"
        if problem:
            problems.append(f"{where}: metadata.name: {problem}")
        problems += [f"{where}: {p}" for p in _metadata_problems(document["metadata"], kind, namespace)]
        size = serialized_size(document)
        if size > kube.MAX_OBJECT_BYTES:
            problems.append(f"{where}: {size} bytes; the API server stores at most {kube.MAX_OBJECT_BYTES} per object")
        if kind == "ConfigMap":
            configmaps.add(name)
            problems += [f"{where}: {p}" for p in _configmap_problems(document)]
        elif kind == "Job":
            jobs.append(document)
    if [job["metadata"].get("name") for job in jobs] != job_names:
        problems.append(f"plan: expected the Jobs {', '.join(map(repr, job_names))}, in this order")
    for job in jobs:
        where = f"Job {job['metadata'].get('name')}"
        problems += [f"{where}: {p}" for p in _job_problems(job, configmaps)]
    return problems


def serialized_size(document: Any) -> int:
    """The bytes of `document` as JSON, the form the API server stores and kubectl records."""
    return len(json.dumps(document, separators=(",", ":")).encode())


def client_side_apply_warnings(documents: list[Any]) -> list[str]:
    """Objects too large for plain `kubectl apply -f`, which copies each object into an annotation.

    Client-side apply stores the object's JSON in `kubectl.kubernetes.io/last-applied-configuration`;
    annotations hold at most 256 KiB in all, so a larger object is refused (`metadata.annotations: Too
    long`). Server-side apply, which cajajejo uses, has no such copy.
    """
    warnings = []
    for document in documents:
        size = serialized_size(document)
        if size > kube.MAX_ANNOTATION_BYTES:
            kind, name = document.get("kind"), (document.get("metadata") or {}).get("name")
            warnings.append(
                f"{kind} {name} is {size} bytes, more than plain `kubectl apply -f` can record "
                f"({kube.MAX_ANNOTATION_BYTES}); apply it with `kubectl apply --server-side -f` or cajajejo submit-job"
            )
    return warnings


def _metadata_problems(metadata: dict[str, Any], kind: str, namespace: str) -> list[str]:
    problems = []
    if kind in _NAMESPACED_KINDS and metadata.get("namespace") != namespace:
        problems.append(f"metadata.namespace: must be {namespace!r}, is {metadata.get('namespace')!r}")
    if kind not in _NAMESPACED_KINDS and "namespace" in metadata:
        problems.append("metadata.namespace: a cluster-scoped object has no namespace")
    problems += _label_problems(metadata.get("labels") or {}, "metadata.labels")
    annotations = metadata.get("annotations") or {}
    for key in annotations:
        if kube.label_key_problem(str(key)):
            problems.append(f"metadata.annotations: key {key!r} {kube.label_key_problem(str(key))}")
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > kube.MAX_ANNOTATION_BYTES:
        problems.append(f"metadata.annotations: {size} bytes; at most {kube.MAX_ANNOTATION_BYTES} are allowed")
    return problems


def _label_problems(labels: dict[str, Any], path: str) -> list[str]:
    problems = []
    for key, value in labels.items():
        problem = kube.label_key_problem(str(key))
        if problem:
            problems.append(f"{path}: key {key!r} {problem}")
        if not isinstance(value, str):
            problems.append(f"{path}.{key}: must be a string")
        elif kube.label_value_problem(value):
            problems.append(f"{path}.{key}: {value!r} {kube.label_value_problem(value)}")
    return problems


def _configmap_problems(configmap: dict[str, Any]) -> list[str]:
    data = configmap.get("data") or {}
    problems = [f"data: key {k!r} {kube.config_key_problem(str(k))}" for k in data if kube.config_key_problem(str(k))]
    size = kube.configmap_data_size(data)
    if size > kube.MAX_CONFIGMAP_BYTES:
        problems.append(f"data: {size} bytes; a ConfigMap holds at most {kube.MAX_CONFIGMAP_BYTES}")
    return problems


def _job_problems(job: dict[str, Any], configmaps: set[str]) -> list[str]:
    problems: list[str] = []
    template = (job.get("spec") or {}).get("template") or {}
    pod = template.get("spec") or {}
    pod_labels = (template.get("metadata") or {}).get("labels") or {}
    problems += _label_problems(pod_labels, "spec.template.metadata.labels")
    problems += _label_problems(pod.get("nodeSelector") or {}, "spec.template.spec.nodeSelector")
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        problems.append("spec.template.spec.restartPolicy: a Job's pods need Never or OnFailure")
    volumes = {volume.get("name"): volume for volume in pod.get("volumes") or []}
    for volume_name, volume in volumes.items():
        referenced = (volume.get("configMap") or {}).get("name")
        if "configMap" in volume and referenced not in configmaps:
            problems.append(f"spec.template.spec.volumes.{volume_name}: ConfigMap {referenced!r} is not in the plan")
        claim = ((volume.get("ephemeral") or {}).get("volumeClaimTemplate") or {}).get("spec") or {}
        storage = ((claim.get("resources") or {}).get("requests") or {}).get("storage")
        if "ephemeral" in volume and not _is_positive_quantity(storage):
            problems.append(f"spec.template.spec.volumes.{volume_name}: storage request {storage!r} is not a quantity")
    names: set[str] = set()
    for group in ("initContainers", "containers"):
        containers = pod.get(group) or []
        if group == "containers" and not containers:
            problems.append("spec.template.spec.containers: at least one container is needed")
        for i, container in enumerate(containers):
            path = f"spec.template.spec.{group}[{i}]"
            name = container.get("name")
            if not isinstance(name, str) or kube.dns1123_label_problem(name) or name in names:
                problems.append(f"{path}.name: {name!r} must be a unique DNS-1123 label")
            names.add(str(name))
            problems += [f"{path}.{p}" for p in _container_problems(container, volumes)]
    return problems


def _container_problems(container: dict[str, Any], volumes: dict[str, Any]) -> list[str]:
    problems = []
    image = container.get("image")
    if not isinstance(image, str) or not image.strip():
        problems.append("image: is empty")
    env_names = set()
    for variable in container.get("env") or []:
        name = variable.get("name")
        if not isinstance(name, str) or kube.env_var_name_problem(name) or name in env_names:
            problems.append(f"env: {name!r} must be a unique variable name")
        env_names.add(name)
        secret = (variable.get("valueFrom") or {}).get("secretKeyRef")
        if secret is not None and not (secret.get("name") and secret.get("key")):
            problems.append(f"env.{name}: a secretKeyRef needs both name and key")
    for mount in container.get("volumeMounts") or []:
        if mount.get("name") not in volumes:
            problems.append(f"volumeMounts: {mount.get('name')!r} is not a volume of the pod")
    resources = container.get("resources") or {}
    for section in ("requests", "limits"):
        for resource, amount in (resources.get(section) or {}).items():
            if not _is_positive_quantity(amount):
                problems.append(f"resources.{section}.{resource}: {amount!r} is not a positive quantity")
    for resource, request in (resources.get("requests") or {}).items():
        limit = (resources.get("limits") or {}).get(resource)
        if (
            _is_positive_quantity(request)
            and _is_positive_quantity(limit)
            and kube.parse_quantity(str(request)) > kube.parse_quantity(str(limit))  # type: ignore[operator]
        ):
            problems.append(f"resources.requests.{resource}: {request!r} exceeds the limit {limit!r}")
    gpus = (resources.get("limits") or {}).get("nvidia.com/gpu")
    if gpus is not None and not (isinstance(gpus, int) or (isinstance(gpus, str) and gpus.isdigit())):
        problems.append(f"resources.limits.nvidia.com/gpu: {gpus!r} must be a whole number")
    return problems


def _is_positive_quantity(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return False
    amount = kube.parse_quantity(str(value))
    return amount is not None and amount > 0
