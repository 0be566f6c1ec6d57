"""Send a plan to a Kubernetes cluster, and look after the jobs cajajejo made there.

A plan holds one Job (a job) or several (a group's tasks), and what they need. A submission is all or
nothing, and never changes a job that is not its own:

1. The Jobs' names are looked up. A Job of that name stamped with the same provenance (the labels and
   annotations cajajejo puts on it: commit, input paths, inputs hash, tool version) is this very
   submission, made before: nothing is sent again, unless an interruption between create and resume
   left it half-made (a Job still suspended or not made yet, an object it owns missing); then what is
   missing is made and the Jobs resumed, as in 3. Any other Job of that name is left alone and
   `JobNameTaken` is raised; the caller decides whether to try another name.
2. Every object is sent with `dryRun=All`: the server runs all its checks on each one (schema,
   admission policies and webhooks, quotas, whether the namespace exists) and stores nothing.
3. The objects are made. The Jobs come first, suspended, and by a create (POST), because a create is
   the only write that fails when the name is taken: two submissions of one name cannot both think
   they made the Job, and an apply would have taken the other one over. What the Jobs own, through an
   ownerReference, is created the same way: a ConfigMap is owned by the Job of its name, and a Service
   by the Job of its name or, for a group's Service, by every Job of the group (Kubernetes deletes it
   when the last of them goes). An apply would merge into an object of that name that someone else
   made, and the garbage collector would then delete that one with the Job: such an object refuses the
   submission (`ConfigMapTaken`). A group's PersistentVolumeClaims are created too, owned by no Job, so
   that its checkpoints outlive the Jobs; one of that name made for the same group (by an earlier run)
   is used as it is. A StorageClass is cluster-scoped and may be shared by several jobs: it goes by
   server-side apply under the field manager `cajajejo`. Last, the Jobs are resumed: no pod starts
   before what it mounts exists.
4. When a step of 3 fails or is interrupted (Ctrl-C, SIGTERM, SIGHUP), what this submission created
   is deleted again, newest first, each delete bound to the uid it was created with; objects that
   existed before (a shared StorageClass, a kept volume) are kept.

When a Job is deleted (by hand or by `ttlSecondsAfterFinished`) Kubernetes deletes its ConfigMap too.
The official `kubernetes` client is imported when a cluster is first needed, never at CLI start-up.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cajajejo.errors import MAX_LINE, CajajejoError, one_line, shortened
from cajajejo.render.plan import (
    LABEL_GROUP,
    LABEL_JOB_KIND,
    LABEL_JOB_NAME,
    LABEL_MANAGED_BY,
    LABEL_PREFIX,
    LABEL_TASK,
    LABEL_VOLUME,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, V1ConfigMap, V1Job, V1PersistentVolumeClaim, V1Service

FIELD_MANAGER = "cajajejo"
COMPLETION_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"  # on pods of an Indexed Job (1.28+)
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={LABEL_PREFIX}"
_LOGIN_HINT = "log in again (invoke authenticate-kubectl) or check KUBECONFIG"


# The order objects are made in: the Jobs claim the names (suspended, they need nothing yet), then what
# their pods need from outside their namespace, then the volumes, then what they own.
_SUBMISSION_ORDER = ("Job", "StorageClass", "PersistentVolumeClaim", "ConfigMap", "Service")
_OWNED_BY_JOBS = frozenset({"ConfigMap", "Service"})
# Made by a create, which fails when the name is taken; the rest (a StorageClass) by server-side apply.
_CREATED = frozenset({"Job", "PersistentVolumeClaim", "ConfigMap", "Service"})
# What a group is deleted in: its Jobs first (their pods stop), then what they own, last the volumes.
_DELETION_ORDER = ("Job", "ConfigMap", "Service", "PersistentVolumeClaim")


class ClusterError(CajajejoError):
    """The cluster, or the way to it, failed; the message says what to do."""


# What a differing stamp means, in the words of the refusal (stamps not listed are named by their key).
_STAMP_MEANINGS = {
    f"{LABEL_PREFIX}/inputs-sha256": "other inputs",
    f"{LABEL_PREFIX}/inputs-hash": "other inputs",
    f"{LABEL_PREFIX}/config-version": "another commit",
    f"{LABEL_PREFIX}/config-path": "other input paths",
    f"{LABEL_PREFIX}/helm-config-path": "other input paths",
    f"{LABEL_PREFIX}/group-path": "other input paths",
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


class ConfigMapTaken(ClusterError):
    """An object of the name the Job's own ConfigMap (or Service, or a group's volume) needs exists and is not
    the Job's; it was left as it is."""

    def __init__(self, name: str, namespace: str, outcome: str, kind: str = "ConfigMap") -> None:
        self.name = name
        self.namespace = namespace
        self.kind = kind
        whose = "made for this group" if kind == "PersistentVolumeClaim" else "this job's"
        taken = f"{kind} {name} already exists in namespace {namespace} and is not {whose}"
        super().__init__(_noted(taken, outcome) if outcome else taken)


