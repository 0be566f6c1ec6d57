"""The `cajajejo` command line.

Start-up stays fast: this module imports only click; each command imports what it needs when it runs.
Every user mistake prints `error: where: what to do` (one line per problem) and exits 2; other
failures exit 1; a traceback appears only with `--trace`.
"""

from __future__ import annotations

# Each module adds its commands to the root group when imported.
from cajajejo.cli import jobs, observe, runtime  # noqa: F401
from cajajejo.cli.root import cli

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="cajajejo")
