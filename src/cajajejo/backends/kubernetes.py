"""Send a plan to a Kubernetes cluster, and look after the jobs cajajejo made there.

A submission is all or nothing, and never changes a job that is not its own:

1. The Job's name is looked up. A Job of that name stamped with the same provenance (the labels and
   annotations cajajejo puts on it: commit, input paths, inputs hash, tool version) is this very
   submission, made before: nothing is sent again. Any other Job of that name is left alone and
   `JobNameTaken` is raised; the caller decides whether to try another name.
2. Every object is sent with `dryRun=All`: the server runs all its checks on each one (schema,
   admission policies and webhooks, quotas, whether the namespace exists) and stores nothing.
3. The objects are made. The Job comes first, suspended, and by a create (POST), because a create is
   the only write that fails when the name is taken: two submissions of one name cannot both think
   they made the Job, and an apply would have taken the other one over. Then the cluster-scoped
   objects and the Job's own (its ConfigMap, owned by the Job through an ownerReference) go by
   server-side apply under the field manager `cajajejo`. Last, the Job is resumed: its pod never
   starts before the ConfigMap it mounts exists.
4. When a step of 3 fails or is interrupted, what this submission created is deleted again, newest
   first, each delete bound to the uid it was created with; objects that existed before are kept.

When the Job is deleted (by hand or by `ttlSecondsAfterFinished`) Kubernetes deletes its ConfigMap too.
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
    from kubernetes.client import ApiClient, V1Job

FIELD_MANAGER = "cajajejo"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={LABEL_PREFIX}"
_LOGIN_HINT = "log in again (invoke authenticate-kubectl) or check KUBECONFIG"


# The order objects are made in: the Job claims the name (suspended, it needs nothing yet), then what
# its pods need from outside its namespace, then what it owns.
_SUBMISSION_ORDER = ("Job", "StorageClass", "ConfigMap")
_OWNED_BY_THE_JOB = frozenset({"ConfigMap"})


class ClusterError(CajajejoError):
    """The cluster, or the way to it, failed; the message says what to do."""


# What a differing stamp means, in the words of the refusal (stamps not listed are named by their key).
_STAMP_MEANINGS = {
    f"{LABEL_PREFIX}/inputs-sha256": "other inputs",
    f"{LABEL_PREFIX}/inputs-hash": "other inputs",
    f"{LABEL_PREFIX}/config-version": "another commit",
    f"{LABEL_PREFIX}/config-path": "other input paths",
    f"{LABEL_PREFIX}/helm-config-path": "other input paths",
    f"{LABEL_PREFIX}/version": "another cajajejo version",
}


class JobNameTaken(ClusterError):
    """A Job of the plan's name exists and is not this submission; nothing was created."""

    def __init__(self, name: str, namespace: str, differences: tuple[str, ...], made_by_cajajejo: bool) -> None:
        self.name = name
        self.namespace = namespace
        self.differences = differences  # keys of the stamps that differ, e.g. cajajejo/inputs-sha256
        self.made_by_cajajejo = made_by_cajajejo
        if made_by_cajajejo:
            meanings = dict.fromkeys(_STAMP_MEANINGS.get(key, key) for key in differences)  # in order, once each
            why = "with " + " and ".join(meanings)
        else:
            why = "and was not made by cajajejo"
        super().__init__(f"job {name} already exists in namespace {namespace} {why}")


class _NameTakenMeanwhile(Exception):
    """The Job's create found the name taken: another submission got there between look-up and create."""


@dataclass(frozen=True)
class AppliedObject:
    kind: str
    name: str
    namespace: str | None
    uid: str | None


