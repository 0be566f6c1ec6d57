"""The built-in DDP trainer that a training job's containers run under torchrun (`python -m cajajejo.training`).

This module stays light: the CLI imports it, so torch, transformers and mlflow are imported only when
`main` runs. The pieces: `command` (arguments, config, exit codes), `trainer` (the loop), `world`
(torchrun's process group), `sync` (stop agreement and loss averaging), `data` (sample order),
`tasks` and `text` (models and their data), `state` (what a checkpoint holds besides the model),
`tracking` (MLflow). The checkpoint protocol itself is `cajajejo.checkpoints`.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """`python -m cajajejo.training [--config PATH ...]` with `argv`; returns the exit code."""
    from cajajejo.training.command import main as run_command

    return run_command(argv)
