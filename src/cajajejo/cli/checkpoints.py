"""`cajajejo checkpoints watch | list | request-stop`: evaluators beside a training run, on its checkpoint directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cajajejo.cli import options
from cajajejo.cli.root import cli
from cajajejo.errors import Problem, UserInputError, printable
from cajajejo.termination import exit_cleanly_on_termination

if TYPE_CHECKING:
    from cajajejo.watch import CheckpointSource

DIRECTORY = click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
FOREIGN = click.option(
    "--foreign",
    is_flag=True,
    help="DIR holds another trainer's checkpoint_epoch_N.pt files and latest.json (not a cajajejo ledger).",
)
STATE_DIR = click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="With --foreign: where claims and results go (default DIR/.cajajejo).",
)


@cli.group("checkpoints")
def checkpoints_group() -> None:
    """A training run's checkpoint directory, shared by the trainer and its evaluators."""


@checkpoints_group.command("watch")
@DIRECTORY
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--role", required=True, help="The evaluator's role (e.g. helm): results are kept per role.")
@click.option("--worker", help="This worker's name among the role's workers (default: <host>-<pid>).")
@FOREIGN
@STATE_DIR
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="A dead worker's checkpoint is taken over after this long.",
)
@click.option(
    "--poll-seconds", type=click.FloatRange(min=0.01), default=0.2, show_default=True, help="How often to look."
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Failed attempts (command failed, or its worker died) before a failed result is recorded.",
)
@click.option(
    "--stop-grace-seconds",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    help="After a stop request, finish when no checkpoint came for this long (a trainer that ignores it).",
)
def watch_command(
    directory: Path,
    command: tuple[str, ...],
    role: str,
    worker: str | None,
    foreign: bool,
    state_dir: Path | None,
    lease_seconds: float,
    poll_seconds: float,
    max_attempts: int,
    stop_grace_seconds: float,
) -> None:
    """Run COMMAND once per checkpoint of DIR, as evaluator role --role, until training is complete.

    Write it `cajajejo checkpoints watch DIR --role R -- COMMAND [ARGS...]`. COMMAND runs without a
    shell, with CAJAJEJO_CHECKPOINT_PATH, _NAME, _STEP and _EPOCH set. Its result is its exit code,
    plus its last line of output when that is a JSON object; a non-zero exit is retried up to
    --max-attempts. Several workers of one role share the work; exits 0 once training is complete and
    every checkpoint has a result of the role.
    """
    from cajajejo.watch import CommandEvaluator, Watcher, default_worker

    worker = worker or default_worker()
    options.check_label_option(role, "--role")
    options.check_label_option(worker, "--worker")
    _check_command(command[0])
    source = _source(directory, foreign, state_dir)
    watcher = Watcher(
        source,
        role,
        worker,
        lease_seconds=lease_seconds,
        poll_seconds=poll_seconds,
        max_attempts=max_attempts,
        stop_grace_seconds=stop_grace_seconds,
    )
    # SIGTERM (Kubernetes deleting the pod) unwinds like Ctrl-C: the command is stopped and the claim
    # released, so another worker takes the checkpoint at once instead of after the lease.
    with exit_cleanly_on_termination():
        watcher.run(CommandEvaluator(command, role, worker))


@checkpoints_group.command("list")
@DIRECTORY
@FOREIGN
@STATE_DIR
def list_command(directory: Path, foreign: bool, state_dir: Path | None) -> None:
    """One line per checkpoint of DIR with each evaluator role's status: ok, failed, running or pending."""
    import time

    source = _source(directory, foreign, state_dir, stable_seconds=0.0)
    state = source.state
    roles = state.roles()
    now = time.time()
    for checkpoint in source.ready(fresh=True):
        statuses = []
        for role in roles:
            result = state.result(role, checkpoint.name)
            if result is not None:
                statuses.append(f"{role}={result.status}")
                continue
            claim = state.newest_claim(role, checkpoint.name)
            live = claim is not None and claim.status(now) == "live"
            statuses.append(f"{role}=running({claim.worker})" if live and claim else f"{role}=pending")
        line = f"{checkpoint.name} step={checkpoint.step} epoch={checkpoint.epoch} {' '.join(statuses)}"
        click.echo(printable(line.rstrip()))
    request = state.stop_request()
    if request is not None:
        click.echo(printable(f"stop requested by {request.by}: {request.reason}"))
    if source.completion() is not None:
        click.echo("training complete")


@checkpoints_group.command("request-stop")
@DIRECTORY
@click.option("--reason", required=True, help="Why (the trainer logs it: reason=stop-request:<reason>).")
@click.option("--by", help="Who asks (default: this host's name).")
@FOREIGN
@STATE_DIR
def request_stop_command(directory: Path, reason: str, by: str | None, foreign: bool, state_dir: Path | None) -> None:
    """Ask the trainer writing DIR to stop early: it checkpoints, marks training complete and exits 0."""
    import socket

    if not directory.is_dir():
        raise UserInputError(Problem(str(directory), "no such checkpoint directory"))
    state = _source(directory, foreign, state_dir).state
    request = state.request_stop(reason, by or socket.gethostname())
    if request.reason == reason and (by is None or request.by == by):
        click.echo(printable(f"stop requested in {directory}: {reason}"))
    else:
        click.echo(printable(f"a stop was already requested by {request.by}: {request.reason}"))


def _source(directory: Path, foreign: bool, state_dir: Path | None, stable_seconds: float = 2.0) -> CheckpointSource:
    from cajajejo.watch import ForeignSource, LedgerSource

    if state_dir is not None and not foreign:
        raise click.UsageError("--state-dir needs --foreign (a cajajejo directory keeps its claims itself)")
    if foreign:
        return ForeignSource(directory, state_dir, stable_seconds=stable_seconds)
    return LedgerSource(directory)


def _check_command(program: str) -> None:
    """Fail at once, not at the first checkpoint, when the command cannot be found."""
    if shutil.which(program) is None and not (os.sep in program and os.access(program, os.X_OK)):
        raise UserInputError(Problem(program, "command not found (give a program on PATH or a path to one)"))
