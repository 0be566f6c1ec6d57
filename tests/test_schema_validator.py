"""The Kubernetes schema validator: same verdicts as jsonschema, loud about what it cannot check, cached on disk.

The reference is what cajajejo used before it had its own validator: jsonschema's draft 2020-12
validator over kubernetes-validate's files, joined by a `referencing` registry. Mutated copies of real
rendered manifests (the golden files) must get exactly the same problems, at the same paths, with the
same messages, in the same order.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from referencing import Registry, Resource

from cajajejo.errors import RenderedManifestError
from cajajejo.render import schema
from cajajejo.render.schema import DEFAULT_KUBERNETES_VERSION, available_versions, resolve_version, schema_problems
from cajajejo.render.schema_compiler import SchemaCompileError, compile_schema

GOLDEN = Path(__file__).parent / "golden"
DOCUMENTS = [doc for path in sorted(GOLDEN.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]
VERSIONS = sorted({available_versions()[0], resolve_version(DEFAULT_KUBERNETES_VERSION), available_versions()[-1]})


@functools.cache
def _reference_validator(version: tuple[int, int], api_version: str, kind: str) -> Any:
    folder = schema._schema_folder(version)
    contents = json.loads((folder / schema._schema_file_name(version, api_version, kind)).read_text())
    definitions = Resource.from_contents(json.loads((folder / "_definitions.json").read_text()))
    registry: Registry[Any] = [Resource.from_contents(contents), definitions] @ Registry()
    return jsonschema.Draft202012Validator(contents, registry=registry)


def reference_problems(document: dict[str, Any], version: tuple[int, int]) -> list[str]:
    validator = _reference_validator(version, str(document.get("apiVersion")), str(document.get("kind")))
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'.'.join(map(str, error.absolute_path)) or '(document)'}: {error.message}" for error in errors]


@pytest.fixture(autouse=True)
def _fresh_schemas() -> Iterator[None]:
    """Each test compiles or loads schemas itself, from the cache folder it sets up."""
    schema._compiled.cache_clear()
    yield
    schema._compiled.cache_clear()


# --- Same verdicts as jsonschema ------------------------------------------------------------------------


def test_the_golden_manifests_are_valid_in_every_version() -> None:
    assert {document["kind"] for document in DOCUMENTS} == {"Job", "ConfigMap", "StorageClass"}
    for version in available_versions():
        for document in DOCUMENTS:
            assert schema_problems(document, version) == [] == reference_problems(document, version)


# Values that sit on the edges the schema cares about: types, int32/int64 range, int-or-string, null.
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([0, 1, -1, 2**31, -(2**31) - 1, 2**63, 1.0, 0.5])
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["1", "", "Never", "16Gi", "true", "null"])
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
keys = st.sampled_from(["name", "image", "unknownField", "backofLimit", "spec", "metadata", "value", "x"]) | st.text(
    max_size=5
)


def _locations(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from _locations(child, (*path, key))


def _at(document: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        document = document[key]
    return document


def _similar_but_wrong(value: Any) -> Any:
    """The same content in a neighbouring type: what a template typo tends to produce."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return int(value) if value.isascii() and value.isdigit() else [value]
    if isinstance(value, list):
        return dict(enumerate(value)) if value else {}
    if isinstance(value, dict):
        return list(value.values())
    return ""


def _same_schema_other_name(document: dict[str, Any], draw: st.DrawFn) -> None:
    """An apiVersion or kind that finds the same schema file, which then rejects it (its `enum`)."""
    if draw(st.booleans()):
        document["kind"] = draw(st.sampled_from([str.lower, str.upper, str.swapcase]))(document["kind"])
    elif "/" in document["apiVersion"]:
        group, version = document["apiVersion"].split("/")
        document["apiVersion"] = f"{group.split('.')[0]}.example.com/{version}"


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    document: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(DOCUMENTS)))
    if draw(st.integers(0, 9)) == 0:
        _same_schema_other_name(document, draw)
    for _ in range(draw(st.integers(1, 4))):
        # apiVersion and kind pick the schema file: changing them is tested separately.
        places = [p for p in _locations(document) if p and p not in (("apiVersion",), ("kind",))]
        if not places:
            break
        path = draw(st.sampled_from(places))
        parent, key = _at(document, path[:-1]), path[-1]
        action = draw(st.sampled_from(["delete", "replace", "retype", "add key", "transplant", "append", "leaf"]))
        if action == "leaf":  # most fields are leaves: pick among them, so that each gets its turn
            path = draw(st.sampled_from([p for p in places if not isinstance(_at(document, p), dict | list)] or places))
            parent, key = _at(document, path[:-1]), path[-1]
            parent[key] = draw(scalars)
        elif action == "delete":
            del parent[key]
        elif action == "replace":
            parent[key] = draw(values)
        elif action == "retype":
            parent[key] = _similar_but_wrong(parent[key])
        elif action == "add key" and isinstance(parent[key], dict):
            parent[key][draw(keys)] = draw(values)
        elif action == "transplant":
            parent[key] = copy.deepcopy(_at(document, draw(st.sampled_from(places))))
        elif action == "append" and isinstance(parent[key], list):
            parent[key].append(copy.deepcopy(draw(st.sampled_from(parent[key]))) if parent[key] else draw(values))
    return document


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=mutated_documents(), version=st.sampled_from(VERSIONS))
def test_same_problems_as_jsonschema(document: dict[str, Any], version: tuple[int, int]) -> None:
    assert schema_problems(document, version) == reference_problems(document, version)


