"""Error types that reach the user as one line per problem and an exit code.

Exit codes: 2 when the user's input is wrong (they can fix it), 1 when something else failed.
The root CLI prints `str(error)` and exits with `error.exit_code`; tracebacks only with `--trace`.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
MAX_LINE = 300  # an error line longer than this is cut: a person reads the start, and values are echoed short


def printable(text: str) -> str:
    """`text` with every character that could break or fake a line (newlines, controls, U+2028...) escaped."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def shortened(text: str, limit: int = MAX_LINE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input: where it is and what to do about it."""

    source: str  # a file path, or another name the user recognises ("--job-name")
    message: str
    field: str | None = None  # dotted field path, e.g. compute_config.memory
    line: int | None = None  # 1-based

    def __str__(self) -> str:
        # One line, whatever a file name, a key or an echoed value holds: no user text can start a
        # second line that looks like ours.
        where = printable(self.source) if self.line is None else f"{printable(self.source)}:{self.line}"
        if self.field:
            where = f"{where}: {printable(self.field)}"
        return shortened(f"{where}: {printable(self.message)}", MAX_LINE - len("error: "))


def quoted(value: object, limit: int = 60) -> str:
    """`value` as it may be echoed in an error: its repr (escapes included), shortened to about `limit`.

    A string that looks like it holds a credential is never echoed: errors end up in terminals, CI
    logs and issue trackers.
    """
    from cajajejo.credentials import credential_in_value

    if isinstance(value, str) and credential_in_value(value):
        return "(a value that looks like a credential, not shown)"
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str | bytes | list | dict) else ""
    return text[: limit - 1] + "…" + size


def one_line(value: object, limit: int = 500) -> str:
    """`value` as text on one line (a library's multi-line message inside our one-line errors)."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class CajajejoError(Exception):
    """Base class: an error whose text is meant for the user, not a traceback."""

    exit_code = EXIT_FAILURE


def error_lines(exc: CajajejoError) -> list[str]:
    """What the user sees for `exc`: `error: ...` per line; indented lines continue the one above.

    Every line is escaped and cut to MAX_LINE here too, whatever built the message (a cluster's or a
    library's words may be long or hold line breaks).
    """
    return [
        shortened(printable(line) if line.startswith("  ") else f"error: {printable(line)}")
        for line in str(exc).split("\n")  # only our line breaks: U+2028, \r... are escaped, not split on
    ]


class UserInputError(CajajejoError):
    """The user's input is invalid; carries one Problem per line of output."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, problems: list[Problem] | Problem) -> None:
        self.problems = problems if isinstance(problems, list) else [problems]
        super().__init__("\n".join(str(p) for p in self.problems))


class RenderedManifestError(CajajejoError):
    """A rendered manifest failed validation: a bug in cajajejo or in a user's template override."""

    exit_code = EXIT_FAILURE