class PlanPartlyGone(ClusterError):
    """Some Jobs of this same plan exist and have run, others are gone (finished and deleted): the plan ran
    before. Making the missing ones again would run those tasks twice; nothing was changed."""

    def __init__(self, missing: list[str], namespace: str) -> None:
        self.missing = missing
        self.namespace = namespace
        super().__init__(
            f"job {', '.join(missing)} of this same submission is gone from namespace {namespace} (finished and "
            "deleted) while its other jobs are there: it ran before"
        )


class _AlreadyExists(Exception):
    """A create found the name taken (409 AlreadyExists)."""


class _ForeignConfigMap(Exception):
    """The create of the Job's ConfigMap found one of that name that the Job does not own."""

    def __init__(self, name: str, namespace: str, kind: str) -> None:
        super().__init__(name)
        self.name = name
        self.namespace = namespace
        self.kind = kind

    def refusal(self, outcome: str) -> ConfigMapTaken:
        return ConfigMapTaken(self.name, self.namespace, outcome, self.kind)


@dataclass(frozen=True)
class AppliedObject:
    kind: str
    name: str
    namespace: str | None
    uid: str | None


@dataclass(frozen=True)
class SubmitOutcome:
    objects: tuple[AppliedObject, ...]  # what was made, or in a dry run what the server validated
    already_submitted: bool = False  # the Job exists with the same stamps, whole; nothing was sent
    finished_interrupted: bool = False  # it existed half-made: its missing objects were made, it was resumed


