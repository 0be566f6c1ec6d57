"""Running the external tools users already have (docker, gcloud): argument lists only, never a shell."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Sequence

from cajajejo.errors import CajajejoError

INSTALL_HINTS = {
    "docker": "install Docker: https://docs.docker.com/get-docker/",
    "gcloud": "install the Google Cloud CLI: https://cloud.google.com/sdk/docs/install",
}


def run_tool(argv: Sequence[str]) -> None:
    """Run `argv` with the user's terminal attached; a failure is one line naming the command."""
    print(f"$ {shlex.join(argv)}", file=sys.stderr, flush=True)  # shown quoted, run without a shell
    try:
        completed = subprocess.run(list(argv), check=False)  # an argument list: no shell
    except FileNotFoundError:
        hint = INSTALL_HINTS.get(argv[0], "install it")
        raise CajajejoError(f"{argv[0]} is not installed or not on PATH; {hint}") from None
    if completed.returncode != 0:
        raise CajajejoError(f"`{shlex.join(argv[:3])} ...` failed with exit code {completed.returncode}")
