"""Checks an instance against a schema compiled by `schema_compiler`.

It implements the keywords the compiler keeps, with draft 2020-12 semantics as the jsonschema package
applies them (types, `enum` equality, which keyword reports at which path, and the same messages), so
that it accepts and rejects exactly what the jsonschema-based validation it replaces did;
tests/test_schema_validator.py checks that against jsonschema itself.

Every keyword of a node applies (a `$ref` included, as in 2020-12), in the order the node lists them.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

Path = tuple[Any, ...]  # object keys and array indices, outermost first
Error = tuple[Path, str]


def problems(compiled: dict[str, Any], instance: Any) -> list[Error]:
    """Every violation of the compiled schema by `instance`, as (path, message), in discovery order."""
    errors: list[Error] = []
    _check(compiled["nodes"], compiled["root"], instance, (), errors)
    return errors


def _check(nodes: list[Any], index: int, instance: Any, path: Path, errors: list[Error]) -> None:
    node = nodes[index]
    if node is True:
        return
    if node is False:
        errors.append((path, f"False schema does not allow {instance!r}"))
        return
    for keyword, argument in node.items():
        _KEYWORDS[keyword](nodes, argument, instance, path, errors, node)


def _is_valid(nodes: list[Any], index: int, instance: Any) -> bool:
    errors: list[Error] = []
    _check(nodes, index, instance, (), errors)
    return not errors


def _is_integer(instance: Any) -> bool:
    # A float with no fractional part is an integer in JSON-schema (draft 6 on); a bool never is.
    if isinstance(instance, bool):
        return False
    return isinstance(instance, int) or (isinstance(instance, float) and instance.is_integer())


_TYPE_TESTS: dict[str, Callable[[Any], bool]] = {
    "array": lambda instance: isinstance(instance, list),
    "boolean": lambda instance: isinstance(instance, bool),
    "integer": _is_integer,
    "null": lambda instance: instance is None,
    "number": lambda instance: isinstance(instance, numbers.Number) and not isinstance(instance, bool),
    "object": lambda instance: isinstance(instance, dict),
    "string": lambda instance: isinstance(instance, str),
}


def _type(nodes: list[Any], types: list[str], instance: Any, path: Path, errors: list[Error], node: Any) -> None:
    if not any(_TYPE_TESTS[name](instance) for name in types):
        errors.append((path, f"{instance!r} is not of type {', '.join(map(repr, types))}"))


def _properties(
    nodes: list[Any], properties: dict[str, int], instance: Any, path: Path, errors: list[Error], node: Any
) -> None:
    if isinstance(instance, dict):
        for name, child in properties.items():
            if name in instance:
                _check(nodes, child, instance[name], (*path, name), errors)


def _additional_properties(
    nodes: list[Any], child: int, instance: Any, path: Path, errors: list[Error], node: Any
) -> None:
    if not isinstance(instance, dict):
        return
    known = node.get("properties", {})
    extras = [name for name in instance if name not in known]
    if nodes[child] is False:
        if extras:
            names = sorted(extras, key=str)
            verb = "was" if len(names) == 1 else "were"
            joined = ", ".join(map(repr, names))
            errors.append((path, f"Additional properties are not allowed ({joined} {verb} unexpected)"))
    elif nodes[child] is not True:
        for name in extras:
            _check(nodes, child, instance[name], (*path, name), errors)


def _items(nodes: list[Any], child: int, instance: Any, path: Path, errors: list[Error], node: Any) -> None:
    if isinstance(instance, list):
        for position, item in enumerate(instance):
            _check(nodes, child, item, (*path, position), errors)


def _required(nodes: list[Any], names: list[str], instance: Any, path: Path, errors: list[Error], node: Any) -> None:
    if isinstance(instance, dict):
        errors.extend((path, f"{name!r} is a required property") for name in names if name not in instance)


def _enum(nodes: list[Any], values: list[Any], instance: Any, path: Path, errors: list[Error], node: Any) -> None:
    if not any(_json_equal(value, instance) for value in values):
        errors.append((path, f"{instance!r} is not one of {values!r}"))


def _json_equal(one: Any, two: Any) -> bool:
    """Equality as JSON sees it: true is not 1, [1] equals [1.0], containers compare element-wise."""
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, bool) or isinstance(two, bool):
        return one is two
    if isinstance(one, list | tuple) and isinstance(two, list | tuple):
        return len(one) == len(two) and all(map(_json_equal, one, two))
    if isinstance(one, dict) and isinstance(two, dict):
        return one.keys() == two.keys() and all(_json_equal(one[key], two[key]) for key in one)
    return bool(one == two)


def _one_of(nodes: list[Any], argument: list[Any], instance: Any, path: Path, errors: list[Error], node: Any) -> None:
    branches, texts = argument
    valid = [text for branch, text in zip(branches, texts, strict=True) if _is_valid(nodes, branch, instance)]
    if not valid:
        errors.append((path, f"{instance!r} is not valid under any of the given schemas"))
    elif len(valid) > 1:
        # The reference lists the later matches first, then the first one.
        errors.append((path, f"{instance!r} is valid under each of {', '.join(valid[1:] + valid[:1])}"))


def _ref(nodes: list[Any], target: int, instance: Any, path: Path, errors: list[Error], node: Any) -> None:
    _check(nodes, target, instance, path, errors)


_KEYWORDS: dict[str, Callable[[list[Any], Any, Any, Path, list[Error], Any], None]] = {
    "type": _type,
    "properties": _properties,
    "additionalProperties": _additional_properties,
    "items": _items,
    "required": _required,
    "enum": _enum,
    "oneOf": _one_of,
    "$ref": _ref,
}
