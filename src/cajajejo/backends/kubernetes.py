"""Send a plan to a Kubernetes cluster, and look after the jobs cajajejo made there.

Objects are sent with server-side apply under the field manager `cajajejo`, so submitting the same
plan twice changes nothing the second time. The Job goes first and its ConfigMap second, owned by
the Job: when the Job is deleted (by hand or by `ttlSecondsAfterFinished`) Kubernetes deletes its
ConfigMap too, and a pod that starts before its ConfigMap exists simply waits for it.

The official `kubernetes` client is imported when a cluster is first needed, never at CLI start-up.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cajajejo.errors import CajajejoError, one_line
from cajajejo.render.plan import LABEL_JOB_NAME, LABEL_MANAGED_BY, LABEL_PREFIX

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

FIELD_MANAGER = "cajajejo"
APPLY_PATCH = "application/apply-patch+yaml"
MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={LABEL_PREFIX}"
_LOGIN_HINT = "log in again (invoke authenticate-kubectl) or check KUBECONFIG"


class ClusterError(CajajejoError):
    """The cluster, or the way to it, failed; the message says what to do."""


@dataclass(frozen=True)
class AppliedObject:
    kind: str
    name: str
    namespace: str | None
    uid: str | None


@dataclass(frozen=True)
class PodSummary:
    name: str
    phase: str
    reason: str | None  # e.g. ImagePullBackOff while a container waits


@dataclass(frozen=True)
class JobSummary:
    name: str
    namespace: str
    state: str  # pending, running, succeeded, failed, suspended
    active: int
    succeeded: int
    failed: int
    created: str | None
    config_version: str | None
    pods: tuple[PodSummary, ...] = ()


def load_api_client(context: str | None = None) -> ApiClient:
    """An API client for `context` (default: the current one) of the user's kubeconfig."""
    from kubernetes import config

    # The client reads KUBECONFIG once, when it is imported; read it here so that it counts at call time.
    config_file = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        api_client: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=config_file, context=context, persist_config=False
        )
        return api_client
    except config.ConfigException as exc:
        raise ClusterError(f"no usable Kubernetes configuration ({one_line(exc)}); {_LOGIN_HINT}") from None
    except FileNotFoundError:
        raise ClusterError(f"no kubeconfig at {config_file}; {_LOGIN_HINT}") from None


class KubernetesCluster:
    """The few calls cajajejo makes to one cluster; every failure becomes a one-line ClusterError."""

    def __init__(self, api_client: ApiClient) -> None:
        from kubernetes import client

        self._api_client = api_client
        self._batch = client.BatchV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._storage = client.StorageV1Api(api_client)

    @property
    def server(self) -> str:
        return str(self._api_client.configuration.host)

    def apply_plan(self, documents: Sequence[dict[str, Any]], *, dry_run: bool = False) -> list[AppliedObject]:
        """Apply the plan's objects: cluster-scoped ones, then the Job, then what the Job owns."""
        unknown = {str(doc.get("kind")) for doc in documents} - {"StorageClass", "Job", "ConfigMap"}
        if unknown:
            raise ClusterError(f"cannot submit objects of kind {', '.join(sorted(unknown))}")
        job = _only(documents, "Job")
        applied = [self._apply(doc, dry_run) for doc in documents if doc["kind"] == "StorageClass"]
        applied_job = self._apply(job, dry_run)
        applied.append(applied_job)
        for document in documents:
            if document["kind"] == "ConfigMap":
                owned = _owned_by(document, applied_job) if applied_job.uid and not dry_run else document
                applied.append(self._apply(owned, dry_run))
        return applied

    def _apply(self, document: dict[str, Any], dry_run: bool) -> AppliedObject:
        kind, name = document["kind"], document["metadata"]["name"]
        namespace = document["metadata"].get("namespace")
        options: dict[str, Any] = {
            "body": document,
            "field_manager": FIELD_MANAGER,
            "_content_type": APPLY_PATCH,
            "dry_run": "All" if dry_run else None,
        }
        call: Callable[..., Any]
        if kind == "Job":
            call, options["namespace"] = self._batch.patch_namespaced_job, namespace
        elif kind == "ConfigMap":
            call, options["namespace"] = self._core.patch_namespaced_config_map, namespace
        else:
            call = self._storage.patch_storage_class
        with _api_errors(f"apply {kind} {name}", namespace):
            result = call(name, **options)
        return AppliedObject(kind, name, namespace, getattr(getattr(result, "metadata", None), "uid", None))

    def list_jobs(self, namespace: str) -> list[JobSummary]:
        """The Jobs cajajejo made in `namespace`, newest first."""
        with _api_errors("list jobs", namespace):
            jobs = self._batch.list_namespaced_job(namespace, label_selector=MANAGED_SELECTOR).items
        summaries = [_summarise(job) for job in jobs]
        return sorted(summaries, key=lambda s: s.created or "", reverse=True)

    def job_status(self, name: str, namespace: str) -> JobSummary:
        job = self._managed_job(name, namespace)
        with _api_errors(f"list the pods of job {name}", namespace):
            pods = self._core.list_namespaced_pod(namespace, label_selector=f"{LABEL_JOB_NAME}={name}").items
        return _summarise(job, tuple(_pod_summary(pod) for pod in pods))

    def delete_job(self, name: str, namespace: str) -> list[str]:
        """Delete the Job (its pods go with it) and its ConfigMap; returns what was deleted."""
        self._managed_job(name, namespace)
        from kubernetes.client import ApiException

        with _api_errors(f"delete job {name}", namespace):
            self._batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        deleted = [f"Job {name}"]
        try:
            with _api_errors(f"delete ConfigMap {name}", namespace):
                self._core.delete_namespaced_config_map(name, namespace)
            deleted.append(f"ConfigMap {name}")
        except ClusterError as exc:
            if not isinstance(exc.__cause__, ApiException) or exc.__cause__.status != 404:
                raise
        return deleted

    def _managed_job(self, name: str, namespace: str) -> Any:
        with _api_errors(f"read job {name}", namespace):
            job: Any = self._batch.read_namespaced_job(name, namespace)
        labels = job.metadata.labels or {}
        if labels.get(LABEL_MANAGED_BY) != LABEL_PREFIX:
            raise ClusterError(f"job {name} in namespace {namespace} was not made by cajajejo; leaving it alone")
        return job


