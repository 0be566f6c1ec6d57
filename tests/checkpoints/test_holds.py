"""Holds (a checkpoint kept for one role's result) and one-step watchers: what segmented training on Slurm
needs to evaluate each epoch's last checkpoint in a job of its own, started whenever the scheduler
allows, while training goes on and prunes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cajajejo.checkpoints import Checkpoint, CheckpointDir, checkpoint_name
from cajajejo.watch import NO_SUCH_STEP, LedgerSource, Watcher
from tests.checkpoints.support import is_whole, publish


def _one_step_watcher(directory: CheckpointDir, step: int, seen: list[int]) -> Watcher:
    return Watcher(LedgerSource(directory), "epoch-eval", "w1", poll_seconds=0.05, only_step=step, log=lambda _: None)


def test_a_held_checkpoint_outlives_pruning_until_its_role_has_a_result(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    for step in (4, 8):
        publish(directory, step)
    directory.hold(checkpoint_name(4), "epoch-eval")
    for step in (12, 16):
        publish(directory, step)
    assert directory.prune(keep_last=1) == [checkpoint_name(8), checkpoint_name(12)]
    assert [c.step for c in directory.published()] == [4, 16]
    assert directory.holds() == {"epoch-eval": {checkpoint_name(4)}}
    # A hold is for one checkpoint: the role does not keep others (as a registered watcher would).
    assert "epoch-eval" not in directory.registered_roles()
    seen: list[int] = []

    def handle(checkpoint: Checkpoint) -> Mapping[str, Any]:
        assert is_whole(checkpoint)
        seen.append(checkpoint.step)
        return {"ok": True}

    summary = _one_step_watcher(directory, 4, seen).run(handle)
    assert (seen, summary.reason) == ([4], "evaluated")
    assert directory.prune(keep_last=1) == [checkpoint_name(4)]
    assert directory.holds() == {"epoch-eval": set()}  # the hold went with its checkpoint


def test_a_one_step_watcher_evaluates_only_its_step_once_and_never_registers(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    for step in (5, 10, 15):
        publish(directory, step)
    seen: list[int] = []

    def handle(checkpoint: Checkpoint) -> Mapping[str, Any]:
        seen.append(checkpoint.step)
        return {"step": checkpoint.step}

    first = _one_step_watcher(directory, 10, seen).run(handle)
    again = _one_step_watcher(directory, 10, seen).run(handle)  # a requeued evaluation job
    assert seen == [10]
    assert (first.handled, again.handled) == ([checkpoint_name(10)], [])
    assert first.reason == again.reason == "evaluated"
    assert directory.registered_roles() == set()
    assert set(directory.finished("epoch-eval")) == {checkpoint_name(10)}
    # No training_complete marker is needed, and a step nothing was published at ends at once.
    assert _one_step_watcher(directory, 11, seen).run(handle).reason == NO_SUCH_STEP
