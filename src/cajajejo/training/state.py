"""The trainer's state beside the model in a checkpoint: enough to go on exactly where it stopped.

    <checkpoint>/trainer_state/state.pt              optimizer, LR scheduler, progress (written by rank 0)
    <checkpoint>/trainer_state/rng-rank-00001.pt     RNG states of each rank (python, numpy, torch CPU, CUDA)

The optimizer and the model are the same on every rank (DDP keeps them so), so rank 0 writes them
once. Random states are per rank: dropout draws differ between ranks. A resume with another world
size gives the new ranks without a file of their own rank 0's states.
"""

from __future__ import annotations

import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

STATE_DIR = "trainer_state"
STATE_FILE = "state.pt"


@dataclass
class Progress:
    """How far training has got; `epoch` counts from 0, `step_in_epoch` steps of it are done."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    samples_in_epoch: int = 0  # consumed by all ranks together: what a resume skips
    world_size: int = 1
    mlflow_run_id: str | None = None
    train_loss: float | None = None  # the mean over the ranks at the last sync point


def save_trainer_state(folder: Path, optimizer: Any, scheduler: Any, progress: Progress) -> None:
    """Rank 0's part: optimizer, scheduler and progress into `folder/trainer_state/state.pt`."""
    (folder / STATE_DIR).mkdir(exist_ok=True)
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "progress": asdict(progress)}
    torch.save(state, folder / STATE_DIR / STATE_FILE)


def load_trainer_state(folder: Path, optimizer: Any, scheduler: Any, device: torch.device) -> Progress:
    """Restore optimizer and scheduler from a checkpoint folder; returns its progress."""
    state = torch.load(folder / STATE_DIR / STATE_FILE, map_location=device, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return Progress(**state["progress"])


def save_rng_states(folder: Path, rank: int) -> None:
    """This rank's random states into `folder/trainer_state/rng-rank-NNNNN.pt`."""
    (folder / STATE_DIR).mkdir(exist_ok=True)
    torch.save(_rng_states(), folder / STATE_DIR / _rng_file(rank))


def load_rng_states(folder: Path, rank: int) -> None:
    """Restore this rank's random states (rank 0's when the checkpoint has none for this rank)."""
    path = folder / STATE_DIR / _rng_file(rank)
    if not path.is_file():
        path = folder / STATE_DIR / _rng_file(0)
    states = torch.load(path, map_location="cpu", weights_only=True)
    random.setstate(_as_tuple(states["python"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])
    if "numpy" in states and "numpy" in sys.modules:
        sys.modules["numpy"].random.set_state(_numpy_state(states["numpy"]))


def _rng_file(rank: int) -> str:
    return f"rng-rank-{rank:05d}.pt"


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state()  # the current device's: one GPU per process
    numpy = sys.modules.get("numpy")  # only when something imported it: the trainer itself does not use it
    if numpy is not None:
        kind, keys, position, has_gauss, gauss = numpy.random.get_state()
        # Plain types and a tensor: weights_only loading refuses numpy arrays.
        states["numpy"] = [kind, torch.from_numpy(keys.astype("int64")), position, has_gauss, gauss]
    return states


def _numpy_state(saved: list[Any]) -> tuple[Any, ...]:
    kind, keys, position, has_gauss, gauss = saved
    return (kind, keys.numpy().astype("uint32"), position, has_gauss, gauss)


def _as_tuple(value: Any) -> Any:
    """random.setstate wants tuples all the way down; saving may have turned them into lists."""
    return tuple(_as_tuple(item) for item in value) if isinstance(value, list | tuple) else value