@dataclass(frozen=True)
class PodSummary:
    name: str
    phase: str
    reason: str | None  # e.g. ImagePullBackOff while a container waits
    rank: str | None = None  # an Indexed Job's pod index: a training job's node rank
    job_name: str | None = None  # the Job it belongs to


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
    kind: str = "-"  # evaluation, training, command: the job-kind label
    completions: int = 1  # pods the Job needs to succeed (a training job's nnodes)
    task: str | None = None  # the task it runs, in a group


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
        # kind -> call; creates and applies answer (object, status, headers)
        self._creators: dict[str, Callable[..., Any]] = {
            "Job": self._batch.create_namespaced_job_with_http_info,
            "ConfigMap": self._core.create_namespaced_config_map_with_http_info,
            "Service": self._core.create_namespaced_service_with_http_info,
            "PersistentVolumeClaim": self._core.create_namespaced_persistent_volume_claim_with_http_info,
        }
        self._readers: dict[str, Callable[..., Any]] = {
            "Job": self._batch.read_namespaced_job,
            "ConfigMap": self._core.read_namespaced_config_map,
            "Service": self._core.read_namespaced_service,
            "PersistentVolumeClaim": self._core.read_namespaced_persistent_volume_claim,
        }
        # kind -> (call, whether it takes a namespace)
        self._appliers: dict[str, tuple[Callable[..., Any], bool]] = {
            "StorageClass": (self._storage.patch_storage_class_with_http_info, False),
        }
        self._deleters: dict[str, tuple[Callable[..., Any], bool]] = {
            "Job": (self._batch.delete_namespaced_job, True),
            "StorageClass": (self._storage.delete_storage_class, False),
            "ConfigMap": (self._core.delete_namespaced_config_map, True),
            "Service": (self._core.delete_namespaced_service, True),
            "PersistentVolumeClaim": (self._core.delete_namespaced_persistent_volume_claim, True),
        }

    @property
    def server(self) -> str:
        return str(self._api_client.configuration.host)

    def submit(
        self, documents: Sequence[dict[str, Any]], *, dry_run: bool = False, finish_interrupted: bool = True
    ) -> SubmitOutcome:
        """Submit a plan's objects all or nothing (the steps are in the module docstring); with
        `dry_run`, stop after the server has validated them. With `finish_interrupted` False, Jobs of
        the plan's names with the same stamps are only reported, even half-made: a name drawn just now
        names no earlier run of this submission. Raises JobNameTaken, ConfigMapTaken and PlanPartlyGone."""
        from cajajejo.termination import exit_cleanly_on_termination

        jobs, others = _in_submission_order(documents)
        suspended = [_model({**job, "spec": {**job["spec"], "suspend": True}}) for job in jobs]
        for document in others:  # what the client cannot send is refused before any request
            if document["kind"] in _CREATED:
                _model(document)
        # Left to its default, SIGTERM ends the process on the spot, between create and resume too; as an
        # exception it rolls back like Ctrl-C.
        with exit_cleanly_on_termination():
            existing = self._read_jobs(jobs)
            if not any(existing):
                try:
                    validated = self._validate(suspended, others)
                    return SubmitOutcome(tuple(validated if dry_run else self._make(jobs, suspended, others)))
                except _AlreadyExists:  # a Job's: another submission took the name after the look-up
                    existing = self._read_jobs(jobs)
                    if not any(existing):  # made and deleted again within the last moment
                        names = ", ".join(_name(job) for job in jobs)
                        raise ClusterError(f"job {names} came and went while submitting; submit again") from None
            return self._resubmission(jobs, suspended, others, existing, dry_run=dry_run, finish=finish_interrupted)

    def _read_jobs(self, jobs: list[dict[str, Any]]) -> list[Any | None]:
        return [self._read("Job", _name(job), str(job["metadata"]["namespace"])) for job in jobs]

    def _validate(self, suspended: list[_Model], others: list[dict[str, Any]]) -> list[AppliedObject]:
        """Send every object with dryRun=All, as step 3 will send it: the server checks all, stores nothing."""
        try:
            checked_jobs = [self._create(job, dry_run=True) for job in suspended]
            return checked_jobs + [self._send(doc, checked_jobs, dry_run=True)[0] for doc in others]
        except _ForeignConfigMap as foreign:
            raise foreign.refusal("nothing was created") from None
        except ClusterError as exc:
            raise ClusterError(_noted(exc, "nothing was created (refused in the server's dry run)")) from exc.__cause__

    def _make(
        self, jobs: list[dict[str, Any]], suspended: list[_Model], others: list[dict[str, Any]]
    ) -> list[AppliedObject]:
        """Create the Jobs suspended, then the rest as `_complete` does."""
        made: list[AppliedObject] = []
        try:
            for job in suspended:
                made.append(self._create(job, dry_run=False))
        except ClusterError as exc:
            note = self._roll_back(made)[0] if made else "nothing was created"
            raise ClusterError(_noted(exc, note)) from exc.__cause__
        except BaseException:  # a name taken meanwhile (_AlreadyExists), Ctrl-C, SIGTERM: no Job left behind
            self._roll_back(made)
            raise
        return self._complete(jobs, made, others, list(made), dry_run=False)

    def _complete(
        self,
        jobs: list[dict[str, Any]],
        made: list[AppliedObject],
        others: list[dict[str, Any]],
        created: list[AppliedObject],
        *,
        dry_run: bool,
    ) -> list[AppliedObject]:
        """Send `others` beside the Jobs `made` (in the order of `jobs`), then resume them; if a step fails,
        delete `created` and what was created here. Returns what was sent."""
        sent = list(made)
        try:
            for document in others:
                applied, was_created = self._send(document, made, dry_run=dry_run)
                sent.append(applied)
                if was_created and not dry_run:
                    created.append(applied)
            for job, made_job in zip(jobs, made, strict=True):
                self._resume(job, made_job, dry_run=dry_run)
        except _ForeignConfigMap as foreign:
            note, complete = self._roll_back(created)
            if complete:  # as if the name had been taken from the start: a generated one is drawn again
                raise foreign.refusal(note) from None
            raise ClusterError(_noted(foreign.refusal(""), note)) from None
        except ClusterError as exc:
            raise ClusterError(_noted(exc, self._roll_back(created)[0])) from exc.__cause__
        except BaseException:  # Ctrl-C, SIGTERM or a bug: leave no suspended Job behind either
            self._roll_back(created)
            raise
        return sent

    def _resubmission(
        self,
        jobs: list[dict[str, Any]],
        suspended: list[_Model],
        others: list[dict[str, Any]],
        existing: list[Any | None],
        *,
        dry_run: bool,
        finish: bool,
    ) -> SubmitOutcome:
        """Jobs of the plan's names exist: this same submission made before (finished here if it was left
        half-made), or someone else's (refused)."""
        found = {_name(job): _same_submission(job, there) for job, there in zip(jobs, existing, strict=True) if there}
        if not finish:
            return SubmitOutcome(tuple(found.values()), already_submitted=True)
        missing = [i for i, there in enumerate(existing) if there is None]
        # A plan may ask for a suspended Job itself; only a suspend that the plan lacks is ours to undo.
        left_suspended = [
            bool(there.spec and there.spec.suspend) and not job["spec"].get("suspend")
            for job, there in zip(jobs, existing, strict=True)
            if there is not None
        ]
        if missing and not all(left_suspended):  # some ran: the plan was submitted whole, and some went since
            raise PlanPartlyGone([_name(jobs[i]) for i in missing], str(jobs[0]["metadata"]["namespace"]))
        created: list[AppliedObject] = []
        made: list[AppliedObject] = []
        try:
            for i, job in enumerate(jobs):
                if i in missing:  # the interruption came between the creates of the Jobs
                    made.append(self._create(suspended[i], dry_run=dry_run))
                    created += [] if dry_run else [made[-1]]
                else:
                    made.append(found[_name(job)])
        except BaseException:
            self._roll_back(created)
            raise
        owned = [doc for doc in others if doc["kind"] in _OWNED_BY_JOBS]
        lacking = [doc for doc in owned if not self._has_its_own(doc, made)]
        if not missing and not lacking and not any(left_suspended):
            return SubmitOutcome(tuple(made), already_submitted=True)
        # The rest (a StorageClass, the volumes) is sent again as well: the interruption may have come before.
        todo = [doc for doc in others if doc["kind"] not in _OWNED_BY_JOBS or doc in lacking]
        sent = self._complete(jobs, made, todo, created, dry_run=dry_run)
        return SubmitOutcome(tuple(sent), finished_interrupted=True)

    def _has_its_own(self, document: dict[str, Any], jobs: list[AppliedObject]) -> bool:
        """Whether the Jobs have `document` (a ConfigMap or Service they own) already; raises ConfigMapTaken when
        another object holds that name, since the Jobs would use that one."""
        name, namespace = _name(document), str(document["metadata"]["namespace"])
        existing = self._read(document["kind"], name, namespace)
        if existing is None:
            return False
        if _is_own(existing, _for(document, jobs)):
            return True
        owner = ", ".join(job.name for job in _owners(document, jobs))
        raise ConfigMapTaken(
            name, namespace, f"cannot finish the interrupted submission of job {owner}", document["kind"]
        )

    def _create(self, obj: _Model, *, dry_run: bool) -> AppliedObject:
        from kubernetes.client import ApiException

        with _api_errors(f"create {obj.kind} {obj.name}", obj.namespace):
            try:
                result, _, _ = self._creators[obj.kind](
                    obj.namespace,
                    obj.body,
                    field_manager=FIELD_MANAGER,
                    dry_run=_dry_run_value(dry_run),
                    _content_type="application/json",
                )
            except ApiException as exc:
                if exc.status == 409:  # AlreadyExists: for a create, always the name
                    raise _AlreadyExists(obj.kind) from None
                raise
        return AppliedObject(obj.kind, obj.name, obj.namespace, _uid(result))

    def _send(
        self, document: dict[str, Any], jobs: list[AppliedObject], *, dry_run: bool
    ) -> tuple[AppliedObject, bool]:
        """Make one of the plan's other objects beside the Jobs `jobs`; also says whether this request created
        it. Raises _ForeignConfigMap when the name of one that is created is taken by another object."""
        document = _for(document, jobs)
        if document["kind"] not in _CREATED:
            return self._apply(document, dry_run=dry_run)
        try:
            return self._create(_model(document), dry_run=dry_run), True
        except _AlreadyExists:
            kind, name, namespace = document["kind"], _name(document), str(document["metadata"]["namespace"])
            existing = self._read(kind, name, namespace)
            # The same spec submitted twice at once: the other run may have made the Job's own a moment ago;
            # a volume kept from an earlier run of the same group holds its checkpoints, and is used again.
            if existing is not None and (_is_own(existing, document) or _same_groups_volume(existing, document)):
                return AppliedObject(kind, name, namespace, _uid(existing)), False
            raise _ForeignConfigMap(name, namespace, kind) from None

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

    def _resume(self, job: dict[str, Any], made: AppliedObject, *, dry_run: bool) -> None:
        """Give the Job back the plan's own spec.suspend (usually none), so its pods start."""
        if job["spec"].get("suspend"):
            return
        namespace = job["metadata"]["namespace"]
        patch: dict[str, Any] = {"spec": {"suspend": False}}
        if made.uid:  # a patch naming another uid is refused: only the Job this submission made is resumed
            patch["metadata"] = {"uid": made.uid}
        with _api_errors(f"resume Job {made.name}", namespace):
            self._batch.patch_namespaced_job(
                made.name,
                namespace,
                patch,
                field_manager=FIELD_MANAGER,
                dry_run=_dry_run_value(dry_run),
                _content_type=MERGE_PATCH,
            )

    def _roll_back(self, created: list[AppliedObject]) -> tuple[str, bool]:
        """Delete `created`, newest first; returns what happened, for the error message, and whether all went."""
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
        return note, not left

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

    def _read(self, kind: str, name: str, namespace: str) -> Any | None:
        """The `kind` of that name and namespace on the cluster, or None."""
        from kubernetes.client import ApiException

        with _api_errors(f"read {kind} {name}", namespace):
            try:
                return self._readers[kind](name, namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise

    def missing(self, kind: str, names: Sequence[str], namespace: str) -> list[str]:
        """Which of `names` (objects of `kind` in `namespace`) do not exist."""
        return [name for name in names if self._read(kind, name, namespace) is None]

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
        """Delete the Job (its pods go with it) and what it owns (ConfigMap, Service); returns what was deleted."""
        job = self._managed_job(name, namespace)
        # Read before the Job goes, or the garbage collector may take them before they are named.
        owned = [(kind, self._read(kind, name, namespace)) for kind in sorted(_OWNED_BY_JOBS)]
        with _api_errors(f"delete job {name}", namespace):
            self._batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        deleted = [f"Job {name}"]
        # An object of the Job's name that the Job does not own is someone else's: it stays.
        for kind, existing in owned:
            if existing is not None and _uid(job) in _owner_uids(existing):
                self._delete(AppliedObject(kind, name, namespace, _uid(existing)))
                deleted.append(f"{kind} {name}")
        return deleted

    def group_status(self, group: str, namespace: str) -> list[JobSummary]:
        """The group's Jobs (one per task, by name), each with its pods; ClusterError when it has none."""
        selector = _group_selector(group)
        with _api_errors(f"list the jobs of group {group}", namespace):
            jobs: list[Any] = self._batch.list_namespaced_job(namespace, label_selector=selector).items
            pods: list[Any] = self._core.list_namespaced_pod(namespace, label_selector=selector).items
        if not jobs:
            raise ClusterError(f"no job of group {group} in namespace {namespace} (made by cajajejo)")
        summaries = [_pod_summary(pod) for pod in pods]
        return sorted(
            (_summarise(job, tuple(p for p in summaries if p.job_name == job.metadata.name)) for job in jobs),
            key=lambda summary: summary.name,
        )

    def delete_group(self, group: str, namespace: str, *, keep_volumes: bool = False) -> list[str]:
        """Delete the group's Jobs (their pods go with them), what they own, and the volumes the group made
        (unless `keep_volumes`); only objects cajajejo labelled for this group. Returns what was deleted."""
        selector = _group_selector(group)
        with _api_errors(f"list the objects of group {group}", namespace):
            jobs: list[Any] = self._batch.list_namespaced_job(namespace, label_selector=selector).items
            # Read before the Jobs go, or the garbage collector may take them before they are named.
            owned: list[tuple[str, Any]] = [
                *(
                    ("ConfigMap", c)
                    for c in self._core.list_namespaced_config_map(namespace, label_selector=selector).items
                ),
                *(("Service", s) for s in self._core.list_namespaced_service(namespace, label_selector=selector).items),
            ]
            volumes: list[Any] = self._core.list_namespaced_persistent_volume_claim(
                namespace, label_selector=selector
            ).items
        if not (jobs or owned or volumes):
            raise ClusterError(f"no group {group} in namespace {namespace} (made by cajajejo)")
        job_uids = {_uid(job) for job in jobs}
        doomed = [("Job", job) for job in jobs]
        # Of what the Jobs own, only what one of the group's Jobs owns: anything else is someone else's.
        doomed += [(kind, item) for kind, item in owned if job_uids & _owner_uids(item)]
        doomed += [] if keep_volumes else [("PersistentVolumeClaim", volume) for volume in volumes]
        deleted = []
        for kind, item in sorted(doomed, key=lambda found: (_DELETION_ORDER.index(found[0]), found[1].metadata.name)):
            self._delete(AppliedObject(kind, item.metadata.name, namespace, _uid(item)))
            deleted.append(f"{kind} {item.metadata.name}")
        return deleted

    def apply_volume(self, document: dict[str, Any], *, dry_run: bool = False) -> tuple[AppliedObject, Any | None]:
        """Make the claim `document` (from `cajajejo volumes apply`); returns it and, when a claim that an earlier
        `volumes apply` made of the same name was there already, that one (left as it is: a claim's size and
        class are not changed by applying again). A claim of that name made otherwise is refused."""
        try:
            return self._create(_model(document), dry_run=dry_run), None
        except _AlreadyExists:
            name, namespace = _name(document), str(document["metadata"]["namespace"])
            existing = self._read("PersistentVolumeClaim", name, namespace)
            if existing is None:  # deleted in between: the next apply makes it
                raise ClusterError(
                    f"volume {name} was being deleted in namespace {namespace}; apply it again"
                ) from None
            labels = existing.metadata.labels or {}
            if labels.get(LABEL_MANAGED_BY) == LABEL_PREFIX and labels.get(LABEL_VOLUME) == name:
                return AppliedObject("PersistentVolumeClaim", name, namespace, _uid(existing)), existing
            group = labels.get(LABEL_GROUP) if labels.get(LABEL_MANAGED_BY) == LABEL_PREFIX else None
            whose = f"group {group} made it" if group else "cajajejo did not make it"
            raise ClusterError(
                f"PersistentVolumeClaim {name} already exists in namespace {namespace} and {whose}; "
                "give the volume another name, or mount the claim as it is (use_existing: true)"
            ) from None

    def delete_volume(self, name: str, namespace: str) -> str:
        """Delete the claim `volumes apply` made of this name (only that); Kubernetes keeps it until no pod
        uses it. Returns what happened."""
        existing = self._read("PersistentVolumeClaim", name, namespace)
        labels = (existing.metadata.labels or {}) if existing is not None else {}
        if existing is None or labels.get(LABEL_MANAGED_BY) != LABEL_PREFIX or labels.get(LABEL_VOLUME) != name:
            made = "no volume" if existing is None else "a claim that `cajajejo volumes apply` did not make"
            raise ClusterError(f"{made} {name} in namespace {namespace}; leaving it alone")
        self._delete(AppliedObject("PersistentVolumeClaim", name, namespace, _uid(existing)))
        return f"PersistentVolumeClaim {name}"

    def _managed_job(self, name: str, namespace: str) -> Any:
        with _api_errors(f"read job {name}", namespace):
            job: Any = self._batch.read_namespaced_job(name, namespace)
        labels = job.metadata.labels or {}
        if labels.get(LABEL_MANAGED_BY) != LABEL_PREFIX:
            raise ClusterError(f"job {name} in namespace {namespace} was not made by cajajejo; leaving it alone")
        return job


def _group_selector(group: str) -> str:
    return f"{MANAGED_SELECTOR},{LABEL_GROUP}={group}"


def _in_submission_order(
    documents: Sequence[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The plan's Jobs (in the plan's order), and its other objects in the order they are made."""
    unknown = {str(doc.get("kind")) for doc in documents} - set(_SUBMISSION_ORDER)
    if unknown:
        raise ClusterError(f"cannot submit objects of kind {', '.join(sorted(unknown))}")
    jobs = [doc for doc in documents if doc["kind"] == "Job"]
    if not jobs:
        raise ClusterError("a spec holds at least one Job; this one holds none")
    others = [doc for doc in documents if doc["kind"] != "Job"]
    return jobs, sorted(others, key=lambda doc: _SUBMISSION_ORDER.index(doc["kind"]))


@dataclass(frozen=True)
class _Model:
    """An object the plan creates, as the client's model: the client sends a create only as that."""

    kind: str
    name: str
    namespace: str
    body: V1Job | V1ConfigMap | V1Service | V1PersistentVolumeClaim


def _model(document: dict[str, Any]) -> _Model:
    from kubernetes.client import V1ConfigMap, V1Job, V1PersistentVolumeClaim, V1Service
    from pydantic import ValidationError

    kind = str(document["kind"])
    models: dict[str, Any] = {
        "Job": V1Job,
        "ConfigMap": V1ConfigMap,
        "Service": V1Service,
        "PersistentVolumeClaim": V1PersistentVolumeClaim,
    }
    try:  # the model refuses fields it does not know, rather than drop them
        body = models[kind].model_validate(document)
        return _Model(kind, _name(document), str(document["metadata"]["namespace"]), body)
    except ValidationError as exc:
        raise ClusterError(
            f"cannot send {kind} {_name(document)}: the installed kubernetes client does not know all its fields "
            f"({one_line(exc)}); upgrade the kubernetes package"
        ) from None


def _name(document: dict[str, Any]) -> str:
    return str(document["metadata"]["name"])


def _uid(result: Any) -> str | None:
    uid = getattr(getattr(result, "metadata", None), "uid", None)
    return str(uid) if uid else None


def _dry_run_value(dry_run: bool) -> str | None:
    return "All" if dry_run else None


def _owners(document: dict[str, Any], jobs: list[AppliedObject]) -> list[AppliedObject]:
    """The Jobs that own `document`: the Job of its name (a job's ConfigMap and Service, a task's ConfigMap),
    else every Job of the plan (a group's Service, which the group's pods need as long as one runs)."""
    own = [job for job in jobs if job.name == _name(document)]
    return own or jobs


def _for(document: dict[str, Any], jobs: list[AppliedObject]) -> dict[str, Any]:
    """`document` as sent beside `jobs`: what Jobs own carries an ownerReference to each of its owners."""
    owners = _owners(document, jobs)
    if document["kind"] not in _OWNED_BY_JOBS or not all(job.uid for job in owners):
        return document
    references = [{"apiVersion": "batch/v1", "kind": job.kind, "name": job.name, "uid": job.uid} for job in owners]
    return {**document, "metadata": {**document["metadata"], "ownerReferences": references}}


def _same_groups_volume(existing: Any, planned: dict[str, Any]) -> bool:
    """Whether `existing` is a volume cajajejo made for the group `planned` is made for (by an earlier run),
    or one `volumes apply` made of that name."""
    if planned["kind"] != "PersistentVolumeClaim":
        return False
    labels, group = existing.metadata.labels or {}, (planned["metadata"].get("labels") or {}).get(LABEL_GROUP)
    if group is None or labels.get(LABEL_MANAGED_BY) != LABEL_PREFIX:
        return False
    # Made by `cajajejo volumes apply` from the volume file the group names: the group mounts it as it is.
    return labels.get(LABEL_GROUP) == group or labels.get(LABEL_VOLUME) == _name(planned)


def _same_submission(job: dict[str, Any], existing: Any) -> AppliedObject:
    """`existing`, the Job of the plan's name, when it is this submission made before; else JobNameTaken."""
    metadata = existing.metadata
    made_by_cajajejo = (metadata.labels or {}).get(LABEL_MANAGED_BY) == LABEL_PREFIX
    planned = job["metadata"]
    differences = _differences(
        _stamps(planned.get("labels"), planned.get("annotations")), _stamps(metadata.labels, metadata.annotations)
    )
    if differences or not made_by_cajajejo:
        raise JobNameTaken(_name(job), planned["namespace"], differences, made_by_cajajejo)
    return AppliedObject("Job", _name(job), planned["namespace"], _uid(existing))


def _owner_uids(existing: Any) -> set[str]:
    return {str(reference.uid) for reference in existing.metadata.owner_references or []}


def _is_own(existing: Any, planned: dict[str, Any]) -> bool:
    """Whether `existing` is `planned` as made beside its Job: owned by that Job, with the same stamps and data."""
    metadata, wanted = existing.metadata, planned["metadata"]
    owners = {str(reference["uid"]) for reference in wanted.get("ownerReferences", [])}
    return (
        bool(owners)
        and owners <= _owner_uids(existing)
        and _stamps(metadata.labels, metadata.annotations) == _stamps(wanted.get("labels"), wanted.get("annotations"))
        and (getattr(existing, "data", None) or {}) == (planned.get("data") or {})
    )


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
        kind=(job.metadata.labels or {}).get(LABEL_JOB_KIND, "-"),
        completions=(job.spec.completions or 1) if job.spec is not None else 1,
        task=(job.metadata.labels or {}).get(LABEL_TASK),
    )


def _pod_summary(pod: Any) -> PodSummary:
    reason = None
    for container in (pod.status.init_container_statuses or []) + (pod.status.container_statuses or []):
        waiting = container.state.waiting if container.state else None
        if waiting is not None and waiting.reason:
            reason = f"{container.name}: {waiting.reason}"
            break
    labels = pod.metadata.labels or {}
    return PodSummary(
        pod.metadata.name,
        pod.status.phase or "Unknown",
        reason,
        labels.get(COMPLETION_INDEX_LABEL),
        labels.get(LABEL_JOB_NAME),
    )


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


def _noted(message: object, note: str) -> str:
    """`message; note` in one line that fits: `message` (often the server's long words) is cut, not the
    note, which says what was created or rolled back, or what is left to delete by hand."""
    room = MAX_LINE - len("error: ") - len("; ") - len(note)
    return f"{shortened(str(message), max(room, 60))}; {note}"


def _status_message(exc: Any) -> str:
    try:
        status = json.loads(exc.body or "")
        message = status.get("message") or exc.reason
    except (ValueError, AttributeError):
        message = exc.reason or "no details"
    return one_line(message)
