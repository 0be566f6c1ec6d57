"""Strict validation of rendered objects against the Kubernetes OpenAPI schema of a chosen version.

The JSON schemas ship inside the `kubernetes-validate` package (one folder per Kubernetes minor version,
`-strict` variants forbid unknown fields). We load each file once per process and keep the compiled
validator: the definitions file alone is ~2 MB and the package's own `validate()` reloads it per call.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

from cajajejo.errors import CajajejoError, Problem, RenderedManifestError, UserInputError

DEFAULT_KUBERNETES_VERSION = "1.33"

_SCHEMA_DIR = re.compile(r"v(\d+)\.(\d+)\.\d+-local-strict")


@functools.cache
def _schema_root() -> Path:
    # Locate the package without importing it: its __init__ pulls in modules we do not use (~35 ms).
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise CajajejoError("the kubernetes-validate package is missing; reinstall cajajejo")
    return Path(next(iter(spec.submodule_search_locations))) / "kubernetes-json-schema"


def _schema_folder(version: tuple[int, int]) -> Path:
    return _schema_root() / f"v{version[0]}.{version[1]}.0-local-strict"


@functools.cache
def available_versions() -> tuple[tuple[int, int], ...]:
    found = (_SCHEMA_DIR.fullmatch(entry.name) for entry in _schema_root().iterdir())
    return tuple(sorted((int(m[1]), int(m[2])) for m in found if m))


def resolve_version(requested: str) -> tuple[int, int]:
    """The newest schema version not newer than `requested` ('1.30', 'v1.30.2'), or a UserInputError."""
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?", requested.strip())
    versions = available_versions()
    low, high = versions[0], versions[-1]
    supported = f"{low[0]}.{low[1]} to {high[0]}.{high[1]}"
    if match is None:
        raise UserInputError(Problem("--kubernetes-version", f"{requested!r} is not a version like 1.33"))
    wanted = (int(match[1]), int(match[2]))
    candidates = [v for v in versions if v <= wanted]
    if not candidates or wanted > high:
        raise UserInputError(Problem("--kubernetes-version", f"{requested} is not covered; supported: {supported}"))
    return candidates[-1]


def schema_problems(document: dict[str, Any], version: tuple[int, int]) -> list[str]:
    """Each schema violation of `document` as 'field.path: message'; empty when it is valid."""
    validator = _validator(version, str(document.get("apiVersion")), str(document.get("kind")))
    problems = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path))):
        path = ".".join(str(p) for p in error.absolute_path) or "(document)"
        problems.append(f"{path}: {error.message}")
    return problems


@functools.cache
def _definitions(version: tuple[int, int]) -> Any:
    from referencing import Resource

    return Resource.from_contents(json.loads((_schema_folder(version) / "_definitions.json").read_text()))


@functools.cache
def _validator(version: tuple[int, int], api_version: str, kind: str) -> Any:
    import jsonschema
    from referencing import Registry, Resource

    folder = _schema_folder(version)
    # File names drop the group's domain: batch/v1 -> batch-v1, storage.k8s.io/v1 -> storage-v1, v1 -> v1.
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema_file = folder / f"{kind.lower()}-{group_version}.json"
    if not schema_file.is_file():
        raise RenderedManifestError(
            f"no Kubernetes {version[0]}.{version[1]} schema for kind {kind!r} of apiVersion {api_version!r}"
        )
    schema = json.loads(schema_file.read_text())
    # Both files carry an `$id`; the schema's `$ref`s resolve against the definitions' `$id`.
    registry = [Resource.from_contents(schema), _definitions(version)] @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)
