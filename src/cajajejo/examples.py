"""The example files that commands use as defaults (the quickstart's debug job), found from any folder.

In a clone (an editable install) they are the repository's own files under jobs/, so a run from a
clean clone is stamped with their commit and repository paths. A wheel carries copies of them
under cajajejo/examples/ (see `force-include` in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

from cajajejo.errors import CajajejoError

DEBUG_EVALUATION_CONFIG = "jobs/evaluation/debug.job_config.yml"
DEBUG_RUN_SPECS = "jobs/evaluation/app/debug.conf"

_PACKAGE = Path(__file__).resolve().parent


def example_file(relative: str) -> Path:
    """The repository's `relative` file when cajajejo runs from a clone, else the wheel's copy."""
    for candidate in (_PACKAGE.parents[1] / relative, _PACKAGE / "examples" / relative):
        if candidate.is_file():
            return candidate
    raise CajajejoError(f"{relative} is missing from this installation of cajajejo; reinstall it")
