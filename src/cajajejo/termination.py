"""Ending cleanly when the process is told to stop (SIGTERM, SIGHUP) as it does on Ctrl-C.

Writing an output file and submitting a job both undo half-done work when interrupted: the atomic
writer removes its temporary file, a submission rolls back what it created. Both happen while an
exception unwinds; a signal left to its default action ends the process without one.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, NoReturn

# Signals whose default action ends the process on the spot; SIGINT already raises KeyboardInterrupt.
TERMINATING_SIGNALS = ("SIGTERM", "SIGHUP")


@contextmanager
def exit_cleanly_on_termination() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise SystemExit(128 + the signal's number).

    Left to their default action they end the process at once, and `atomic_writer` never gets to
    remove its temporary file; as an exception they unwind through it like Ctrl-C, and the exit code
    is still the shell's convention for "terminated" (143 for SIGTERM). A signal with a handler of
    someone else's, or one that is ignored (nohup), stays as it is; only the main thread can set them.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}
    for number in _terminating_signals():
        if signal.getsignal(number) is signal.SIG_DFL:
            previous[number] = signal.signal(number, _raise_exit)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _terminating_signals() -> list[int]:
    return [getattr(signal, name) for name in TERMINATING_SIGNALS if hasattr(signal, name)]  # Windows has no SIGHUP


def _raise_exit(number: int, frame: FrameType | None) -> NoReturn:
    # A second signal during the clean-up must not cut it short; the block's end restores the handlers.
    for other in _terminating_signals():
        if signal.getsignal(other) is _raise_exit:
            signal.signal(other, signal.SIG_IGN)
    raise SystemExit(128 + number)
