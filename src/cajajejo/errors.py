"""Error types that reach the user as one line per problem and an exit code.

Exit codes: 2 when the user's input is wrong (they can fix it), 1 when something else failed.
The root CLI prints `str(error)` and exits with `error.exit_code`; tracebacks only with `--trace`.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input: where it is and what to do about it."""

    source: str  # a file path, or another name the user recognises ("--job-name")
    message: str
    field: str | None = None  # dotted field path, e.g. compute_config.memory
    line: int | None = None  # 1-based

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        if self.field:
            where = f"{where}: {self.field}"
        return f"{where}: {self.message}"


def one_line(value: object, limit: int = 500) -> str:
    """`value` as text on one line (a library's multi-line message inside our one-line errors)."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class CajajejoError(Exception):
    """Base class: an error whose text is meant for the user, not a traceback."""

    exit_code = EXIT_FAILURE


def error_lines(exc: CajajejoError) -> list[str]:
    """What the user sees for `exc`: `error: ...` per line; indented lines continue the one above."""
    return [line if line.startswith("  ") else f"error: {line}" for line in str(exc).splitlines()]


class UserInputError(CajajejoError):
    """The user's input is invalid; carries one Problem per line of output."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, problems: list[Problem] | Problem) -> None:
        self.problems = problems if isinstance(problems, list) else [problems]
        super().__init__("\n".join(str(p) for p in self.problems))


class RenderedManifestError(CajajejoError):
    """A rendered manifest failed validation: a bug in cajajejo or in a user's template override."""

    exit_code = EXIT_FAILURE