@dataclass(frozen=True)
class SubmitOutcome:
    objects: tuple[AppliedObject, ...]  # what was made, or in a dry run what the server validated
    already_submitted: bool = False  # the Job exists with the same stamps; nothing was sent


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
        # kind -> (call, whether it takes a namespace); applies answer (object, status, headers)
        self._appliers: dict[str, tuple[Callable[..., Any], bool]] = {
            "StorageClass": (self._storage.patch_storage_class_with_http_info, False),
            "ConfigMap": (self._core.patch_namespaced_config_map_with_http_info, True),
        }
        self._deleters: dict[str, tuple[Callable[..., Any], bool]] = {
            "Job": (self._batch.delete_namespaced_job, True),
            "StorageClass": (self._storage.delete_storage_class, False),
            "ConfigMap": (self._core.delete_namespaced_config_map, True),
        }

    @property
    def server(self) -> str:
        return str(self._api_client.configuration.host)

    def submit(self, documents: Sequence[dict[str, Any]], *, dry_run: bool = False) -> SubmitOutcome:
        """Submit a plan's objects all or nothing (the steps are in the module docstring); with
        `dry_run`, stop after the server has validated them. Raises JobNameTaken."""
        job, others = _in_submission_order(documents)
        suspended = _suspended_job(job)
        existing = self._read_job(job)
        if existing is not None:
            return _resubmission(job, existing)
        try:
            validated = self._validate(suspended, others)
            return SubmitOutcome(tuple(validated if dry_run else self._make(job, suspended, others)))
        except _NameTakenMeanwhile:
            existing = self._read_job(job)
            if existing is None:  # made and deleted again within the last moment
                raise ClusterError(f"job {_name(job)} came and went while submitting; submit again") from None
            return _resubmission(job, existing)

    def _validate(self, suspended: _SuspendedJob, others: list[dict[str, Any]]) -> list[AppliedObject]:
        """Send every object with dryRun=All, as step 3 will send it: the server checks all, stores nothing."""
        try:
            checked_job = self._create(suspended, dry_run=True)
            return [checked_job] + [self._apply(_for(doc, checked_job), dry_run=True)[0] for doc in others]
        except ClusterError as exc:
            raise ClusterError(f"{exc}; nothing was created (refused in the server's dry run)") from exc.__cause__

    def _make(self, job: dict[str, Any], suspended: _SuspendedJob, others: list[dict[str, Any]]) -> list[AppliedObject]:
        """Create the Job suspended, apply the rest, resume the Job; undo what was created if a step fails."""
        try:
            made_job = self._create(suspended, dry_run=False)
        except ClusterError as exc:
            raise ClusterError(f"{exc}; nothing was created") from exc.__cause__
        created = [made_job]  # only what this submission created is deleted again
        sent = [made_job]
        try:
            for document in others:
                applied, was_created = self._apply(_for(document, made_job), dry_run=False)
                sent.append(applied)
                if was_created:
                    created.append(applied)
            self._resume(job, made_job)
        except ClusterError as exc:
            raise ClusterError(f"{exc}; {self._roll_back(created)}") from exc.__cause__
        except BaseException:  # Ctrl-C or a bug: leave no suspended Job behind either
            self._roll_back(created)
            raise
        return sent

    def _create(self, job: _SuspendedJob, *, dry_run: bool) -> AppliedObject:
        from kubernetes.client import ApiException

        name, namespace = job.name, job.namespace
        with _api_errors(f"create Job {name}", namespace):
            try:
                result, _, _ = self._batch.create_namespaced_job_with_http_info(
                    namespace,
                    job.body,
                    field_manager=FIELD_MANAGER,
                    dry_run=_dry_run_value(dry_run),
                    _content_type="application/json",
                )
            except ApiException as exc:
                if exc.status == 409:  # AlreadyExists: for a create, always the name
                    raise _NameTakenMeanwhile from None
                raise
        return AppliedObject("Job", name, namespace, _uid(result))

    def _apply(self, document: dict[str, Any], *, dry_run: bool) -> tuple[AppliedObject, bool]:
        """Server-side apply one object; also says whether this request created it (201) or it existed (200)."""
        kind, name = document["kind"], _name(document)
        namespace = document["metadata"].get("namespace")
        call, namespaced = self._appliers[kind]
        with _api_errors(f"apply {kind} {name}", namespace):
            result, status, _ = call(
                *((name, namespace) if namespaced else (name,)),
                body=document,
                field_manager=FIELD_MANAGER,
                _content_type=APPLY_PATCH,
                dry_run=_dry_run_value(dry_run),
            )
        return AppliedObject(kind, name, namespace if namespaced else None, _uid(result)), status == 201

    def _resume(self, job: dict[str, Any], made: AppliedObject) -> None:
        """Give the Job back the plan's own spec.suspend (usually none), so its pods start."""
        if job["spec"].get("suspend"):
            return
        namespace = job["metadata"]["namespace"]
        patch: dict[str, Any] = {"spec": {"suspend": False}}
        if made.uid:  # a patch naming another uid is refused: only the Job this submission made is resumed
            patch["metadata"] = {"uid": made.uid}
        with _api_errors(f"resume Job {made.name}", namespace):
            self._batch.patch_namespaced_job(
                made.name, namespace, patch, field_manager=FIELD_MANAGER, _content_type=MERGE_PATCH
            )

    def _roll_back(self, created: list[AppliedObject]) -> str:
        """Delete `created`, newest first; returns what happened, for the error message."""
        deleted: list[str] = []
        left: list[AppliedObject] = []
        for obj in reversed(created):
            try:
                self._delete(obj)
                deleted.append(f"{obj.kind} {obj.name}")
            except Exception:  # whatever failed for one object, the others are still deleted
                left.append(obj)
        note = "rolled back: deleted " + ", ".join(deleted) if deleted else "nothing was rolled back"
        if left:
            targets = " ".join(f"{obj.kind.lower()}/{obj.name}" for obj in left)
            namespace = next((obj.namespace for obj in left if obj.namespace), None)
            command = f"kubectl delete {targets}" + (f" -n {namespace}" if namespace else "")
            note += f"; could not delete {', '.join(f'{o.kind} {o.name}' for o in left)}: run `{command}`"
        return note

    def _delete(self, obj: AppliedObject) -> None:
        from kubernetes.client import ApiException, V1DeleteOptions, V1Preconditions

        call, namespaced = self._deleters[obj.kind]
        # The uid precondition: if the name was meanwhile given to another object, that one stays.
        options = V1DeleteOptions(preconditions=V1Preconditions(uid=obj.uid), propagation_policy="Background")
        with _api_errors(f"delete {obj.kind} {obj.name}", obj.namespace):
            try:
                call(*((obj.name, obj.namespace) if namespaced else (obj.name,)), body=options)
            except ApiException as exc:
                if exc.status != 404:  # already gone (the garbage collector got there first)
                    raise

    def _read_job(self, job: dict[str, Any]) -> Any | None:
        """The Job of `job`'s name and namespace on the cluster, or None."""
        from kubernetes.client import ApiException

        name, namespace = _name(job), job["metadata"]["namespace"]
        with _api_errors(f"read job {name}", namespace):
            try:
                return self._batch.read_namespaced_job(name, namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise

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


def _in_submission_order(documents: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The plan's Job, and its other objects in the order they are made."""
    unknown = {str(doc.get("kind")) for doc in documents} - set(_SUBMISSION_ORDER)
    if unknown:
        raise ClusterError(f"cannot submit objects of kind {', '.join(sorted(unknown))}")
    job = _only(documents, "Job")
    others = [doc for doc in documents if doc["kind"] != "Job"]
    return job, sorted(others, key=lambda doc: _SUBMISSION_ORDER.index(doc["kind"]))


def _only(documents: Sequence[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == kind]
    if len(found) != 1:
        raise ClusterError(f"a job spec holds exactly one {kind}; this one holds {len(found)}")
    return found[0]


@dataclass(frozen=True)
class _SuspendedJob:
    """The plan's Job with spec.suspend, as the client's model: the client sends a create only as that."""

    name: str
    namespace: str
    body: V1Job


def _suspended_job(job: dict[str, Any]) -> _SuspendedJob:
    from kubernetes.client import V1Job
    from pydantic import ValidationError

    try:  # the model refuses fields it does not know, rather than drop them
        body = V1Job.model_validate({**job, "spec": {**job["spec"], "suspend": True}})
        return _SuspendedJob(_name(job), str(job["metadata"]["namespace"]), body)
    except ValidationError as exc:
        raise ClusterError(
            f"cannot send Job {_name(job)}: the installed kubernetes client does not know all its fields "
            f"({one_line(exc)}); upgrade the kubernetes package"
        ) from None


def _name(document: dict[str, Any]) -> str:
    return str(document["metadata"]["name"])


def _uid(result: Any) -> str | None:
    uid = getattr(getattr(result, "metadata", None), "uid", None)
    return str(uid) if uid else None


def _dry_run_value(dry_run: bool) -> str | None:
    return "All" if dry_run else None


def _for(document: dict[str, Any], job: AppliedObject) -> dict[str, Any]:
    """`document` as sent beside `job`: what the Job owns carries an ownerReference to it."""
    if document["kind"] not in _OWNED_BY_THE_JOB or not job.uid:
        return document
    reference = {"apiVersion": "batch/v1", "kind": job.kind, "name": job.name, "uid": job.uid}
    return {**document, "metadata": {**document["metadata"], "ownerReferences": [reference]}}


def _resubmission(job: dict[str, Any], existing: Any) -> SubmitOutcome:
    """A Job of the plan's name exists: this same submission made before, or someone else's (refused)."""
    metadata = existing.metadata
    made_by_cajajejo = (metadata.labels or {}).get(LABEL_MANAGED_BY) == LABEL_PREFIX
    planned = job["metadata"]
    differences = _differences(
        _stamps(planned.get("labels"), planned.get("annotations")), _stamps(metadata.labels, metadata.annotations)
    )
    if differences or not made_by_cajajejo:
        raise JobNameTaken(_name(job), planned["namespace"], differences, made_by_cajajejo)
    applied = AppliedObject("Job", _name(job), planned["namespace"], _uid(existing))
    return SubmitOutcome((applied,), already_submitted=True)


def _stamps(labels: dict[str, str] | None, annotations: dict[str, str] | None) -> dict[tuple[str, str], str]:
    """The labels and annotations cajajejo stamps on a Job to say what it was made from and by whom."""

    def ours(key: str) -> bool:
        return key.startswith(f"{LABEL_PREFIX}/") or key == LABEL_MANAGED_BY

    stamps = {("label", key): value for key, value in (labels or {}).items() if ours(key)}
    stamps.update({("annotation", key): value for key, value in (annotations or {}).items() if ours(key)})
    return stamps


def _differences(planned: dict[tuple[str, str], str], existing: dict[tuple[str, str], str]) -> tuple[str, ...]:
    """The keys (label or annotation) whose values differ, each named once."""
    keys = planned.keys() | existing.keys()
    return tuple(sorted({name for where, name in keys if planned.get((where, name)) != existing.get((where, name))}))


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
        if exc.status == 403 and "denied" in message:  # an admission policy or webhook, not RBAC
            hints[403] = "a policy of the cluster refused the object"
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
