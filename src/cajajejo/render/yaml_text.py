"""YAML in and out of the renderer.

`to_yaml` is the one filter through which every value enters a template. It writes a YAML flow value
(double-quoted strings with every unusual character escaped), so no string can close a quote, start a
new line, document, tag or anchor: whatever the value, it parses back as the same value in the same place.

`dump_documents` writes the checked objects back out as ordinary block YAML, with multi-line strings
(the config files inside the ConfigMap) as literal blocks so that a reviewer can read and diff them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from cajajejo.yaml_limits import MAX_DEPTH, shape_problem


class YamlText(str):
    """Text already turned into YAML by `to_yaml`; the only kind of value a template may output."""


# Characters a YAML double-quoted scalar may hold as-is. Everything else (controls, line and paragraph
# separators, the byte-order mark, surrogates, non-characters) is written as an escape.
_NEEDS_ESCAPE = re.compile(
    '[^\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]|["\\\\]'
)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in '"\\':
        return "\\" + char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def to_yaml(value: Any) -> YamlText:
    """`value` as a YAML flow value that parses back to an equal value."""
    return YamlText(_flow(value))


def _flow(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} into a manifest")
        text = repr(value)
        # YAML 1.1 (PyYAML, and Kubernetes' own parser) reads 5e-324 as a string: a float needs a dot.
        if "e" in text and "." not in text:
            text = text.replace("e", ".0e", 1)
        return text
    if isinstance(value, str):
        return '"' + _NEEDS_ESCAPE.sub(_escape, value) + '"'
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_flow(str(k))}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    raise TypeError(f"cannot write a {type(value).__name__} into a manifest; pass plain values")


def only_yaml_text(value: Any) -> Any:
    """Jinja `finalize` hook: refuse any output that did not go through the `yaml` filter."""
    if isinstance(value, YamlText):
        return value
    raise TypeError(f"template outputs {value!r} without the `yaml` filter; write {{{{ value | yaml }}}}")


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _BlockTextDumper(_BaseDumper):  # type: ignore[misc, valid-type]
    # Templates may share a list between containers through a YAML anchor; write it out in full
    # each time, as a reviewer (and `kubectl diff`) expects.
    def ignore_aliases(self, data: Any) -> bool:
        return True


# Words that some YAML reader takes for a bool or null when unquoted: YAML 1.1 (Go's yaml.v2, which
# kubectl uses) reads y/n/on/off as bools; PyYAML's own resolver does not know y and n.
_NOT_TEXT_WORDS = frozenset({"y", "yes", "n", "no", "true", "false", "on", "off", "null", "~"})
# Plain (unquoted) text starts with a letter, '_', '/' or a '-' before a letter or '-' (paths and
# options): numbers, timestamps, sexagesimals (1:30), octal and exponent forms (0o17, 1e3,
# 123456789e12), versions like 0.1.0 (a float to YAML 1.1's regex), .inf/.nan, '<<' and '=' all start otherwise.
_PLAIN_START = re.compile(r"[A-Za-z_/]|-[-A-Za-z]")  # not "-_1": Go drops "_" from numbers


def plain_is_text(value: str) -> bool:
    """Whether `value` written unquoted reads back as this string under YAML 1.1 and 1.2 alike."""
    return bool(_PLAIN_START.match(value)) and value.lower() not in _NOT_TEXT_WORDS


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line text reads best as a literal block; the emitter falls back to quotes when it cannot.
    # Anything another YAML reader could take for a non-string is double-quoted: PyYAML's resolver
    # would leave `y`, `1e3` or a commit SHA like `123456789e12` plain, and kubectl would then read a
    # bool or a number where Kubernetes wants a string.
    if "\n" in value:
        style: str | None = "|"
    elif not plain_is_text(value):
        style = '"'
    else:
        style = None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockTextDumper.add_representer(str, _represent_str)


def load_documents(text: str, *, trusted: bool = False) -> list[Any]:
    """All documents of a multi-document YAML text, empty ones dropped.

    Aliases and deep nesting are refused unless the text is `trusted`: our templates' own output,
    where a list shared through an anchor is fine. A user's file never is.
    """
    loader = _Loader(text)
    try:
        documents = []
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            shape = None if trusted else shape_problem(node)
            if shape is not None:
                raise yaml.YAMLError(f"line {shape.line}: {shape.message}")
            document = loader.construct_document(node)
            if document is not None:
                documents.append(document)
        return documents
    except RecursionError:  # PyYAML's pure-Python composer recurses (libyaml's does not)
        raise yaml.YAMLError(f"nested more than {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()


def dump_documents(documents: Iterable[Any], header: str = "") -> str:
    body = yaml.dump_all(
        list(documents),
        Dumper=_BlockTextDumper,
        sort_keys=False,
        allow_unicode=True,
        explicit_start=True,
        width=100_000,
    )
    return header + body
