"""Turns one kind's Kubernetes JSON schema into the compact form that `schema_validator` checks.

kubernetes-validate ships, per Kubernetes version, one small schema per kind whose `$ref`s point into a
~1.5 MB `_definitions.json`. Compiling keeps only the definitions the kind reaches, drops descriptions
and other annotations, resolves every `$ref` to an index, and stores identical subschemas once: the
result for a Job is a few dozen KB of JSON that loads in well under a millisecond.

Compiled form: {"root": index, "nodes": [node, ...]}. A node is `true`/`false` (boolean schemas) or an
object holding only the validating keywords below, in the order the source schema lists them (so that
errors come out in the order a reference validator reports them), each subschema replaced by its index.

The compiler implements exactly the JSON-schema keywords these files use. Any other keyword, or a
known one with an unexpected shape, raises SchemaCompileError instead of being skipped: a future
schema must never be checked less strictly than it says without anyone noticing.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin

from cajajejo.errors import CajajejoError

# Keywords that validate, and the only ones that appear in a compiled node.
VALIDATING = ("type", "properties", "additionalProperties", "items", "required", "enum", "oneOf", "$ref")
# Keywords that never make an instance invalid. `format` is one of them here because the reference
# (a jsonschema validator built without a format checker) treats it as an annotation too.
_ANNOTATIONS = frozenset(
    {
        "$comment",
        "$schema",
        "default",
        "deprecated",
        "description",
        "example",
        "examples",
        "format",
        "readOnly",
        "title",
        "writeOnly",
    }
)
_TYPES = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})


class SchemaCompileError(CajajejoError):
    """A schema uses something the compiler does not implement; validating would silently check less."""


def compile_schema(schema: Any, resources: dict[str, Any]) -> dict[str, Any]:
    """Compile `schema` (a kind's schema document); `resources` maps other documents' `$id`s to them."""
    return _Compiler(resources).run(schema)


class _Compiler:
    def __init__(self, resources: dict[str, Any]) -> None:
        self.resources = dict(resources)
        self.nodes: list[Any] = []
        self.shared: dict[str, int] = {}  # a compiled node's JSON text -> its index, to store it once
        self.targets: dict[str, int] = {}  # an absolute `$ref` target -> its index (recursion-safe)

    def run(self, schema: Any) -> dict[str, Any]:
        base = schema.get("$id", "") if isinstance(schema, dict) else ""
        if base:
            self.resources[base] = schema
        root = self.subschema(schema, base, "#", root=True)
        return {"root": root, "nodes": self.nodes}

    def subschema(self, schema: Any, base: str, where: str, *, root: bool = False, slot: int | None = None) -> int:
        """The index of `schema`'s compiled node; `base` resolves its relative `$ref`s.

        With `slot`, the node goes into that reserved index (a `$ref` target others may already point to).
        """
        if isinstance(schema, bool):
            return self.store(schema, slot)
        if not isinstance(schema, dict):
            raise self.error(where, f"a schema must be an object or a boolean, not {type(schema).__name__}")
        unknown = [
            key
            for key in schema
            if key not in VALIDATING
            and key not in _ANNOTATIONS
            and key != "$defs"  # holds definitions for `$ref`s; validates nothing by itself
            and not (key == "$id" and root)
            and not key.startswith("x-kubernetes-")
        ]
        if unknown:
            raise self.error(where, f"JSON-schema keyword {unknown[0]!r} is not implemented by cajajejo's validator")
        keywords = [key for key in schema if key in VALIDATING]
        if keywords == ["$ref"] and slot is None:
            # Nothing but a reference (and annotations): the target's node serves as this one.
            return self.reference(schema["$ref"], base, where)
        node: dict[str, Any] = {}
        for key in keywords:
            node[key] = self.keyword(key, schema[key], base, f"{where}/{key}")
        if slot is not None and node == {"$ref": slot}:
            raise self.error(where, "a $ref that leads back to itself validates nothing")
        return self.store(node, slot)

    def keyword(self, key: str, value: Any, base: str, where: str) -> Any:
        if key == "type":
            types = [value] if isinstance(value, str) else value
            if not isinstance(types, list) or not types or not all(t in _TYPES for t in types):
                raise self.error(where, f"unsupported type {value!r}")
            return types
        if key == "properties":
            if not isinstance(value, dict):
                raise self.error(where, "properties must be an object")
            return {name: self.subschema(sub, base, f"{where}/{name}") for name, sub in value.items()}
        if key in ("additionalProperties", "items"):
            # In draft 2020-12 `items` is one schema for every element (the array form is `prefixItems`).
            return self.subschema(value, base, where)
        if key == "required":
            if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
                raise self.error(where, "required must be a list of names")
            return value
        if key == "enum":
            if not isinstance(value, list):
                raise self.error(where, "enum must be a list")
            return value
        if key == "oneOf":
            if not isinstance(value, list) or not value:
                raise self.error(where, "oneOf must be a non-empty list")
            # The source branches' text goes along for the "valid under each of" message.
            return [[self.subschema(sub, base, f"{where}/{i}") for i, sub in enumerate(value)], list(map(repr, value))]
        return self.reference(value, base, where)  # "$ref", next to other keywords

    def reference(self, ref: Any, base: str, where: str) -> int:
        if not isinstance(ref, str):
            raise self.error(where, "$ref must be a string")
        target = urljoin(base, ref)
        if target not in self.targets:
            document_uri, fragment = urldefrag(target)
            if document_uri not in self.resources:
                raise self.error(where, f"$ref {ref!r} points to an unknown document {document_uri!r}")
            schema = self.resources[document_uri]
            for token in unquote(fragment).split("/")[1:] if fragment else []:
                token = token.replace("~1", "/").replace("~0", "~")
                if not isinstance(schema, dict) or token not in schema:
                    raise self.error(where, f"$ref {ref!r} points to nothing")
                schema = schema[token]
            # Reserve the index first: a definition may (indirectly) refer to itself.
            self.targets[target] = len(self.nodes)
            self.nodes.append(None)
            self.subschema(schema, document_uri, target, slot=self.targets[target])
        return self.targets[target]

    def store(self, node: Any, slot: int | None = None) -> int:
        key = json.dumps(node)
        if slot is not None:
            self.nodes[slot] = node
            self.shared.setdefault(key, slot)
            return slot
        if key not in self.shared:
            self.shared[key] = len(self.nodes)
            self.nodes.append(node)
        return self.shared[key]

    def error(self, where: str, message: str) -> SchemaCompileError:
        return SchemaCompileError(f"Kubernetes schema at {where}: {message}; refusing to validate with fewer checks")
