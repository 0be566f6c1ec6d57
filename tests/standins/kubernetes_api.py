"""A stand-in for the few Kubernetes API endpoints cajajejo calls, for the official `kubernetes` client.

It keeps objects in memory and answers the way the API server does where cajajejo relies on it:

- create (POST) refuses a name that is taken (409 AlreadyExists);
- every field is owned by the managers that set it (`owners`), as in the real server's managedFields;
  a list counts as one field (the real server merges some lists item by item; nothing here needs that);
- server-side apply (PATCH with application/apply-patch+yaml and a fieldManager, as the real server
  requires) creates (201) or updates (200) by merging the applied fields into the object: it refuses
  (409 Conflict) only a field that another manager owns and that it would change; a field set to the
  value it has becomes shared, and a field this manager alone applied before and now leaves out goes;
- a JSON merge patch updates an existing object and takes over the fields it sets; a patch that names
  another uid is refused (422);
- DELETE honours `preconditions.uid` (409 when it does not match);
- `dryRun=All` on any write runs every check and stores nothing;
- a namespace that does not exist is refused (404), and `refuse()` makes the admission chain deny a
  chosen object, as a ValidatingAdmissionPolicy does (403);
- a Job's pods start when it is stored without `spec.suspend`; each start is recorded in
  `job_starts`, with the ConfigMaps its pods mount that did not exist at that moment.

`fail_next` makes the next matching request fail with a status; `on_request` sees each request before
it is served. Requests are served one at a time (the real server orders writes through etcd). No real
API server can be installed on these machines; this checks request shape, the submission procedure
and error mapping.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.standins.http import Request, StandinServer, json_response

_ROUTES = [
    (re.compile(r"/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs(?:/(?P<name>[^/]+))?"), "Job", "batch/v1"),
    (re.compile(r"/api/v1/namespaces/(?P<ns>[^/]+)/configmaps(?:/(?P<name>[^/]+))?"), "ConfigMap", "v1"),
    (re.compile(r"/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+))?"), "Pod", "v1"),
    (re.compile(r"/api/v1/namespaces/(?P<ns>[^/]+)/services(?:/(?P<name>[^/]+))?"), "Service", "v1"),
    (
        re.compile(r"/api/v1/namespaces/(?P<ns>[^/]+)/persistentvolumeclaims(?:/(?P<name>[^/]+))?"),
        "PersistentVolumeClaim",
        "v1",
    ),
    (re.compile(r"/apis/storage.k8s.io/v1/storageclasses(?:/(?P<name>[^/]+))?"), "StorageClass", "storage.k8s.io/v1"),
]
_PLURAL = {
    "Job": "jobs.batch",
    "ConfigMap": "configmaps",
    "Pod": "pods",
    "Service": "services",
    "StorageClass": "storageclasses.storage.k8s.io",
    "PersistentVolumeClaim": "persistentvolumeclaims",
}
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
MERGE_PATCH_CONTENT_TYPE = "application/merge-patch+json"
TOKEN = "standin-token"  # the bearer token the test kubeconfig carries

Key = tuple[str, str | None, str]
FieldPath = tuple[str, ...]
Response = tuple[int, dict[str, str], bytes]
# Set by the server, or naming the object: no manager owns them.
_UNOWNED: frozenset[FieldPath] = frozenset(
    {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace"), ("metadata", "uid")}
    | {("metadata", "creationTimestamp")}
)
_MISSING = object()


@dataclass
class Failure:
    method: str
    path_pattern: str
    status: int
    reason: str
    message: str


@dataclass
class Refusal:
    """An admission denial for one object. Policies run on dry runs too; `in_dry_run=False` is a check
    that only the real request meets (a webhook that skips dry runs, a quota used up meanwhile)."""

    kind: str
    name: str
    message: str
    in_dry_run: bool


@dataclass(frozen=True)
class JobStart:
    """A Job whose pods were let start: created without suspend, or resumed."""

    name: str
    namespace: str | None
    missing_configmaps: tuple[str, ...]  # mounted by its pods but absent when they started


@dataclass
class KubernetesApiStandin:
    namespaces: set[str] = field(default_factory=lambda: {"default"})
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    owners: dict[Key, dict[FieldPath, set[str]]] = field(default_factory=dict)  # field -> its managers
    failures: list[Failure] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    job_starts: list[JobStart] = field(default_factory=list)
    on_request: Callable[[Request], None] | None = None  # runs first, e.g. to make a rival object meanwhile

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = StandinServer(self._handle_in_turn)

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def requests(self) -> list[Request]:
        return self._server.requests

    def close(self) -> None:
        self._server.close()

    def write_kubeconfig(self, path: Path, context: str = "standin") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": TOKEN}}],
            "contexts": [{"name": context, "context": {"cluster": "standin", "user": "tester"}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def fail_next(self, method: str, path_pattern: str, status: int, reason: str, message: str) -> None:
        self.failures.append(Failure(method, path_pattern, status, reason, message))

    def refuse(self, kind: str, name: str, *, policy: str = "deny", in_dry_run: bool = True) -> str:
        """Deny every write of `kind` `name` as the ValidatingAdmissionPolicy `policy` would; returns its message."""
        message = (
            f'{_PLURAL[kind]} "{name}" is forbidden: ValidatingAdmissionPolicy {policy!r} with binding '
            f"'{policy}-binding' denied request: failed expression: object.metadata.name != '{name}'"
        )
        self.refusals.append(Refusal(kind, name, message, in_dry_run))
        return message

    def put(self, document: dict[str, Any], manager: str = "kubectl") -> None:
        """Place an object as if another tool had made it."""
        key = (document["kind"], document["metadata"].get("namespace"), document["metadata"]["name"])
        stored = copy.deepcopy(document)
        stored["metadata"].setdefault("uid", str(uuid.uuid4()))
        stored["metadata"].setdefault("creationTimestamp", "2026-11-24T10:00:00Z")
        self.objects[key] = stored
        self.owners[key] = {path: {manager} for path in _fields(stored)}

    def suspended(self, kind: str, namespace: str, name: str) -> bool | None:
        """The stored Job's spec.suspend (None when it has no such Job)."""
        stored = self.objects.get((kind, namespace, name))
        return None if stored is None else bool(stored.get("spec", {}).get("suspend"))

    # --- the HTTP side ---------------------------------------------------------------------------

    def _handle_in_turn(self, request: Request) -> Response:
        with self._lock:
            return self._handle(request)

    def _handle(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return _status(401, "Unauthorized", "Unauthorized")
        if self.on_request is not None:
            self.on_request(request)
        for failure in self.failures:
            if failure.method == request.method and re.fullmatch(failure.path_pattern, request.path):
                self.failures.remove(failure)
                return _status(failure.status, failure.reason, failure.message)
        if request.query.get("dryRun") not in (None, "All"):
            return _status(400, "BadRequest", f"unsupported dryRun directive {request.query['dryRun']!r}")
        for pattern, kind, api_version in _ROUTES:
            match = pattern.fullmatch(request.path)
            if match:
                namespace, name = match.groupdict().get("ns"), match["name"]
                if namespace is not None and namespace not in self.namespaces:
                    return _status(404, "NotFound", f'namespaces "{namespace}" not found')
                return self._route(request, kind, api_version, namespace, name)
        return _status(404, "NotFound", f"the server could not find the requested resource {request.path}")

    def _route(
        self, request: Request, kind: str, api_version: str, namespace: str | None, name: str | None
    ) -> Response:
        content_type = request.headers.get("Content-Type")
        if request.method == "POST" and not name:
            return self._create(request, kind, namespace)
        if request.method == "PATCH" and name and content_type == APPLY_CONTENT_TYPE:
            return self._apply(request, kind, namespace, name)
        if request.method == "PATCH" and name and content_type == MERGE_PATCH_CONTENT_TYPE:
            return self._merge_patch(request, kind, namespace, name)
        if request.method == "PATCH":
            return _status(415, "UnsupportedMediaType", f"unsupported patch type {content_type}")
        if request.method == "GET" and name:
            stored = self.objects.get((kind, namespace, name))
            if stored is None:
                return _not_found(kind, name)
            return json_response(200, stored)
        if request.method == "GET":
            items = [
                obj
                for (k, ns, _), obj in self.objects.items()
                if k == kind and ns == namespace and _selected(obj, request.query.get("labelSelector", ""))
            ]
            return json_response(
                200, {"apiVersion": api_version, "kind": f"{kind}List", "metadata": {}, "items": items}
            )
        if request.method == "DELETE" and name:
            return self._delete(request, kind, namespace, name)
        return _status(405, "MethodNotAllowed", f"{request.method} {request.path}")

    def _create(self, request: Request, kind: str, namespace: str | None) -> Response:
        body = json.loads(request.body)
        name = (body.get("metadata") or {}).get("name")
        if body.get("kind") != kind or not name:
            return _status(400, "BadRequest", "the kind in the body does not match the URL, or the name is missing")
        key = (kind, namespace, name)
        if key in self.objects:
            return _status(409, "AlreadyExists", f'{_PLURAL[kind]} "{name}" already exists')
        manager = request.query.get("fieldManager") or "unknown"
        owners = {path: {manager} for path in _fields(body)}
        return self._admit_and_store(request, key, body, owners, previous=None, created=True)

    def _apply(self, request: Request, kind: str, namespace: str | None, name: str) -> Response:
        manager = request.query.get("fieldManager")
        if not manager:
            return _status(400, "BadRequest", "PatchOptions.meta.k8s.io: fieldManager: Required value")
        body = yaml.safe_load(request.body)  # an apply body is YAML; JSON is YAML too
        if body.get("kind") != kind or body.get("metadata", {}).get("name") != name:
            return _status(400, "BadRequest", "the name or kind in the body does not match the URL")
        key = (kind, namespace, name)
        previous = self.objects.get(key)
        owners = self.owners.get(key, {})
        applied = _fields(body)
        conflicts = sorted(
            (path, other)
            for path, value in applied.items()
            for other in owners.get(path, set()) - {manager}
            if previous is not None and _value_at(previous, path) != value
        )
        if conflicts and request.query.get("force") != "true":
            listed = ", ".join(f'conflict with "{other}": .{".".join(path)}' for path, other in conflicts)
            return _status(409, "Conflict", f"Apply failed with {len(conflicts)} conflict(s): {listed}")
        merged = copy.deepcopy(previous) if previous is not None else {}
        for path, managers in owners.items():
            if managers == {manager} and path not in applied:  # this manager's alone, and no longer applied
                _remove_at(merged, path)
        for path, value in applied.items():
            _set_at(merged, path, copy.deepcopy(value))
        merged.update(apiVersion=body.get("apiVersion"), kind=kind)
        merged.setdefault("metadata", {}).update(name=name, **({"namespace": namespace} if namespace else {}))
        new_owners = {path: managers - {manager} for path, managers in owners.items()}
        for path, value in applied.items():
            unchanged = previous is not None and _value_at(previous, path) == value
            new_owners[path] = (new_owners.get(path, set()) if unchanged else set()) | {manager}
        new_owners = {path: m for path, m in new_owners.items() if m and _value_at(merged, path) is not _MISSING}
        return self._admit_and_store(request, key, merged, new_owners, previous, created=previous is None)

    def _merge_patch(self, request: Request, kind: str, namespace: str | None, name: str) -> Response:
        key = (kind, namespace, name)
        previous = self.objects.get(key)
        if previous is None:
            return _not_found(kind, name)
        patch = json.loads(request.body)
        patched = _merged(copy.deepcopy(previous), patch)
        if patched["metadata"].get("uid") != previous["metadata"]["uid"]:
            return _status(422, "Invalid", f'{kind} "{name}" is invalid: metadata.uid: field is immutable')
        manager = request.query.get("fieldManager") or "unknown"
        owners = {**self.owners.get(key, {}), **{path: {manager} for path in _fields(patch)}}
        owners = {path: managers for path, managers in owners.items() if _value_at(patched, path) is not _MISSING}
        return self._admit_and_store(request, key, patched, owners, previous, created=False)

    def _admit_and_store(
        self,
        request: Request,
        key: Key,
        body: dict[str, Any],
        owners: dict[FieldPath, set[str]],
        previous: dict[str, Any] | None,
        *,
        created: bool,
    ) -> Response:
        """Run admission, then store (unless a dry run) with the fields the server sets; 201 when created."""
        kind, namespace, name = key
        dry_run = request.query.get("dryRun") == "All"
        for refusal in self.refusals:
            if (refusal.kind, refusal.name) == (kind, name) and (refusal.in_dry_run or not dry_run):
                return _status(403, "Forbidden", refusal.message)
        stored = copy.deepcopy(body)
        stored["metadata"]["uid"] = previous["metadata"]["uid"] if previous else str(uuid.uuid4())
        stored["metadata"]["creationTimestamp"] = "2026-11-24T10:00:00Z"
        if kind == "Job":
            running = not stored.get("spec", {}).get("suspend")
            stored["status"] = {"active": 1} if running else {}
            was_running = previous is not None and not previous.get("spec", {}).get("suspend")
            if running and not was_running and not dry_run:
                self.job_starts.append(JobStart(name, namespace, self._missing_configmaps(stored)))
        if not dry_run:
            self.objects[key] = stored
            self.owners[key] = owners
        return json_response(201 if created else 200, stored)

    def _missing_configmaps(self, job: dict[str, Any]) -> tuple[str, ...]:
        volumes = job.get("spec", {}).get("template", {}).get("spec", {}).get("volumes") or []
        names = [v["configMap"]["name"] for v in volumes if "configMap" in v]
        namespace = job["metadata"].get("namespace")
        return tuple(n for n in names if ("ConfigMap", namespace, n) not in self.objects)

    def _delete(self, request: Request, kind: str, namespace: str | None, name: str) -> Response:
        key = (kind, namespace, name)
        stored = self.objects.get(key)
        if stored is None:
            return _not_found(kind, name)
        options = json.loads(request.body) if request.body else {}
        wanted_uid = (options.get("preconditions") or {}).get("uid")
        if wanted_uid is not None and wanted_uid != stored["metadata"]["uid"]:
            return _status(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on {_PLURAL[kind]} {name!r}: Precondition failed: "
                f"UID in precondition: {wanted_uid}, UID in object meta: {stored['metadata']['uid']}",
            )
        if request.query.get("dryRun") != "All" and options.get("dryRun") != ["All"]:
            del self.objects[key]
            self.owners.pop(key, None)
        # Their registries return the deleted object, as the client expects.
        if kind in ("StorageClass", "Service", "PersistentVolumeClaim"):
            return json_response(200, stored)
        return _status(200, "", "deleted", status="Success")


def _merged(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merged(result.get(key), value)
    return result


def _fields(document: dict[str, Any], prefix: FieldPath = ()) -> dict[FieldPath, Any]:
    """The fields of `document` that a manager can own, by path: each value that is not a (non-empty) object."""
    fields: dict[FieldPath, Any] = {}
    for key, value in document.items():
        path = (*prefix, key)
        if path in _UNOWNED or path == ("status",) or value is None:
            continue
        if isinstance(value, dict) and value:
            fields.update(_fields(value, path))
        else:
            fields[path] = value
    return fields


def _value_at(document: Any, path: FieldPath) -> Any:
    for key in path:
        if not isinstance(document, dict) or key not in document:
            return _MISSING
        document = document[key]
    return document


def _set_at(document: dict[str, Any], path: FieldPath, value: Any) -> None:
    for key in path[:-1]:
        if not isinstance(document.get(key), dict):
            document[key] = {}
        document = document[key]
    document[path[-1]] = value


def _remove_at(document: dict[str, Any], path: FieldPath) -> None:
    """Remove the field at `path`, and the objects it leaves empty."""
    parent = _value_at(document, path[:-1])
    if isinstance(parent, dict):
        parent.pop(path[-1], None)
        if not parent and len(path) > 1:
            _remove_at(document, path[:-1])


def _selected(obj: dict[str, Any], selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for requirement in filter(None, selector.split(",")):
        key, _, value = requirement.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _not_found(kind: str, name: str) -> Response:
    return _status(404, "NotFound", f'{_PLURAL[kind]} "{name}" not found')


def _status(code: int, reason: str, message: str, status: str = "Failure") -> Response:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": status, "message": message}
    if reason:
        body.update(reason=reason, code=code)
    return code, {}, json.dumps(body).encode()