def test_same_problems_as_jsonschema_for_every_single_change() -> None:
    """Each field of a Job, a ConfigMap and a StorageClass deleted, or set to each edge value, in turn."""
    version = resolve_version(DEFAULT_KUBERNETES_VERSION)
    documents = [doc for doc in yaml.safe_load_all((GOLDEN / "example.mlflow.yaml").read_text()) if doc]
    edge_values: list[Any] = [None, True, 1, 2**31, 0.5, "1", [], {}, [{}]]
    compared = 0
    for document in documents:
        for path in [p for p in _locations(document) if p and p not in (("apiVersion",), ("kind",))]:
            changes = [None, *edge_values] + (["add key"] if isinstance(_at(document, path), dict) else [])
            for change in changes:
                changed = copy.deepcopy(document)
                parent, key = _at(changed, path[:-1]), path[-1]
                if change is None:
                    del parent[key]
                elif change == "add key":
                    parent[key]["unknownField"] = 1
                else:
                    parent[key] = copy.deepcopy(change)
                assert schema_problems(changed, version) == reference_problems(changed, version), (path, change)
                compared += 1
    assert compared > 1500


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda job: job["spec"].update(backofLimit=1), "spec: Additional properties are not allowed ('backofLimit'"),
        (lambda job: job["spec"].update(backoffLimit="3"), "spec.backoffLimit: '3' is not of type 'integer', 'null'"),
        (
            lambda job: job["spec"]["template"]["spec"]["containers"][0].pop("name"),
            "spec.template.spec.containers.0: 'name' is a required property",
        ),
        (
            lambda job: job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].update(cpu=None),
            "spec.template.spec.containers.0.resources.limits.cpu: None is valid under each of",
        ),
        (lambda job: job["metadata"].update(labels=[]), "metadata.labels: [] is not of type 'object', 'null'"),
    ],
)
def test_typical_mistakes_are_named_by_path(change: Any, expected: str) -> None:
    job = _golden_job()
    change(job)
    found = schema_problems(job, resolve_version(DEFAULT_KUBERNETES_VERSION))
    assert any(line.startswith(expected) for line in found), found


@pytest.mark.parametrize(("api_version", "kind"), [("batch/v1", "Nope"), ("v1", "../../x"), ("batch/v1", None)])
def test_a_kind_without_a_schema_is_an_error(api_version: str, kind: Any) -> None:
    with pytest.raises(RenderedManifestError, match=r"no Kubernetes 1\.33 schema for kind"):
        schema_problems({"apiVersion": api_version, "kind": kind}, (1, 33))


# --- The compiler refuses what it cannot check ----------------------------------------------------------


def test_every_kind_of_the_default_version_compiles() -> None:
    version = resolve_version(DEFAULT_KUBERNETES_VERSION)
    folder = schema._schema_folder(version)
    definitions = schema._definitions(version)
    kinds = [p for p in sorted(folder.glob("*.json")) if p.name not in ("_definitions.json", "all.json")]
    assert len(kinds) > 500
    for path in kinds:
        compiled = compile_schema(json.loads(path.read_text()), {definitions["$id"]: definitions})
        assert compiled["nodes"][compiled["root"]] not in (None, True), path.name


DEFINITIONS_ID = "https://example.test/api/_definitions.json"


