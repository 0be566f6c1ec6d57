"""Shell text out of the renderer: the Jinja environment for batch scripts, and the quoting it enforces.

The rule is the manifests' rule (`yaml_text.py`), for a shell: a template shapes the script, and
every value enters it through a filter that makes it data in its place.

- `sh` quotes a value as one shell word: single quotes, in which bash expands nothing; text with a line
  break or other unprintable character as `$'...'` with `\\xHH` escapes, so every line of a script is a
  line of its template.
- `sh_command` writes an argv as one command line, each word quoted. cajajejo's own run-time values
  (`$SLURM_NODEID`, ...) are written into words with `expansion(NAME)`, and come out as `"${NAME}"`
  between the quoted parts: double quotes, so even they are one word with no splitting or globbing.
- `sh_name` passes a variable name only if it is one (`export A.B=...` would be a syntax error).
- `sbatch` passes an `#SBATCH` value only if it is made of characters that mean nothing to sbatch's
  own tokenizer, which is not a shell (its quoting rules differ by version; it ends a value at
  whitespace and starts a comment at `#`). A value is refused rather than escaped, so no escaping
  rule of sbatch's has to be guessed right.

Autoescape is off (it escapes for HTML), but `finalize` refuses any `{{ ... }}` whose value did not
come out of one of these filters: a template that forgets one fails to render, instead of writing a
user's string into the script as code. NUL is refused everywhere: no command line can carry it.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2

from cajajejo.config.slurm import has_component_word
from cajajejo.errors import Problem, UserInputError


class ShellText(str):
    """Text already made safe for its place in a shell script; the only kind of value a template may output."""


# cajajejo's own values that a command may expand at run time, and nothing else.
EXPANDABLE = frozenset({"SLURM_NODEID", "SLURM_JOB_ID", "SLURM_NNODES", "MASTER_ADDR", "MASTER_PORT"})
_MARK = "\x00"  # no user string holds it (`no_nul` refuses them), so a marked name is always ours
_EXPANSION = re.compile(f"{_MARK}([A-Z_][A-Z0-9_]*){_MARK}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SBATCH_VALUE = re.compile(r"[A-Za-z0-9_.,:=+@%/~\[\]()*!&|-]+")
_SBATCH_OPTION = re.compile(r"--[a-z][a-z0-9-]*")


def expansion(name: str) -> str:
    """A placeholder for `"${name}"` inside a word given to `sh_command` (one of EXPANDABLE)."""
    if name not in EXPANDABLE:
        raise ValueError(f"{name} is not a variable cajajejo expands in a batch script")
    return f"{_MARK}{name}{_MARK}"


def no_nul(value: str, where: str, field: str | None = None) -> str:
    """`value`, unless it holds what no command line or environment can carry: NUL, or a lone surrogate
    (a YAML `"\\ud800"` escape) that has no bytes in UTF-8."""
    if _MARK in value:
        message = "contains a NUL character, which a command line cannot carry; remove it"
        raise UserInputError(Problem(where, message, field=field))
    if _SURROGATE.search(value):
        message = "contains a lone surrogate (\\ud800-\\udfff), which is not text a process can receive; remove it"
        raise UserInputError(Problem(where, message, field=field))
    return value


def _defined(value: Any) -> Any:
    # A filter sees an undefined name before `finalize` does: fail as StrictUndefined does (str() raises).
    if isinstance(value, jinja2.Undefined):
        str(value)
    return value


def sh(value: Any) -> ShellText:
    """`value` (text or a whole number) as one shell word that bash reads back as exactly this text.

    Printable text goes in single quotes, in which bash expands nothing. Text with a line break or
    another unprintable character goes in bash's `$'...'` with those characters as `\\xHH` bytes (of
    UTF-8, whatever the job's locale): then every line of the script is a line of the template, and no
    value can put a line that starts with `#` (a directive to sbatch or a burst-buffer plugin) into it.
    """
    value = _defined(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"cannot write a {type(value).__name__} into a shell script; pass text or a number")
    text = str(value)
    if _MARK in text:
        raise ValueError("a shell word cannot hold NUL")
    if text.isprintable():
        return ShellText(shlex.quote(text))
    return ShellText("$'" + "".join(_ansi_c(char) for char in text) + "'")


def _ansi_c(char: str) -> str:
    if char in "\\'":
        return "\\" + char
    if char.isprintable():
        return char
    return "".join(f"\\x{byte:02x}" for byte in char.encode("utf-8"))


def _word(word: str) -> str:
    pieces: list[str] = []
    for i, part in enumerate(_EXPANSION.split(word)):
        if i % 2:  # the captured name of an expansion
            if part not in EXPANDABLE:
                raise ValueError(f"{part} is not a variable cajajejo expands in a batch script")
            pieces.append(f'"${{{part}}}"')
        elif part or len(word) == 0:
            pieces.append(sh(part))
    return "".join(pieces)


def sh_command(argv: Iterable[str]) -> ShellText:
    """An argv as one command line: every word quoted, cajajejo's `expansion(...)`s expanded in place."""
    words = [_word(word) for word in _defined(argv)]
    if not words:
        raise ValueError("an empty command")
    return ShellText(" ".join(words))


def sh_name(name: Any) -> ShellText:
    """A shell variable name, unchanged, or an error: names cannot be quoted."""
    name = _defined(name)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a shell variable name")
    return ShellText(name)


def sbatch(value: Any) -> ShellText:
    """An `#SBATCH` option's value, unchanged, or an error when a character could mean something to sbatch."""
    value = _defined(value)
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _SBATCH_VALUE.fullmatch(text) or has_component_word(text):
        raise ValueError(f"{value!r} cannot be an #SBATCH value (only letters, digits and ._,:=+@%/~[]()*!&|-)")
    return ShellText(text)


def sbatch_option(name: Any) -> ShellText:
    """An `#SBATCH` option's name (`--partition`), unchanged, or an error."""
    name = _defined(name)
    if not isinstance(name, str) or not _SBATCH_OPTION.fullmatch(name):
        raise ValueError(f"{name!r} is not an sbatch option name")
    return ShellText(name)


def only_shell_text(value: Any) -> Any:
    """Jinja `finalize` hook: refuse any output that did not go through a quoting filter."""
    if isinstance(value, ShellText):
        return value
    raise TypeError(f"template outputs {value!r} without a quoting filter; write {{{{ value | sh }}}}")


@functools.cache
def shell_environment(template_dir: Path | None = None) -> jinja2.Environment:
    """The environment batch scripts are rendered in: the package's templates, or a user's folder first."""
    loaders: list[jinja2.BaseLoader] = []
    if template_dir is not None:
        loaders.append(jinja2.FileSystemLoader(template_dir))
    loaders.append(jinja2.PackageLoader("cajajejo", "templates"))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        finalize=only_shell_text,
        autoescape=False,  # noqa: S701 - the output is a shell script; every value goes through a shell filter
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(sh=sh, sh_command=sh_command, sh_name=sh_name, sbatch=sbatch, sbatch_option=sbatch_option)
    return env
