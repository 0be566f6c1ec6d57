"""`python -m cajajejo.training`: the command torchrun starts in every process of a training job.

    python -m cajajejo.training --config PATH [--checkpoint-dir DIR] [--max-steps N] [--stop-after-steps N]

Bad input (an unreadable or invalid config, a config with `training.script`, a bad option) is one
line per problem on stderr and exit code 2; other cajajejo errors exit 1. Torch is imported only
once the input is known to be good.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from cajajejo.config.training import TrainingJobConfig
from cajajejo.errors import CajajejoError, Problem, UserInputError, error_lines

PROG = "python -m cajajejo.training"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints its usage and exits; a one-line error is what every cajajejo command gives.
        raise UserInputError(Problem(PROG, f"{message} (see --help)"))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def parser() -> argparse.ArgumentParser:
    command = _Parser(prog=PROG, description="Run the built-in DDP trainer (one process of torchrun's world).")
    command.add_argument("--config", required=True, type=Path, help="The training job config (YAML).")
    command.add_argument("--checkpoint-dir", type=Path, help="Instead of training.checkpoints.directory.")
    command.add_argument("--max-steps", type=_positive, help="Instead of training.trainer.max_steps.")
    command.add_argument(
        "--stop-after-steps",
        type=_positive,
        help="Do at most this many steps in this process, then checkpoint and exit 0 (segmented training).",
    )
    command.add_argument(
        "--hold-for",
        metavar="ROLE",
        type=_role,
        help="When training ends, keep its last checkpoint until evaluator role ROLE has a result for it.",
    )
    return command


def _role(text: str) -> str:
    from cajajejo.checkpoints import check_label

    try:
        return check_label(text, "role")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def load_config(path: Path) -> TrainingJobConfig:
    """The validated training config at `path`; UserInputError with file:line problems otherwise."""
    from cajajejo.config.loader import load_training_config

    return load_training_config(path).config


def main(argv: list[str] | None = None) -> int:
    """Parse, validate, train; returns the exit code (errors are printed here, one line each)."""
    try:
        args = parser().parse_args(argv)
        config = load_config(args.config)
        if config.training.trainer is None:
            raise UserInputError(
                Problem(
                    str(args.config),
                    "sets training.script: the built-in trainer runs only training.trainer "
                    "(torchrun runs your script itself)",
                    field="training.script",
                )
            )
        from cajajejo.training.trainer import TrainingOptions, train

        options = TrainingOptions(
            config=config,
            config_path=str(args.config),
            checkpoint_dir=args.checkpoint_dir or Path(config.training.checkpoints.directory),
            max_steps=args.max_steps,
            stop_after_steps=args.stop_after_steps,
            hold_for=args.hold_for,
        )
        return train(options)
    except CajajejoError as exc:
        for line in error_lines(exc):
            print(line, file=sys.stderr, flush=True)
        return exc.exit_code
