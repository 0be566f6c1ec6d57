"""The root `cajajejo` group: one-line errors, exit codes, --trace and --version."""

from __future__ import annotations

import traceback
from typing import Any, NoReturn

import click

from cajajejo import __version__
from cajajejo.errors import EXIT_FAILURE, MAX_LINE, CajajejoError, Problem, error_lines, printable, shortened


class ErrorReportingGroup(click.Group):
    """Turns CajajejoErrors (and unexpected ones) into short messages and the right exit code.

    `--trace` adds the traceback before the message and changes nothing else: the job's container
    runs `cajajejo --trace evaluate`, and its exit code must still tell bad input (2) from a failure (1).
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except CajajejoError as exc:
            _fail(ctx, error_lines(exc), exc.exit_code)
        except Exception as exc:
            hint = "" if ctx.params.get("trace") else " (run with --trace for details)"
            what = shortened(
                f"error: internal error: {type(exc).__name__}: {printable(str(exc))}", MAX_LINE - len(hint)
            )
            _fail(ctx, [what + hint], EXIT_FAILURE)


def _fail(ctx: click.Context, lines: list[str], exit_code: int) -> NoReturn:
    if ctx.params.get("trace"):
        click.echo(traceback.format_exc().rstrip(), err=True)
    for line in lines:
        click.echo(line, err=True)
    ctx.exit(exit_code)


@click.group(cls=ErrorReportingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--trace", is_flag=True, help="Also show full tracebacks (exit codes stay the same).")
@click.version_option(__version__, prog_name="cajajejo")
def cli(trace: bool) -> None:
    """Render, check and run ML jobs (HELM evaluations first) on Kubernetes, reproducibly."""


def warn(problems: tuple[Problem, ...]) -> None:
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)
