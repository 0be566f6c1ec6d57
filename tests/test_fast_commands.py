"""Rendering and validating stay light: none of the heavy runtime libraries is imported."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import MLFLOW_EXAMPLE, RUN_SPECS

HEAVY = ("mlflow", "google.cloud", "kubernetes", "torch", "helm", "transformers", "git")

PROBE = """
import json, sys
from cajajejo.cli import cli
try:
    cli.main(args=sys.argv[1:], standalone_mode=False)
finally:
    print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _modules_after(*args: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True)
    return list(json.loads(result.stderr.strip().splitlines()[-1]))


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def test_parse_job_imports_no_heavy_library() -> None:
    modules = _modules_after("jobs", "evaluation", "parse-job", str(MLFLOW_EXAMPLE), str(RUN_SPECS), "-")
    assert "cajajejo.render.plan" in modules  # the probe really rendered
    assert _heavy(modules) == []


def test_validate_config_imports_no_heavy_library() -> None:
    modules = _modules_after("jobs", "evaluation", "validate-config", str(MLFLOW_EXAMPLE))
    assert "cajajejo.config.evaluation" in modules
    assert _heavy(modules) == []
