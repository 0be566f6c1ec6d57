"""The evaluation container's entry point: `python3 cli.py [--trace] evaluate [--local]`, `... test`.

A thin shim over the package (the same commands are `cajajejo evaluate ...`), kept because the
original image ran this file; `test` runs the runtime's tests inside the image.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cajajejo.cli import cli


@cli.command("test", context_settings={"ignore_unknown_options": True})
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def run_tests(pytest_args: tuple[str, ...]) -> None:
    """Run the test suite that ships with the image (arguments go to pytest)."""
    import pytest

    tests = Path(__file__).resolve().parents[2] / "tests"
    sys.exit(pytest.main([str(tests), *pytest_args]))


if __name__ == "__main__":
    cli.main(prog_name="cli.py")
