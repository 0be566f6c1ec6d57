"""The `cajajejo` command line.

Start-up stays fast: this module imports only click; each command imports what it needs when it runs.
Every user mistake prints `error: where: what to do` (one line per problem) and exits 2; other
failures exit 1; a traceback appears only with `--trace`.
"""

from __future__ import annotations

import os

# Each module adds its commands to the root group when imported.
from cajajejo.cli import checkpoints, groups, jobs, observe, runtime, volumes, workflows  # noqa: F401
from cajajejo.cli.root import cli

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> None:
    # pydantic looks for plugins the first time it builds a model: it lists the entry points of every
    # installed distribution (~12 ms here, where HELM and MLflow bring hundreds), on each run, for
    # plugins that neither cajajejo nor its environments install. Only this process (the command, not
    # code importing cajajejo) skips the scan, unless the user decided otherwise: an empty value turns
    # plugins back on. Child processes (helm-run) inherit the setting; HELM uses no pydantic plugin.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    cli.main(args=argv, prog_name="cajajejo")
