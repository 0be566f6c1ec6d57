"""Writing outputs so that a failure never leaves a half-written file behind."""

from __future__ import annotations

import os
import stat
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
    The file gets the mode `open()` would give it (the umask's), or keeps the mode of the file it replaces.
    """
    target = Path(path)
    if target.is_dir():
        raise CajajejoError(f"{target}: is a directory; give a file name for the output")
    temporary: str | None = None
    try:  # one try from the file's creation on, so that an interrupt at any point removes it
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        except OSError as exc:
            raise CajajejoError(f"{target}: cannot write here: {exc.strerror or exc}") from None
        # mkstemp creates the file 0600; give it the mode a plain open() would have given it.
        os.fchmod(fd, _mode_for(target))
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise


def _mode_for(target: Path) -> int:
    """The mode of the file being replaced, else what the umask allows of 0666."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def current_umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomically(path: str | Path, text: str) -> None:
    """Write `text` to `path` through `atomic_writer` ('-' is stdout)."""
    if str(path) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with atomic_writer(path) as handle:
        handle.write(text)
