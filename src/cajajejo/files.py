"""Writing outputs so that a failure never leaves a half-written file behind."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from cajajejo.errors import CajajejoError

STDOUT = "-"


def write_text_atomically(path: str | Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it into place ('-' is stdout)."""
    if str(path) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
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
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
