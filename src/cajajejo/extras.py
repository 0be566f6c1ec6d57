"""What each optional part of cajajejo needs installed, and one clear line when it is missing.

`pip install cajajejo` is enough to render, validate and submit jobs; running a job's work (the
evaluation runtime) needs the `evaluation` extra. Without this check a light install fails deep
inside a command with `ModuleNotFoundError`.
"""

from __future__ import annotations

import importlib.util

from cajajejo.errors import Problem, UserInputError

# The modules each extra brings (pyproject.toml's [project.optional-dependencies]) that commands import.
EXTRA_MODULES = {
    "evaluation": ("mlflow", "helm", "transformers", "torch", "nltk", "google.cloud.storage"),
}

INSTALL_HINT = {
    "evaluation": (
        "bash scripts/install.sh in a clone of cajajejo (it pins the CPU build of torch), "
        "or pip install 'cajajejo[evaluation]'"
    ),
}


class MissingRuntimeError(UserInputError):
    """A command needs an extra that is not installed: the user can fix it (exit 2)."""


def missing_modules(extra: str) -> list[str]:
    missing = []
    for module in EXTRA_MODULES[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a parent package (google.cloud) is missing
            found = False
        if not found:
            missing.append(module)
    return missing


def require_runtime(extra: str, command: str) -> None:
    """Raise a one-line MissingRuntimeError naming the extra and how to install it, if anything is missing."""
    missing = missing_modules(extra)
    if missing:
        raise MissingRuntimeError(
            Problem(
                command,
                f"needs the {extra} runtime, and {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not installed; install it with: {INSTALL_HINT[extra]}",
            )
        )
