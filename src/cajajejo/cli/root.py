"""The root `cajajejo` group: one-line errors, exit codes, --trace and --version."""

from __future__ import annotations

from typing import Any

import click

from cajajejo import __version__
from cajajejo.errors import EXIT_FAILURE, CajajejoError, Problem


class ErrorReportingGroup(click.Group):
    """Turns CajajejoErrors (and unexpected ones) into short messages unless --trace was given."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except CajajejoError as exc:
            if ctx.params.get("trace"):
                raise
            for line in str(exc).splitlines():
                click.echo(f"error: {line}" if not line.startswith("  ") else line, err=True)
            ctx.exit(exc.exit_code)
        except Exception as exc:
            if ctx.params.get("trace"):
                raise
            click.echo(f"error: internal error: {type(exc).__name__}: {exc} (run with --trace for details)", err=True)
            ctx.exit(EXIT_FAILURE)


@click.group(cls=ErrorReportingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--trace", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(__version__, prog_name="cajajejo")
def cli(trace: bool) -> None:
    """Render, check and run ML jobs (HELM evaluations first) on Kubernetes, reproducibly."""


def warn(problems: tuple[Problem, ...]) -> None:
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)
