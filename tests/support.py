"""Test helpers: the repository's example files and a runner for the real CLI."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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
