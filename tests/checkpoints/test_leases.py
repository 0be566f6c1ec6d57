"""Leases judged by each clock on its own: a holder that lost its lease stops, observers wait a whole lease.

Real threads and real evaluator processes; renewals fail with EIO, reads with ESTALE, as on NFS.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import threading
import time
import types
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

import cajajejo.checkpoints
from cajajejo.checkpoints import (
    CLAIMS_DIR,
    Checkpoint,
    CheckpointDir,
    Claim,
    checkpoint_name,
    claim_file_name,
    write_json_atomically,
)
from cajajejo.watch import CommandEvaluator, LeaseKeeper, LedgerSource, Watcher, WatchSummary
from tests.checkpoints.support import evaluator_script, publish, read_marks
from tests.checkpoints.test_watch import Lines, run_in_thread

NAME = checkpoint_name(10)


class FailingRenewals(CheckpointDir):
    """A host whose renewals all fail (an NFS server it cannot reach for a while); claiming still works."""

    def renew(self, claim: Claim) -> Claim | None:
        raise OSError(errno.EIO, "Input/output error")


def two_workers(directory: CheckpointDir, handle_a: Any, handle_b: Any, lease: float) -> tuple[WatchSummary, ...]:
    """Worker A (whose renewals fail) claims first; B starts 0.2 s later. Both run to their end."""
    lines = Lines()
    a = Watcher(LedgerSource(FailingRenewals(directory.path)), "eval", "A", lease_seconds=lease, log=lines)
    b = Watcher(LedgerSource(CheckpointDir(directory.path)), "eval", "B", lease_seconds=lease, log=lines)
    a_thread, a_summary = run_in_thread(a, handle_a)
    time.sleep(0.2)
    b_thread, b_summary = run_in_thread(b, handle_b)
    for thread in (a_thread, b_thread):
        thread.join(30)
        assert not thread.is_alive()
    return a_summary[0], b_summary[0]


def test_a_holder_whose_renewals_fail_loses_its_claim_by_its_own_clock_and_records_nothing(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    publish(directory, 10)
    directory.mark_complete(step=10)
    events: list[tuple[str, str, float]] = []

    def evaluate(worker: str, seconds: float) -> Any:
        def handle(checkpoint: Checkpoint) -> Mapping[str, Any]:
            events.append((worker, "start", time.monotonic()))
            time.sleep(seconds)  # in-process work that cannot be cut short
            events.append((worker, "end", time.monotonic()))
            return {"by": worker}

        return handle

    a, b = two_workers(directory, evaluate("A", 3.0), evaluate("B", 0.1), lease=1.0)
    assert (a.handled, a.abandoned) == ([], [NAME])
    assert (b.handled, b.abandoned) == ([NAME], [])
    result = directory.result("eval", NAME)
    assert result is not None
    assert (result.worker, result.attempt, result.value) == ("B", 2, {"by": "B"})
    starts = {worker: when for worker, kind, when in events if kind == "start"}
    assert starts["B"] - starts["A"] >= 1.0  # B waited for A's whole lease, A could not renew


class FirstAttemptCannotRenew(CheckpointDir):
    """Renewals of attempt 1 fail; later attempts renew as usual."""

    def renew(self, claim: Claim) -> Claim | None:
        if claim.attempt == 1:
            raise OSError(errno.EIO, "Input/output error")
        return super().renew(claim)


def test_a_lost_claim_kills_the_command_before_the_next_attempt_starts_its_own(tmp_path: Path) -> None:
    directory = FirstAttemptCannotRenew(tmp_path / "checkpoints")
    publish(directory, 10)
    directory.mark_complete(step=10)
    script, marks = evaluator_script(tmp_path)
    commands = iter([20.0, 0.1])  # the first would run far past its lease

    def handle(checkpoint: Checkpoint) -> Mapping[str, Any]:
        argv = (sys.executable, str(script), str(marks), str(next(commands)))
        return CommandEvaluator(argv, "eval", "A")(checkpoint)

    started = time.monotonic()
    summary = Watcher(LedgerSource(directory), "eval", "A", lease_seconds=1.0, log=Lines()).run(handle)
    assert time.monotonic() - started < 15  # the 20 s command did not run to its end
    assert (summary.handled, summary.failed, summary.abandoned) == ([NAME], [], [NAME])
    first, second, done = sorted(read_marks(marks), key=lambda m: m.time)
    assert (first.kind, second.kind, done.kind, done.id) == ("start", "start", "done", second.id)
    assert second.time - first.time >= 1.0  # a whole lease of the observer, after the kill
    result = directory.result("eval", NAME)
    assert result is not None
    assert (result.attempt, result.value["output"]["id"]) == (2, second.id)
    first_claim = directory.path / CLAIMS_DIR / "eval" / claim_file_name(NAME, 1)
    assert b'"released": null' in first_claim.read_bytes()  # not released (or failed): no longer its own


def test_a_claim_that_cannot_be_read_for_a_moment_is_live_and_only_garbage_is_unreadable(tmp_path: Path) -> None:
    holder, other = CheckpointDir(tmp_path), CheckpointDir(tmp_path)  # two hosts
    publish(holder, 10)
    mine = holder.claim(NAME, role="eval", worker="A", lease_seconds=600)
    assert mine is not None
    real = Path.read_bytes

    def stale(path: Path) -> bytes:
        if path == mine.path:  # NFS answers ESTALE while the holder renames a renewal over the file
            raise OSError(errno.ESTALE, "Stale file handle")
        return real(path)

    for error in (errno.ESTALE, errno.EIO):
        with mock.patch.object(Path, "read_bytes", stale):
            assert other.claim(NAME, role="eval", worker="B", lease_seconds=600) is None, error
    assert other.claim(NAME, role="eval", worker="B", lease_seconds=600) is None
    assert sorted(os.listdir(mine.path.parent)) == [mine.path.name]
    mine.path.write_bytes(b"{not json")
    taken = other.claim(NAME, role="eval", worker="B", lease_seconds=600)
    assert taken is not None
    assert (taken.attempt, taken.failures, taken.last_error) == (2, 1, "an unreadable claim")


def test_a_checkpoint_whose_folder_vanished_is_skipped_once_and_the_watcher_finishes(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    for step in (10, 20):
        publish(directory, step)
    directory.mark_complete(step=20)

    def handle(checkpoint: Checkpoint) -> Mapping[str, Any]:
        if checkpoint.step == 10:
            shutil.rmtree(directory.path / checkpoint_name(20))  # deleted by hand: its ledger entry stays
        return {}

    lines = Lines()
    thread, summaries = run_in_thread(
        Watcher(LedgerSource(directory), "eval", "w1", poll_seconds=0.01, log=lines), handle
    )
    thread.join(10)
    assert not thread.is_alive(), "the watcher kept claiming the vanished checkpoint"
    assert summaries[0].skipped == [checkpoint_name(20)]
    assert summaries[0].handled == [NAME]
    assert len(lines.having("skipped")) == 1
    claims = [f for f in os.listdir(directory.path / CLAIMS_DIR / "eval") if f.startswith(checkpoint_name(20))]
    assert claims == [claim_file_name(checkpoint_name(20), 1)]


def test_expiry_is_judged_on_the_observers_clock_not_by_comparing_hosts_clocks(tmp_path: Path) -> None:
    host_a, host_b = CheckpointDir(tmp_path), CheckpointDir(tmp_path)
    publish(host_a, 10)
    slow_clock = types.SimpleNamespace(time=lambda: time.time() - 300, monotonic=time.monotonic)
    with mock.patch.object(cajajejo.checkpoints, "time", slow_clock):  # host A's clock is 5 minutes slow
        mine = host_a.claim(NAME, role="eval", worker="A", lease_seconds=0.5)
    assert mine is not None
    assert host_b.claim(NAME, role="eval", worker="B", lease_seconds=0.5) is None  # its stamp looks old: not dead
    time.sleep(0.3)
    assert host_b.claim(NAME, role="eval", worker="B", lease_seconds=0.5) is None  # seen for 0.3 s only
    time.sleep(0.3)
    taken = host_b.claim(NAME, role="eval", worker="B", lease_seconds=0.5)  # unchanged for a whole lease
    assert taken is not None
    assert (taken.attempt, taken.failures) == (2, 1)


def test_a_restarted_observer_waits_a_whole_lease_and_a_renewal_starts_it_over(tmp_path: Path) -> None:
    holder = CheckpointDir(tmp_path)
    publish(holder, 10)
    mine = holder.claim(NAME, role="eval", worker="A", lease_seconds=0.4)
    assert mine is not None
    time.sleep(0.5)  # expired by the wall clock already
    restarted = CheckpointDir(tmp_path)
    assert restarted.claim(NAME, role="eval", worker="B", lease_seconds=0.4) is None
    time.sleep(0.2)
    write_json_atomically(mine.path, replace(mine, renewed_at=time.time()).entry())  # as its holder renews
    time.sleep(0.3)
    assert restarted.claim(NAME, role="eval", worker="B", lease_seconds=0.4) is None  # changed since its first look
    time.sleep(0.45)
    assert restarted.claim(NAME, role="eval", worker="B", lease_seconds=0.4) is not None


def test_a_renewal_that_returns_after_the_lease_ran_out_or_meets_a_next_attempt_is_lost(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    publish(directory, 10)
    slow = directory.claim(NAME, role="eval", worker="A", lease_seconds=0.2)
    assert slow is not None
    time.sleep(0.25)  # stalled past its lease: nobody took the next attempt, yet it may have
    assert directory.renew(slow) is None
    prompt = directory.claim(checkpoint_name(10), role="other", worker="A", lease_seconds=30)
    assert prompt is not None
    real_write = cajajejo.checkpoints.write_json_atomically

    def taken_over_meanwhile(path: Path, data: Mapping[str, Any]) -> None:
        real_write(path, data)
        os.link(path, path.with_name(claim_file_name(NAME, 2)))  # another worker's attempt 2, created meanwhile

    with mock.patch.object(cajajejo.checkpoints, "write_json_atomically", taken_over_meanwhile):
        assert directory.renew(prompt) is None


def test_a_lease_keeper_runs_its_callbacks_once_when_the_lease_runs_out(tmp_path: Path) -> None:
    directory = FailingRenewals(tmp_path)
    publish(directory, 10)
    claim = directory.claim(NAME, role="eval", worker="A", lease_seconds=0.3)
    assert claim is not None
    keeper = LeaseKeeper(directory, claim, lambda *args, **values: None)
    called: list[float] = []
    lost = threading.Event()

    def note() -> None:
        called.append(time.monotonic())
        lost.set()

    keeper.on_lost(note)
    with keeper.kept():
        assert not keeper.lost
        assert lost.wait(5)
        assert keeper.lost
    assert len(called) == 1
    assert called[0] <= claim.lease_start + 0.3  # before any observer may take it over
    keeper.on_lost(lambda: called.append(0.0))  # already lost: runs at once
    assert len(called) == 2
