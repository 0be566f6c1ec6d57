"""What the repository's `tasks.py` needs from invoke: cajajejo's one-line errors and exit codes.

invoke would print a traceback for any exception a task raises; a task wrapped in `reported` prints
`error: ...` lines instead and exits with the error's code (2 for bad input, 1 otherwise), the same
as the `cajajejo` command. `CAJAJEJO_TRACE=1` shows the traceback.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

from cajajejo.errors import CajajejoError

F = TypeVar("F", bound=Callable[..., Any])


def reported(task_function: F) -> F:
    @functools.wraps(task_function)  # invoke reads the task's arguments through __wrapped__
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from invoke.exceptions import Exit

        try:
            return task_function(*args, **kwargs)
        except CajajejoError as exc:
            if os.environ.get("CAJAJEJO_TRACE"):
                raise
            lines = [line if line.startswith("  ") else f"error: {line}" for line in str(exc).splitlines()]
            raise Exit("\n".join(lines), code=exc.exit_code) from None

    return wrapper  # type: ignore[return-value]
