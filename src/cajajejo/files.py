"""Writing outputs so that a failure never leaves a half-written file behind."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from cajajejo.errors import CajajejoError

STDOUT = "-"


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[TextIO]:
    """A text file that appears at `path` only when the block ends without an error.

    It is written beside `path` under a temporary name, flushed to disk, then renamed into place;
    on any exception (Ctrl-C included) the temporary file is removed. Parent folders are created.
    """
    target = Path(path)
    if target.is_dir():
        raise CajajejoError(f"{target}: is a directory; give a file name for the output")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise CajajejoError(f"{target}: cannot write here: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomically(path: str | Path, text: str) -> None:
    """Write `text` to `path` through `atomic_writer` ('-' is stdout)."""
    if str(path) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with atomic_writer(path) as handle:
        handle.write(text)
