"""What the repository's `tasks.py` needs from invoke: cajajejo's one-line errors and exit codes.

invoke would print a traceback for any exception a task raises; a task wrapped in `reported` prints
`error: ...` lines instead and exits with the error's code (2 for bad input, 1 otherwise), the same
as the `cajajejo` command. `CAJAJEJO_TRACE=1` also prints the traceback; the exit code stays the same.
"""

from __future__ import annotations

import functools
import os
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from cajajejo.errors import CajajejoError, error_lines

F = TypeVar("F", bound=Callable[..., Any])


def reported(task_function: F) -> F:
    @functools.wraps(task_function)  # invoke reads the task's arguments through __wrapped__
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from invoke.exceptions import Exit

        try:
            return task_function(*args, **kwargs)
        except CajajejoError as exc:
            if os.environ.get("CAJAJEJO_TRACE"):
                traceback.print_exc()  # in addition to the message: the exit code stays the same
            raise Exit("\n".join(error_lines(exc)), code=exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


# Flags invoke itself reads after a task's name, which a task's short flag must not shadow.
_RESERVED_SHORT_FLAGS = frozenset({"h"})


def task_with_short_flags(short: dict[str, str], **task_options: Any) -> Callable[[F], F]:
    """`@task(**task_options)` with each option's short flag chosen by hand (`short`: option -> letter).

    invoke's automatic short flags take the first free letter of each option, which handed `-h`
    (help's) to --helm-config and to --shift-amount; chosen ones can also mean the same in every task
    (-n namespace, -o output, -a allow dirty). Options missing from `short` have only the long flag.
    """
    from invoke.tasks import Task, task

    letters = list(short.values())
    bad = sorted({f for f in letters if f in _RESERVED_SHORT_FLAGS or letters.count(f) > 1 or len(f) != 1})
    if bad:
        raise ValueError(f"short flags {bad} are reserved, repeated or longer than one letter")

    class ChosenShortFlagsTask(Task[Any]):
        def arg_opts(self, name: str, default: Any, taken_names: set[str]) -> dict[str, Any]:
            opts: dict[str, Any] = super().arg_opts(name, default, taken_names)
            if name in short:
                opts["names"] = [*opts["names"], short[name]]
            return opts

    decorator: Callable[[F], F] = task(klass=ChosenShortFlagsTask, auto_shortflags=False, **task_options)
    return decorator
