"""Strict validation of rendered objects against the Kubernetes OpenAPI schema of a chosen version.

The JSON schemas ship inside the `kubernetes-validate` package (one folder per Kubernetes minor version,
`-strict` variants forbid unknown fields). Validating with the jsonschema package cost ~100 ms per run
(importing it and `referencing`, loading the ~1.5 MB definitions file, building the registry), more than
rendering itself. Instead each kind's schema is compiled once (`schema_compiler`: only the definitions it
reaches, nothing but validating keywords) and checked by a small validator of our own
(`schema_validator`) that implements exactly those keywords. The compiled form is kept in the user's
cache folder, keyed by the source files, so a later run reads a few dozen KB instead of compiling.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

from cajajejo.cache import read_entry, write_entry
from cajajejo.errors import CajajejoError, Problem, RenderedManifestError, UserInputError
from cajajejo.render.schema_validator import problems

DEFAULT_KUBERNETES_VERSION = "1.33"

_SCHEMA_DIR = re.compile(r"v(\d+)\.(\d+)\.\d+-local-strict")
_SCHEMA_FILE = re.compile(r"[a-z0-9][a-z0-9.-]*\.json")
# Bump when the compiled form or the compiler's output changes: older cache entries are then ignored.
_COMPILED_FORMAT = 1


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
    """Each schema violation of `document` as 'field.path: message', sorted by path; empty when it is valid."""
    file_name = _schema_file_name(version, str(document.get("apiVersion")), str(document.get("kind")))
    compiled = _compiled(version, file_name)
    found = sorted(problems(compiled, document), key=lambda error: list(map(str, error[0])))
    return [f"{'.'.join(map(str, path)) or '(document)'}: {message}" for path, message in found]


def _schema_file_name(version: tuple[int, int], api_version: str, kind: str) -> str:
    # File names drop the group's domain: batch/v1 -> batch-v1, storage.k8s.io/v1 -> storage-v1, v1 -> v1.
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    name = f"{kind.lower()}-{group_version}.json"
    if not _SCHEMA_FILE.fullmatch(name) or not (_schema_folder(version) / name).is_file():
        raise RenderedManifestError(
            f"no Kubernetes {version[0]}.{version[1]} schema for kind {kind!r} of apiVersion {api_version!r}"
        )
    return name


@functools.cache
def _compiled(version: tuple[int, int], file_name: str) -> dict[str, Any]:
    """The compiled schema of one kind: from the cache folder when it matches the source files, else built."""
    folder = _schema_folder(version)
    source = [folder / file_name, folder / "_definitions.json"]
    stamp = [_COMPILED_FORMAT, _package_version(), *(_file_stamp(path) for path in source)]
    entry = f"k8s-schema-{_package_version()}-{folder.name}-{file_name}"
    cached = _load(entry, stamp)
    if cached is not None:
        return cached
    compiled = _compile(version, file_name)
    write_entry(entry, json.dumps({"stamp": stamp, **compiled}, separators=(",", ":")).encode())
    return compiled


def _load(entry: str, stamp: list[Any]) -> dict[str, Any] | None:
    body = read_entry(entry)
    if body is None:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("stamp") != stamp:
        return None
    nodes, root = data.get("nodes"), data.get("root")
    if not isinstance(nodes, list) or not isinstance(root, int) or not 0 <= root < len(nodes):
        return None
    return {"root": root, "nodes": nodes}


def _compile(version: tuple[int, int], file_name: str) -> dict[str, Any]:
    from cajajejo.render.schema_compiler import compile_schema

    definitions = _definitions(version)
    schema = json.loads((_schema_folder(version) / file_name).read_text())
    return compile_schema(schema, {definitions.get("$id", ""): definitions})


@functools.cache
def _definitions(version: tuple[int, int]) -> Any:
    return json.loads((_schema_folder(version) / "_definitions.json").read_text())


def _file_stamp(path: Path) -> list[int]:
    # A reinstalled or upgraded package rewrites the files, which changes their size or time.
    info = os.stat(path)
    return [info.st_size, info.st_mtime_ns]


@functools.cache
def _package_version() -> str:
    # Read without importing the package (see _schema_root) or importlib.metadata (~30 ms).
    version_file = _schema_root().parent / "version.py"
    try:
        match = re.search(r"__version__\s*=\s*['\"]([\w.+-]+)['\"]", version_file.read_text())
    except OSError:
        match = None
    return match[1] if match else "unknown"