def _compile(schema_text: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    root = {"$id": "https://example.test/api/thing/v1", **schema_text}
    return compile_schema(root, {DEFINITIONS_ID: {"$id": DEFINITIONS_ID, "$defs": definitions}})


@pytest.mark.parametrize(
    ("schema_text", "definitions", "complaint"),
    [
        ({"type": "string", "pattern": "^a"}, {}, "keyword 'pattern' is not implemented"),
        (
            {"properties": {"a": {"$ref": "/api/_definitions.json#/$defs/A"}}},
            {"A": {"type": "object", "minProperties": 1}},
            "keyword 'minProperties' is not implemented",
        ),
        ({"type": "decimal"}, {}, "unsupported type 'decimal'"),
        ({"items": [{"type": "string"}]}, {}, "a schema must be an object or a boolean"),
        ({"$ref": "/api/other.json#/$defs/A"}, {}, "unknown document"),
        ({"$ref": "/api/_definitions.json#/$defs/Missing"}, {}, "points to nothing"),
        ({"properties": {"a": {"$id": "https://elsewhere/"}}}, {}, "keyword '$id' is not implemented"),
    ],
)
def test_an_unknown_keyword_fails_loudly(
    schema_text: dict[str, Any], definitions: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(SchemaCompileError, match="refusing to validate with fewer checks") as caught:
        _compile(schema_text, definitions)
    assert complaint in str(caught.value)


def test_only_reachable_definitions_are_compiled() -> None:
    compiled = _compile(
        {"properties": {"a": {"$ref": "/api/_definitions.json#/$defs/A", "description": "an A"}}},
        {"A": {"type": "string", "x-kubernetes-list-type": "atomic"}, "Unused": {"type": "object", "not": {}}},
    )
    text = json.dumps(compiled)
    assert "string" in text
    assert "object" not in text
    assert "description" not in text


def test_recursive_definitions_compile() -> None:
    compiled = _compile(
        {"$ref": "/api/_definitions.json#/$defs/Tree"},
        {"Tree": {"type": "object", "properties": {"children": {"items": {"$ref": "#/$defs/Tree"}}}}},
    )
    from cajajejo.render.schema_validator import problems

    assert problems(compiled, {"children": [{"children": []}]}) == []
    assert problems(compiled, {"children": [{"children": [1]}]}) == [
        (("children", 0, "children", 0), "1 is not of type 'object'")
    ]


# --- The cache folder -------------------------------------------------------------------------------------


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "cajajejo"


@pytest.fixture
def compile_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = schema._compile

    def counting(version: tuple[int, int], file_name: str) -> dict[str, Any]:
        calls.append(file_name)
        return real(version, file_name)

    monkeypatch.setattr(schema, "_compile", counting)
    return calls


def _golden_job() -> dict[str, Any]:
    return copy.deepcopy(next(document for document in DOCUMENTS if document["kind"] == "Job"))


def _broken_job() -> dict[str, Any]:
    job = _golden_job()
    job["spec"]["backoffLimit"] = "three"
    return job


def test_a_second_run_reads_the_compiled_schema_from_the_cache(cache_home: Path, compile_calls: list[str]) -> None:
    version = resolve_version(DEFAULT_KUBERNETES_VERSION)
    first = schema_problems(_broken_job(), version)
    assert compile_calls == ["job-batch-v1.json"]
    entry = f"k8s-schema-{schema._package_version()}-v1.33.0-local-strict-job-batch-v1.json"
    assert [p.name for p in cache_home.iterdir()] == [entry]
    schema._compiled.cache_clear()  # as in a new process
    assert schema_problems(_broken_job(), version) == first
    assert compile_calls == ["job-batch-v1.json"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # cut short
        lambda data: data.replace(b'"integer"', b'"string" '),  # changed after writing
        lambda data: b"",
        lambda data: b"\xff" * 10,
    ],
)
def test_a_damaged_cache_entry_is_rebuilt(cache_home: Path, compile_calls: list[str], damage: Any) -> None:
    version = resolve_version(DEFAULT_KUBERNETES_VERSION)
    expected = schema_problems(_broken_job(), version)
    (entry,) = cache_home.iterdir()
    entry.write_bytes(damage(entry.read_bytes()))
    schema._compiled.cache_clear()
    assert schema_problems(_broken_job(), version) == expected
    assert len(compile_calls) == 2
    schema._compiled.cache_clear()
    assert schema_problems(_broken_job(), version) == expected
    assert len(compile_calls) == 2  # rewritten, whole


@pytest.mark.parametrize(
    "body",
    [
        {"stamp": ["an older kubernetes-validate"], "root": 0, "nodes": [True]},  # sources changed
        {"root": 7, "nodes": []},
        ["not", "an", "object"],
    ],
)
def test_a_sound_entry_for_other_sources_is_rebuilt(cache_home: Path, compile_calls: list[str], body: Any) -> None:
    from cajajejo.cache import write_entry

    version = resolve_version(DEFAULT_KUBERNETES_VERSION)
    expected = schema_problems(_broken_job(), version)
    (entry,) = cache_home.iterdir()
    assert write_entry(entry.name, json.dumps(body).encode())
    schema._compiled.cache_clear()
    assert schema_problems(_broken_job(), version) == expected
    assert len(compile_calls) == 2


def test_an_unwritable_cache_folder_is_no_obstacle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))  # cannot be created, even by root
    version = resolve_version(DEFAULT_KUBERNETES_VERSION)
    assert schema_problems(_golden_job(), version) == []
    assert schema_problems(_broken_job(), version) == reference_problems(_broken_job(), version)
    assert list(tmp_path.iterdir()) == [blocker]


def test_where_the_cache_folder_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cajajejo.cache import cache_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: only absolute paths count
    assert cache_dir() == tmp_path / ".cache" / "cajajejo"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "cajajejo"


def test_a_missing_home_is_not_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cajajejo.cache import cache_dir

    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "nowhere"))
    assert cache_dir() is None
    assert schema_problems(_golden_job(), resolve_version(DEFAULT_KUBERNETES_VERSION)) == []
    assert list(tmp_path.iterdir()) == []
