"""A per-user folder of things cajajejo can always rebuild: compiled schemas, template bytecode.

Nothing in it is ever needed. A reader treats a missing, unreadable or corrupt entry as absent and
rebuilds it; a writer gives up silently where the folder cannot be written (a read-only home, a
container without one), so the command still works, only without the head start.

Entries are written under a temporary name and renamed into place, so that a process reading while
another writes sees the old entry or the new one, never half of one. Each entry starts with a checksum
of its body: a file cut short by a crash (the rename may reach the disk before the data does) or
damaged later reads as absent instead of as wrong data.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

_MAGIC = b"cajajejo-cache-1 "


def cache_dir() -> Path | None:
    """`$XDG_CACHE_HOME/cajajejo`, else `~/.cache/cajajejo`; None when there is no home to put it in."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec says to ignore a relative (or empty) value
        home = os.path.expanduser("~")
        # A home that does not exist is not created (it would be, by root, for a HOME set to nowhere).
        if not os.path.isabs(home) or not os.path.isdir(home):
            return None
        base = os.path.join(home, ".cache")
    return Path(base) / "cajajejo"


def read_entry(name: str) -> bytes | None:
    """The body stored under `name`, or None if there is none or it is damaged."""
    folder = cache_dir()
    if folder is None:
        return None
    try:
        data = (folder / name).read_bytes()
    except OSError:
        return None
    header, newline, body = data.partition(b"\n")
    if not newline or header != _MAGIC + hashlib.sha256(body).hexdigest().encode():
        return None
    return body


def write_entry(name: str, body: bytes) -> bool:
    """Store `body` under `name`, replacing any older entry; False (and nothing left behind) on failure."""
    folder = cache_dir()
    if folder is None:
        return False
    temporary = folder / f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # private, as the XDG spec asks
        temporary.write_bytes(_MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
        os.replace(temporary, folder / name)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        return False
    return True
