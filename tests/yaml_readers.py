"""How other YAML readers type plain scalars: YAML 1.1 as Go's yaml.v2 (kubectl) reads it, plus 1.2's forms.

PyYAML implements YAML 1.1 only partly (it reads `y`, `1e3` or `0o17` as strings). A reader built on
the full YAML 1.1 type regexes, with YAML 1.2's core-schema number forms added, shows what a string
written unquoted turns into elsewhere. Only tags are compared; nothing is constructed.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_FIRST_CHARS = list("-+0123456789.:~yYnNtTfFoO")

_RULES = [
    ("tag:yaml.org,2002:bool", r"y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF"),
    (
        "tag:yaml.org,2002:int",
        r"[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+"
        r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+"  # YAML 1.1, sexagesimal included
        r"|0o[0-7]+"  # YAML 1.2
        r"|[-+]_[0-9_]+",  # Go's yaml.v2 removes '_' before parsing a number
    ),
    (
        "tag:yaml.org,2002:float",
        r"[-+]?(?:[0-9][0-9_]*)?\.[0-9.]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"  # YAML 1.1
        r"|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"  # YAML 1.2 core
        r"|[-+]_[0-9_.eE+-]+",  # Go's yaml.v2 removes '_' before parsing a number
    ),
    ("tag:yaml.org,2002:null", r"~|null|Null|NULL|"),
    (
        "tag:yaml.org,2002:timestamp",
        r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?"
        r"(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)?",
    ),
    ("tag:yaml.org,2002:merge", r"<<"),
    ("tag:yaml.org,2002:value", r"="),
]


class StrictTypesLoader(yaml.SafeLoader):
    """A loader whose resolver types plain scalars the way the widest YAML 1.1/1.2 reader would."""

    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 - PyYAML's per-class table, replaced wholesale


for _tag, _pattern in _RULES:
    StrictTypesLoader.add_implicit_resolver(_tag, re.compile(f"^(?:{_pattern})$"), [*_FIRST_CHARS, "<", "=", None])


def scalar_tags(text: str, loader: type[yaml.SafeLoader]) -> list[tuple[str, str]]:
    """(value, resolved tag) of every scalar in every document of `text`, in document order."""
    found: list[tuple[str, str]] = []
    for root in yaml.compose_all(text, Loader=loader):
        stack = [root]
        while stack:
            node = stack.pop()
            if isinstance(node, yaml.ScalarNode):
                found.append((node.value, node.tag))
            elif isinstance(node, yaml.MappingNode):
                stack.extend(n for pair in reversed(node.value) for n in reversed(pair))
            elif isinstance(node, yaml.SequenceNode):
                stack.extend(reversed(node.value))
    return found


def retyped_scalars(text: str) -> list[tuple[str, str, str]]:
    """Scalars that PyYAML and the strict reader type differently: (value, PyYAML's tag, strict tag)."""
    ours = scalar_tags(text, yaml.SafeLoader)
    strict = scalar_tags(text, StrictTypesLoader)
    return [(value, a, b) for (value, a), (_, b) in zip(ours, strict, strict=True) if a != b]
