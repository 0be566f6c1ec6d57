"""Checks a HELM run-spec file (HOCON, as `helm-run --conf-paths` reads it) before it ships in a ConfigMap.

HELM parses this file with pyhocon inside the job's container; parsing it with the same library here
turns a typo into an error at render time instead of a failed GPU job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cajajejo.config.source import read_text_file
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
    if problems:
        raise UserInputError(problems)
    return RunSpecs(name, text, tuple(descriptions))


def _parse(text: str, name: str) -> Any:
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
