"""Where the ranks meet during training: one small all-reduce at agreed steps carries the stop flag and the losses.

A stop request (SIGTERM, SIGUSR1) may reach any rank, or all of them at different moments; every rank
must stop after the same step, or the others wait forever in their next gradient all-reduce. So the
ranks agree: at a *sync point* each rank adds its flag to one all-reduce, and all of them see the
same sum. The same all-reduce averages the per-step losses over the ranks for the log and MLflow, and
carries rank 0's finding of an early-stop request (a file in the checkpoint directory: only rank 0
looks, so that N ranks do not poll a shared volume).

A sync point costs about as much as a step's gradient all-reduce (its latency, not its size: 2.3 ms
for 2 gloo processes on the 2-core CI machine, half of the smoke test's 4.5 ms step), so sync points
come every `interval` steps, where the interval grows until a sync happens about every
`TARGET_SECONDS`: 2 s keeps their cost near 0.1% of training (at 0.5 s it was 0.5%, measured with
`benchmarks/trainer_overhead.py`) and still stops within seconds of a signal, well inside the 30 s
that Kubernetes' grace period and Slurm's `--signal` lead give. The ranks agree on the next
interval too: each proposes one from its own clock, and the proposals are averaged in the same
all-reduce. The trainer also forces a sync point at every step where all ranks already know
something happens (epoch end, checkpoint, last step), so a stop never waits for more than about
TARGET_SECONDS.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import torch

from cajajejo.training.world import World

STOP_SIGNALS = ("SIGTERM", "SIGUSR1")  # Kubernetes and torchrun send SIGTERM; Slurm's --signal sends SIGUSR1
TARGET_SECONDS = 2.0
MAX_INTERVAL = 1000


class StopRequests:
    """Remembers the first stop signal this process received; the training loop reads it at sync points.

    Also the early-stop request someone left in the checkpoint directory (`CheckpointDir.request_stop`):
    rank 0 looks for it with `check_request` at each sync point (one failed open while there is none,
    every ~TARGET_SECONDS, not every step), and the sync all-reduce tells every rank.
    """

    def __init__(self, check_request: Callable[[], str | None] | None = None) -> None:
        self.signal_name: str | None = None
        self.check_request = check_request
        self.request_reason: str | None = None  # what check_request found (rank 0 only)
        self._previous: dict[int, Any] = {}

    def poll_request(self) -> bool:
        """Look for an early-stop request once (rank 0, at a sync point); True once one was found."""
        if self.request_reason is None and self.check_request is not None:
            self.request_reason = self.check_request()
        return self.request_reason is not None

    def install(self) -> None:
        """Catch STOP_SIGNALS from now on (main thread only; elsewhere signals cannot be caught)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for name in STOP_SIGNALS:
            number = getattr(signal, name)
            self._previous[number] = signal.signal(number, self._received)

    def uninstall(self) -> None:
        """Put back the handlers `install` replaced (`cajajejo.training.main` may run inside another program)."""
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _received(self, number: int, frame: FrameType | None) -> None:
        # Only a flag: the loop stops at the next sync point, after a checkpoint. A second signal changes nothing.
        if self.signal_name is None:
            self.signal_name = signal.Signals(number).name


@dataclass(frozen=True)
class SyncReport:
    """What all ranks agreed on at one sync point."""

    stop_requested: bool  # a stop signal reached some rank
    early_stop: bool  # rank 0 found an early-stop request in the checkpoint directory
    losses: list[float]  # per step since the last sync point, averaged over the ranks
    learning_rates: list[float]  # per step, as this rank used them (the same on every rank)
    seconds: float  # this rank's time for those steps


class StepSync:
    """Per-step bookkeeping (two list appends) and the all-reduce at sync points."""

    def __init__(self, world: World, stops: StopRequests, clock: Callable[[], float] = time.perf_counter) -> None:
        self.world = world
        self.stops = stops
        self.interval = 1  # the first sync point comes after the first step: an early first log line
        self._clock = clock  # seconds; the overhead benchmark passes one that stops while it runs other work
        self._losses: list[torch.Tensor] = []
        self._learning_rates: list[float] = []
        self._started = clock()

    def record(self, loss: torch.Tensor, learning_rate: float) -> None:
        """Remember one step's loss (a detached tensor: reading it now would wait for a GPU) and learning rate."""
        self._losses.append(loss)
        self._learning_rates.append(learning_rate)

    def due(self, forced: bool = False) -> bool:
        """Whether this step is a sync point; `forced` must be the same on every rank."""
        return forced or len(self._losses) >= self.interval

    def restart_clock(self) -> None:
        """Start timing anew (after work that is not training steps: validation, checkpoints)."""
        self._started = self._clock()

    def exchange(self) -> SyncReport:
        """The collective: every rank must call it after the same step."""
        seconds = self._clock() - self._started
        steps = len(self._losses)
        per_step = seconds / steps if steps else TARGET_SECONDS
        # Grow at most twofold per sync point, so that the first log lines come early.
        proposal = min(MAX_INTERVAL, 2 * self.interval, max(1, round(TARGET_SECONDS / max(per_step, 1e-9))))
        early_stop = 1.0 if self.world.is_main and self.stops.poll_request() else 0.0
        signalled = 1.0 if self.stops.signal_name else 0.0
        header = torch.tensor([signalled, float(proposal), early_stop], dtype=torch.float64)
        losses = torch.stack(self._losses).to(torch.float64) if steps else torch.zeros(0, dtype=torch.float64)
        vector = torch.cat([header.to(losses.device), losses])
        values = self.world.all_reduce_sum(vector).tolist()
        self.interval = max(1, round(values[1] / self.world.size))  # the same on every rank: the same sum
        report = SyncReport(
            stop_requested=values[0] > 0,
            early_stop=values[2] > 0,
            losses=[value / self.world.size for value in values[3:]],
            learning_rates=self._learning_rates,
            seconds=seconds,
        )
        self._losses, self._learning_rates = [], []
        self._started = self._clock()
        return report
