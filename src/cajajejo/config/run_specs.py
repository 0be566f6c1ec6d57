"""Checks a HELM run-spec file (HOCON, as `helm-run --conf-paths` reads it) before it ships in a ConfigMap.

HELM parses this file with pyhocon inside the job's container; parsing it with the same library here
turns a typo into an error at render time instead of a failed GPU job.

pyhocon (with pyparsing) costs ~35 ms to import and as much again to parse a short file, on every run.
Run-spec files are almost always written in a small, plain part of HOCON (`entries: [ {description:
"...", priority: 1} ... ]`, comments, commas or new lines between items), so `_parse_plain` reads that
part directly and returns None on anything else, which then goes to pyhocon, still the parser of record:
errors, line numbers and every other HOCON feature come from it. The plain part is chosen so that its
meaning is never in doubt: quoted strings without escapes or tabs (pyhocon expands tabs), whole numbers
without leading zeros, plain keys, no duplicate keys (HOCON merges them), no value concatenation.
tests/test_run_specs.py checks against pyhocon that whatever `_parse_plain` accepts, pyhocon reads the
same way. (Caching pyhocon's result on disk instead would still pay pyhocon on the first run after each
edit of the file and in every fresh CI container.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cajajejo.config.source import read_text_file
from cajajejo.credentials import credential_lines
from cajajejo.errors import Problem, UserInputError

# An include would be read here, from this machine, and again in the container, where the included
# file does not exist (only this one file is shipped): refuse it instead.
_INCLUDE = re.compile(r"^\s*include\b", re.MULTILINE)


@dataclass(frozen=True)
class RunSpecs:
    path: str
    text: str
    descriptions: tuple[str, ...]


def load_run_specs(path: str | Path) -> RunSpecs:
    name = str(path)
    text = read_text_file(path)
    include = _INCLUDE.search(text)
    if include:
        line = text.count("\n", 0, include.start()) + 1
        raise UserInputError(Problem(name, "include is not supported: put all run specs in this file", line=line))
    tree = _parse(text, name)
    entries = tree.get("entries", None) if hasattr(tree, "get") else None
    if not isinstance(entries, list) or not entries:
        raise UserInputError(
            Problem(name, 'expected `entries: [ {description: "scenario:model=...", priority: 1} ... ]`')
        )
    descriptions = []
    problems = []
    for i, entry in enumerate(entries):
        description = _get(entry, "description")
        if not isinstance(description, str) or not description.strip():
            problems.append(Problem(name, "needs a non-empty `description` string", field=f"entries[{i}]"))
            continue
        priority = _get(entry, "priority")
        if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
            problems.append(Problem(name, "`priority` must be a whole number", field=f"entries[{i}]"))
        descriptions.append(description)
    problems += credential_lines(text, name)
    if problems:
        raise UserInputError(problems)
    return RunSpecs(name, text, tuple(descriptions))


def _parse(text: str, name: str) -> Any:
    plain = _parse_plain(text)
    if plain is not None:
        return plain
    from pyhocon import ConfigFactory
    from pyparsing import ParseBaseException

    try:
        return ConfigFactory.parse_string(text, resolve=False)
    except ParseBaseException as exc:
        raise UserInputError(Problem(name, f"not valid HOCON: {exc.msg}", line=exc.lineno)) from None
    except Exception as exc:  # pyhocon raises its own ConfigException subclasses as well
        raise UserInputError(Problem(name, f"not valid HOCON: {exc}")) from None


def _get(entry: Any, key: str) -> Any:
    return entry.get(key, None) if hasattr(entry, "get") else None


# The plain part of HOCON. Outside quoted strings: spaces, tabs, new lines and `#` or `//` comments.
_BLANK = re.compile(r"(?:[ \t]|(?:#|//)[^\n]*)*")  # within a line
_GAP = re.compile(r"(?:[ \t\n]|(?:#|//)[^\n]*)*")  # across lines
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_SEPARATOR = re.compile(r"[ \t]*[:=][ \t]*")
_STRING = re.compile(r'"([^"\\\x00-\x1f\x7f]*)"')
# At most 18 digits: an int64, and far below Python's 4300-digit limit on int(); longer numbers go to pyhocon.
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,17})(?=[ \t\n,}\]#]|//|\Z)")
_BLANKS_AT_END = re.compile(r"[ \t]+\Z")
_RESERVED_KEYS = frozenset({"include", "true", "false", "null", "yes", "no", "on", "off"})


class _NotPlain(Exception):
    """The text uses HOCON beyond the plain part: pyhocon reads it instead."""


def _parse_plain(text: str) -> dict[str, Any] | None:
    """The tree of a plain HOCON text, as dicts and lists; None when pyhocon must read it."""
    try:
        tree, end = _members(text, _skip(_GAP, text, 0), None)
    except (_NotPlain, RecursionError):  # deep nesting: let pyhocon decide
        return None
    return tree if end == len(text) else None


def _members(text: str, pos: int, closer: str | None) -> tuple[dict[str, Any], int]:
    tree: dict[str, Any] = {}
    while not _at_end(text, pos, closer):
        key = _KEY.match(text, pos)
        separator = _SEPARATOR.match(text, key.end()) if key else None
        if key is None or separator is None or key[0] in tree or key[0] in _RESERVED_KEYS:
            raise _NotPlain
        tree[key[0]], pos = _value(text, separator.end())
        pos = _next_item(text, pos, closer)
    return tree, pos


def _elements(text: str, pos: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    while not _at_end(text, pos, "]"):
        item, pos = _value(text, pos)
        if item == "":
            raise _NotPlain  # pyhocon drops empty strings from lists
        items.append(item)
        pos = _next_item(text, pos, "]")
    return items, pos


def _value(text: str, pos: int) -> tuple[Any, int]:
    if text.startswith("[", pos):
        items, pos = _elements(text, _skip(_GAP, text, pos + 1))
        return items, pos + 1
    if text.startswith("{", pos):
        tree, pos = _members(text, _skip(_GAP, text, pos + 1), "}")
        return tree, pos + 1
    string = _STRING.match(text, pos)
    if string:
        return string[1], string.end()
    integer = _INTEGER.match(text, pos)
    if integer and not _BLANKS_AT_END.match(text, integer.end()):  # pyhocon reads `a: 1 ` as the string "1"
        return int(integer[0]), integer.end()
    raise _NotPlain


def _next_item(text: str, pos: int, closer: str | None) -> int:
    """Past what separates an item from the next one: one comma and/or new lines, with comments."""
    pos = _skip(_BLANK, text, pos)
    if text.startswith(",", pos):
        return _skip(_GAP, text, pos + 1)
    if text.startswith("\n", pos):
        return _skip(_GAP, text, pos)
    if not _at_end(text, pos, closer):
        raise _NotPlain  # two values on one line: HOCON would join them into one
    return pos


def _at_end(text: str, pos: int, closer: str | None) -> bool:
    """Whether `pos` is at the end of the object or list (`closer`), or of the text (None)."""
    if closer is None:
        return pos == len(text)
    if pos == len(text):
        raise _NotPlain  # unclosed
    return text.startswith(closer, pos)


def _skip(blank: re.Pattern[str], text: str, pos: int) -> int:
    match = blank.match(text, pos)  # both patterns also match nothing, so there is always a match
    return match.end() if match else pos
