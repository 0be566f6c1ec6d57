"""The watcher loop in this process: order, completion, retries, skips, leases, early stop, foreign directories."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cajajejo.watch
from cajajejo.checkpoints import LEDGER_DIR, Checkpoint, CheckpointDir, checkpoint_name
from cajajejo.watch import (
    CheckpointSource,
    ForeignSource,
    LedgerSource,
    Watcher,
    WatchSummary,
    parse_foreign_name,
    parse_latest,
)
from tests.checkpoints.support import is_whole, publish


class Lines:
    """Collects the watcher's log lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def having(self, event: str) -> list[str]:
        return [line for line in self.lines if line.startswith(f"[WATCH] {event} ")]


def watcher(source: CheckpointSource, lines: Lines, **options: Any) -> Watcher:
    options = {"lease_seconds": 5.0, "poll_seconds": 0.01, **options}
    return Watcher(source, "eval", "w1", log=lines, **options)


def run_in_thread(watch: Watcher, handle: Any) -> tuple[threading.Thread, list[WatchSummary]]:
    summaries: list[WatchSummary] = []
    thread = threading.Thread(target=lambda: summaries.append(watch.run(handle)), daemon=True)
    thread.start()
    return thread, summaries


def test_each_checkpoint_is_evaluated_once_oldest_first_until_training_is_complete(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    publish(directory, 3)
    publish(directory, 1)
    seen: list[int] = []

    def handle(checkpoint: Checkpoint) -> Mapping[str, Any]:
        assert is_whole(checkpoint)
        seen.append(checkpoint.step)
        return {"step_seen": checkpoint.step}

    lines = Lines()
    thread, summaries = run_in_thread(watcher(LedgerSource(directory), lines), handle)
    for step in (4, 5):
        time.sleep(0.05)
        publish(directory, step)
    time.sleep(0.05)
    assert thread.is_alive()  # training goes on: it waits
    directory.mark_complete(step=5)
    thread.join(10)
    assert not thread.is_alive()
    assert seen == [1, 3, 4, 5]
    assert summaries[0].handled == [checkpoint_name(s) for s in (1, 3, 4, 5)]
    assert summaries[0].reason == "training-complete"
    assert directory.results("eval")[checkpoint_name(4)].value == {"step_seen": 4}
    assert directory.registered_roles() == {"eval"}
    assert lines.having("watching")
    assert len(lines.having("start")) == len(lines.having("done")) == 4
    assert lines.having("finished")[0].endswith("reason=training-complete handled=4 failed=0 skipped=0")


def test_a_failing_handle_is_retried_and_after_max_attempts_a_failed_result_lets_the_group_finish(
    tmp_path: Path,
) -> None:
    directory = CheckpointDir(tmp_path)
    for step in (1, 2, 3):
        publish(directory, step)
    directory.mark_complete(step=3)
    tries: dict[int, int] = {}

    def handle(checkpoint: Checkpoint) -> Mapping[str, Any]:
        tries[checkpoint.step] = tries.get(checkpoint.step, 0) + 1
        if checkpoint.step == 2 or (checkpoint.step == 3 and tries[3] == 1):
            raise RuntimeError(f"bad luck on {checkpoint.step}")
        return {}

    lines = Lines()
    summary = watcher(LedgerSource(directory), lines, max_attempts=3).run(handle)
    assert tries == {1: 1, 2: 3, 3: 2}
    assert summary.failed == ["step-00000002"]
    results = directory.results("eval")
    assert results["step-00000002"].status == "failed"
    assert results["step-00000002"].value == {"error": "RuntimeError: bad luck on 2", "failures": 3, "attempts": 3}
    assert results["step-00000003"].status == "ok"
    assert len(lines.having("failed")) == 4
    assert "name=step-00000002 failures=3 error=RuntimeError: bad luck on 2" in lines.having("gave-up")[0]


def test_a_checkpoint_that_vanished_before_it_was_claimed_is_skipped_with_a_line(tmp_path: Path) -> None:
    """A listing older than a prune (an NFS client's cache) still names a deleted checkpoint."""
    directory = CheckpointDir(tmp_path)
    for step in (1, 2):
        publish(directory, step)

    class StaleListing(LedgerSource):
        def ready(self, fresh: bool = False) -> list[Checkpoint]:
            listed = super().ready(fresh)
            return listed if fresh else [*listed, stale]

    gone = directory.get("step-00000001")
    assert gone is not None
    stale: Checkpoint = gone
    os.unlink(tmp_path / LEDGER_DIR / "step-00000001.json")
    directory.clean_up()
    directory.mark_complete(step=2)
    lines = Lines()
    summary = watcher(StaleListing(directory), lines).run(lambda checkpoint: {})
    assert summary.skipped == ["step-00000001"]
    assert summary.handled == ["step-00000002"]
    assert "name=step-00000001 why=gone-before-it-was-claimed" in lines.having("skipped")[0]


def test_a_stale_listing_cannot_end_the_watcher_before_what_the_completion_marker_names(tmp_path: Path) -> None:
    """An NFS client may list ledger/ from its cache; the marker names every checkpoint, looked up by name."""
    directory = CheckpointDir(tmp_path)
    for step in (1, 2):
        publish(directory, step)
    directory.mark_complete(step=2)
    real = os.listdir

    class CachedListingOs:
        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        def listdir(self, path: Any) -> list[str]:
            return [n for n in real(path) if n != "step-00000002.json"]

    with mock.patch.object(cajajejo.watch, "os", CachedListingOs()):
        summary = watcher(LedgerSource(directory), Lines()).run(lambda checkpoint: {})
    assert summary.handled == ["step-00000001", "step-00000002"]


def test_the_lease_is_renewed_while_the_handle_works_and_an_interrupt_releases_the_claim(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    publish(directory, 1)
    taken: list[Any] = []

    def slow_then_interrupted(checkpoint: Checkpoint) -> Mapping[str, Any]:
        time.sleep(0.6)  # three leases of 0.2 s: only renewals keep the claim
        taken.append(directory.claim(checkpoint.name, role="eval", worker="other", lease_seconds=1))
        raise KeyboardInterrupt

    lines = Lines()
    with pytest.raises(KeyboardInterrupt):
        watcher(LedgerSource(directory), lines, lease_seconds=0.2).run(slow_then_interrupted)
    assert taken == [None]
    newest = directory.newest_claim("eval", "step-00000001")
    assert newest is not None
    assert newest.released == "interrupted"
    again = directory.claim("step-00000001", role="eval", worker="other", lease_seconds=1)
    assert again is not None
    assert (again.attempt, again.failures) == (2, 0)  # an interruption is no failure
    assert lines.having("interrupted")


def test_after_a_stop_request_that_no_trainer_honours_the_watcher_finishes_after_the_grace(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    publish(directory, 1)
    directory.request_stop("enough", by="test")
    started = time.monotonic()
    summary = watcher(LedgerSource(directory), Lines(), stop_grace_seconds=0.3).run(lambda checkpoint: {})
    assert summary.reason == "stop-request"
    assert summary.handled == ["step-00000001"]
    assert time.monotonic() - started >= 0.3


# Foreign directories (seed 000's trainer): checkpoint_epoch_N.pt written in place, then latest.json


def foreign_bytes(epoch: int) -> bytes:
    return hashlib.sha256(str(epoch).encode()).digest() * 4000  # 128 kB


def write_slowly(path: Path, data: bytes, pieces: int = 8, pause: float = 0.03) -> None:
    """Write in place, piece by piece (as torch.save to a network filesystem would): readers see it grow."""
    size = len(data) // pieces
    with path.open("wb") as file:
        for index in range(pieces):
            file.write(data[index * size : (index + 1) * size if index < pieces - 1 else len(data)])
            file.flush()
            time.sleep(pause)


def test_a_foreign_file_is_evaluated_only_once_latest_json_names_it(tmp_path: Path) -> None:
    seen: list[tuple[str, bool]] = []

    def handle(checkpoint: Checkpoint) -> Mapping[str, Any]:
        seen.append((checkpoint.name, checkpoint.path.read_bytes() == foreign_bytes(checkpoint.epoch)))
        return {"epoch": checkpoint.epoch, "loss": checkpoint.train_loss}

    source = ForeignSource(tmp_path)  # once latest.json exists, it alone decides
    thread, summaries = run_in_thread(watcher(source, Lines()), handle)
    for epoch in (2, 4, 6):
        write_slowly(tmp_path / f"checkpoint_epoch_{epoch}.pt", foreign_bytes(epoch))
        latest = {"checkpoint": f"checkpoint_epoch_{epoch}.pt", "epoch": epoch, "train_loss": 1.0 / epoch}
        (tmp_path / "latest.json").write_text(json.dumps(latest))
    (tmp_path / "training_complete").write_text("{")
    thread.join(10)
    assert not thread.is_alive()
    assert seen == [(f"checkpoint_epoch_{e}.pt", True) for e in (2, 4, 6)]
    assert summaries[0].handled == ["checkpoint_epoch_2.pt", "checkpoint_epoch_4.pt", "checkpoint_epoch_6.pt"]
    results = CheckpointDir(tmp_path / ".cajajejo").results("eval")
    assert results["checkpoint_epoch_6.pt"].value == {"epoch": 6, "loss": pytest.approx(1 / 6)}


def test_without_latest_json_a_foreign_file_is_taken_once_it_stopped_changing(tmp_path: Path) -> None:
    seen: list[bool] = []
    state = tmp_path / "state"

    def handle(checkpoint: Checkpoint) -> Mapping[str, Any]:
        seen.append(checkpoint.path.read_bytes() == foreign_bytes(checkpoint.epoch))
        return {}

    source = ForeignSource(tmp_path / "run", state_dir=state, stable_seconds=0.5)  # 10 times the writer's pauses
    (tmp_path / "run").mkdir()
    thread, summaries = run_in_thread(watcher(source, Lines()), handle)
    for epoch in (1, 2):
        write_slowly(tmp_path / "run" / f"checkpoint_epoch_{epoch}.pt", foreign_bytes(epoch), pause=0.05)
    (tmp_path / "run" / "training_complete.json").write_text("{}")
    thread.join(10)
    assert not thread.is_alive()
    assert seen == [True, True]
    assert summaries[0].handled == ["checkpoint_epoch_1.pt", "checkpoint_epoch_2.pt"]
    assert not (tmp_path / "run" / ".cajajejo").exists()
    assert set(CheckpointDir(state).finished("eval")) == {"checkpoint_epoch_1.pt", "checkpoint_epoch_2.pt"}


@given(epoch=st.integers(min_value=0, max_value=999_999_999))
def test_foreign_file_names_round_trip(epoch: int) -> None:
    assert parse_foreign_name(f"checkpoint_epoch_{epoch}.pt") == epoch


@given(text=st.text(max_size=40))
def test_only_exact_foreign_file_names_parse(text: str) -> None:
    epoch = parse_foreign_name(text)
    assert epoch is None or text == f"checkpoint_epoch_{epoch}.pt"
    assert parse_foreign_name(f"{text}.tmp") is None
    assert parse_foreign_name(f".{text}") is None


@given(raw=st.binary(max_size=200))
def test_a_torn_latest_json_is_never_taken_for_a_checkpoint(raw: bytes) -> None:
    whole = b'{"checkpoint": "checkpoint_epoch_12.pt", "epoch": 12, "train_loss": 0.25}'
    assert parse_latest(whole) == (12, 0.25)
    for cut in range(len(whole)):
        assert parse_latest(whole[:cut]) is None
    parsed = parse_latest(raw)
    assert parsed is None or parsed[0] >= 0
