"""Test helpers: the repository's example files, a runner for the real CLI, ports and tools for real servers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from cajajejo.cli import cli

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "jobs" / "evaluation"
MLFLOW_EXAMPLE = EXAMPLES / "example.mlflow.job_config.yml"
GCS_EXAMPLE = EXAMPLES / "example.gcs.job_config.yml"
DEBUG_EXAMPLE = EXAMPLES / "debug.job_config.yml"
RUN_SPECS = EXAMPLES / "app" / "run_specs.conf"
DEBUG_RUN_SPECS = EXAMPLES / "app" / "debug.conf"


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args: str | Path) -> CliResult:
    """Run the `cajajejo` command in-process, with stdout and stderr kept apart."""
    result = CliRunner().invoke(cli, [str(a) for a in args], prog_name="cajajejo")
    return CliResult(result.exit_code, result.stdout, result.stderr)


def run_cli_process(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the `cajajejo` command in a fresh interpreter, exactly as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "cajajejo.cli", *map(str, args)], capture_output=True, text=True, check=False
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def require_tool(tool: str) -> str:
    """The path of `tool` (next to this Python first, then on PATH); fails the test when it is missing."""
    path = shutil.which(tool, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if path is None:
        pytest.fail(f"{tool} is not installed: run scripts/install.sh .venv evaluation,dev (the runtime tests need it)")
    return path


@dataclass(frozen=True)
class MlflowServer:
    """The session's `mlflow server` (fixture `mlflow_server` in tests/conftest.py)."""

    uri: str
