"""How cajajejo talks to an MLflow server over HTTP: bounded retries, said out loud while it waits.

MLflow's client retries failed requests itself (urllib3 underneath). Its defaults (7 retries,
backoff factor 2) keep a command silent for about four minutes when the server is down; a person
or a job log then sees nothing until one line at the end. Every cajajejo command that reaches
MLflow sets these bounds (unless the user set MLflow's variables) and prints one line per retry.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from cajajejo.errors import one_line

# urllib3 sleeps 0, 2, 4, 8 s between these (plus up to 1 s of MLflow's jitter each): a request to a
# server that is down fails after ~15-20 s, long enough to ride out a server restart.
MLFLOW_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}

_RETRY_LOGGER = "urllib3.connectionpool"  # logs "Retrying (Retry(total=N, ...)) after connection broken by ..."


class _RetryReporter(logging.Handler):
    """Turns urllib3's retry warnings into one readable line each."""

    def __init__(self, what: str, stream: TextIO) -> None:
        super().__init__(logging.WARNING)
        self.what = what
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        if not str(record.msg).startswith("Retrying"):
            return
        args = record.args if isinstance(record.args, tuple) else ()
        left = getattr(args[0], "total", None) if args else None
        reason = _reason(args[1]) if len(args) > 1 else "no answer"
        tries = f"; {left} more tries" if isinstance(left, int) else ""
        print(f"waiting for {self.what}: {reason}; retrying{tries}", file=self.stream, flush=True)


def _reason(error: object) -> str:
    text = one_line(error, 300)
    for known in ("Connection refused", "Name or service not known", "timed out", "Connection reset"):
        if known.lower() in text.lower():
            return known.lower()
    return text


@contextmanager
def talking_to_mlflow(tracking_uri: str, stream: TextIO | None = None) -> Iterator[None]:
    """Bound MLflow's HTTP retries and report each retry on `stream` (stderr) while the block runs."""
    for name, value in MLFLOW_RETRY_DEFAULTS.items():
        os.environ.setdefault(name, value)
    logger = logging.getLogger(_RETRY_LOGGER)
    handler = _RetryReporter(f"MLflow at {tracking_uri}", stream or sys.stderr)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