def _only(documents: Sequence[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == kind]
    if len(found) != 1:
        raise ClusterError(f"a job spec holds exactly one {kind}; this one holds {len(found)}")
    return found[0]


def _owned_by(document: dict[str, Any], owner: AppliedObject) -> dict[str, Any]:
    reference = {"apiVersion": "batch/v1", "kind": owner.kind, "name": owner.name, "uid": owner.uid}
    metadata = {**document["metadata"], "ownerReferences": [reference]}
    return {**document, "metadata": metadata}


def _summarise(job: Any, pods: tuple[PodSummary, ...] = ()) -> JobSummary:
    status = job.status
    conditions = {c.type: c.status for c in (status.conditions or [])} if status else {}
    active = (status.active or 0) if status else 0
    if conditions.get("Complete") == "True" or conditions.get("SuccessCriteriaMet") == "True":
        state = "succeeded"
    elif conditions.get("Failed") == "True" or conditions.get("FailureTarget") == "True":
        state = "failed"
    elif job.spec is not None and job.spec.suspend:
        state = "suspended"
    else:
        state = "running" if active else "pending"
    created = job.metadata.creation_timestamp
    return JobSummary(
        name=job.metadata.name,
        namespace=job.metadata.namespace,
        state=state,
        active=active,
        succeeded=(status.succeeded or 0) if status else 0,
        failed=(status.failed or 0) if status else 0,
        created=created.isoformat() if hasattr(created, "isoformat") else created,
        config_version=(job.metadata.annotations or {}).get(f"{LABEL_PREFIX}/config-version"),
        pods=pods,
    )


def _pod_summary(pod: Any) -> PodSummary:
    reason = None
    for container in (pod.status.init_container_statuses or []) + (pod.status.container_statuses or []):
        waiting = container.state.waiting if container.state else None
        if waiting is not None and waiting.reason:
            reason = f"{container.name}: {waiting.reason}"
            break
    return PodSummary(pod.metadata.name, pod.status.phase or "Unknown", reason)


@contextmanager
def _api_errors(action: str, namespace: str | None) -> Iterator[None]:
    """Turn what the client raises into one line that says what happened and what to do."""
    from kubernetes.client import ApiException
    from urllib3.exceptions import HTTPError

    where = f" in namespace {namespace}" if namespace else ""
    try:
        yield
    except ApiException as exc:
        message = _status_message(exc)
        hints = {
            401: f"the cluster did not accept your credentials; {_LOGIN_HINT}",
            403: "you are not allowed to do this; ask for the RBAC rights or use another namespace or context",
            404: "not found (does the namespace exist?)",
            409: "conflict: another manager owns these fields; delete the object or change it with that tool",
            422: "the cluster rejected the object as invalid",
        }
        hint = hints.get(exc.status or 0, f"the API server answered {exc.status} {exc.reason}")
        raise ClusterError(f"cannot {action}{where}: {hint}: {message}") from exc
    except HTTPError as exc:
        raise ClusterError(
            f"cannot {action}{where}: the Kubernetes API server is unreachable ({one_line(exc)}); "
            "check the network and `kubectl cluster-info`"
        ) from exc


def _status_message(exc: Any) -> str:
    try:
        status = json.loads(exc.body or "")
        message = status.get("message") or exc.reason
    except (ValueError, AttributeError):
        message = exc.reason or "no details"
    return one_line(message)
