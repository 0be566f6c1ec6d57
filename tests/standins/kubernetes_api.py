"""A stand-in for the few Kubernetes API endpoints cajajejo calls, for the official `kubernetes` client.

It keeps objects in memory, answers server-side apply (PATCH with application/apply-patch+yaml and
a fieldManager, as the real API server requires), lists by label selector, deletes, and answers
with `Status` objects on errors. `fail_next` makes the next matching request fail with a status.
No real API server can be installed on these machines; this checks request shape and error mapping.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.standins.http import Request, StandinServer, json_response

_ROUTES = [
    (re.compile(r"/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs(?:/(?P<name>[^/]+))?"), "Job", "batch/v1"),
    (re.compile(r"/api/v1/namespaces/(?P<ns>[^/]+)/configmaps(?:/(?P<name>[^/]+))?"), "ConfigMap", "v1"),
    (re.compile(r"/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+))?"), "Pod", "v1"),
    (re.compile(r"/apis/storage.k8s.io/v1/storageclasses(?:/(?P<name>[^/]+))?"), "StorageClass", "storage.k8s.io/v1"),
]
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
TOKEN = "standin-token"  # the bearer token the test kubeconfig carries


@dataclass
class Failure:
    method: str
    path_pattern: str
    status: int
    reason: str
    message: str


@dataclass
class KubernetesApiStandin:
    namespaces: set[str] = field(default_factory=lambda: {"default"})
    objects: dict[tuple[str, str | None, str], dict[str, Any]] = field(default_factory=dict)
    managers: dict[tuple[str, str | None, str], str] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = StandinServer(self._handle)

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

    def put(self, document: dict[str, Any], manager: str = "kubectl") -> None:
        """Place an object as if another tool had made it."""
        key = (document["kind"], document["metadata"].get("namespace"), document["metadata"]["name"])
        stored = copy.deepcopy(document)
        stored["metadata"].setdefault("uid", str(uuid.uuid4()))
        stored["metadata"].setdefault("creationTimestamp", "2026-11-24T10:00:00Z")
        self.objects[key] = stored
        self.managers[key] = manager

    # --- the HTTP side ---------------------------------------------------------------------------

    def _handle(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return _status(401, "Unauthorized", "Unauthorized")
        for failure in self.failures:
            if failure.method == request.method and re.fullmatch(failure.path_pattern, request.path):
                self.failures.remove(failure)
                return _status(failure.status, failure.reason, failure.message)
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
    ) -> tuple[int, dict[str, str], bytes]:
        if request.method == "PATCH" and name:
            return self._apply(request, kind, namespace, name)
        if request.method == "GET" and name:
            stored = self.objects.get((kind, namespace, name))
            if stored is None:
                return _status(404, "NotFound", f'{kind.lower()}s "{name}" not found')
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
            if self.objects.pop((kind, namespace, name), None) is None:
                return _status(404, "NotFound", f'{kind.lower()}s "{name}" not found')
            return _status(200, "", "deleted", status="Success")
        return _status(405, "MethodNotAllowed", f"{request.method} {request.path}")

    def _apply(
        self, request: Request, kind: str, namespace: str | None, name: str
    ) -> tuple[int, dict[str, str], bytes]:
        if request.headers.get("Content-Type") != APPLY_CONTENT_TYPE:
            return _status(415, "UnsupportedMediaType", f"unsupported patch type {request.headers.get('Content-Type')}")
        manager = request.query.get("fieldManager")
        if not manager:
            return _status(400, "BadRequest", "PatchOptions.meta.k8s.io: fieldManager: Required value")
        body = yaml.safe_load(request.body)  # an apply body is YAML; JSON is YAML too
        if body.get("kind") != kind or body.get("metadata", {}).get("name") != name:
            return _status(400, "BadRequest", "the name or kind in the body does not match the URL")
        key = (kind, namespace, name)
        if key in self.objects and self.managers.get(key) != manager and request.query.get("force") != "true":
            return _status(409, "Conflict", f'Apply failed with 1 conflict: conflict with "{self.managers[key]}"')
        stored = copy.deepcopy(body)
        previous = self.objects.get(key)
        stored["metadata"]["uid"] = previous["metadata"]["uid"] if previous else str(uuid.uuid4())
        stored["metadata"]["creationTimestamp"] = "2026-11-24T10:00:00Z"
        if kind == "Job":
            stored["status"] = {"active": 1}
        if request.query.get("dryRun") != "All":
            self.objects[key] = stored
            self.managers[key] = manager
        return json_response(200 if previous else 201, stored)


def _selected(obj: dict[str, Any], selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for requirement in filter(None, selector.split(",")):
        key, _, value = requirement.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _status(code: int, reason: str, message: str, status: str = "Failure") -> tuple[int, dict[str, str], bytes]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": status, "message": message}
    if reason:
        body.update(reason=reason, code=code)
    return code, {}, json.dumps(body).encode()
