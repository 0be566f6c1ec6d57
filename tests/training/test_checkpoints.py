"""The checkpoint protocol: what readers see, whatever moment a writer dies at, and with readers running alongside."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cajajejo.checkpoints
from cajajejo.checkpoints import (
    BEST_FILE,
    LEDGER_DIR,
    Checkpoint,
    CheckpointDir,
    CheckpointError,
    checkpoint_name,
)


def write_files(folder: Path, step: int, count: int = 2) -> dict[str, str]:
    """Files whose content depends on the step; returns their sha256, for the entry's metadata."""
    hashes = {}
    for index in range(count):
        data = hashlib.sha256(f"{step}-{index}".encode()).digest() * (50 + 40 * index)
        (folder / f"part-{index}.bin").write_bytes(data)
        hashes[f"part-{index}.bin"] = hashlib.sha256(data).hexdigest()
    return hashes


def is_complete(checkpoint: Checkpoint) -> bool:
    """Every file its entry lists is there with the content it had when it was published."""
    files = checkpoint.metadata.get("files", {})
    for name, digest in files.items():
        try:
            if hashlib.sha256((checkpoint.path / name).read_bytes()).hexdigest() != digest:
                return False
        except FileNotFoundError:
            return False
    return bool(files)


def publish(directory: CheckpointDir, step: int) -> Checkpoint:
    """Write and publish a checkpoint of two files; its entry's metadata lists their hashes."""
    folder = directory.begin(checkpoint_name(step))
    files = write_files(folder, step)
    return directory.publish(checkpoint_name(step), step=step, epoch=1, train_loss=0.5, metadata={"files": files})


# Unit tests


def test_a_written_checkpoint_is_published_with_its_entry(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path / "checkpoints")
    assert directory.latest() is None
    assert directory.published() == []
    with directory.write(120, epoch=3, train_loss=0.25, metadata={"val_loss": 0.5}) as folder:
        (folder / "model.pt").write_bytes(b"weights")
        assert directory.latest() is None  # not before the block ends
    latest = directory.latest()
    assert latest is not None
    assert (latest.name, latest.step, latest.epoch, latest.train_loss) == ("step-00000120", 120, 3, 0.25)
    assert latest.metadata == {"val_loss": 0.5}
    assert (latest.path / "model.pt").read_bytes() == b"weights"
    assert sorted(os.listdir(directory.path)) == [LEDGER_DIR, "step-00000120"]
    entry = json.loads((directory.path / LEDGER_DIR / "step-00000120.json").read_text())
    assert entry["name"] == "step-00000120"
    assert entry["step"] == 120


def test_a_failed_write_publishes_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)

    def write_half() -> None:
        with directory.write(5, epoch=1) as folder:
            (folder / "model.pt").write_bytes(b"half")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_half()
    assert directory.published() == []
    assert os.listdir(tmp_path) == []


def test_leftovers_of_a_crash_are_invisible_and_the_next_write_removes_them(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    publish(directory, 1)
    (tmp_path / ".tmp-step-00000002").mkdir()  # died while writing files
    (tmp_path / "step-00000003").mkdir()  # died between the rename and the ledger entry
    (tmp_path / LEDGER_DIR / ".tmp-step-00000003.json.123").write_text('{"format": 1, "na')
    (tmp_path / ".tmp-best.json.99").write_text("{")
    assert [c.name for c in directory.published()] == ["step-00000001"]
    publish(directory, 3)
    assert sorted(os.listdir(tmp_path)) == [LEDGER_DIR, "step-00000001", "step-00000003"]
    assert sorted(os.listdir(tmp_path / LEDGER_DIR)) == ["step-00000001.json", "step-00000003.json"]


def test_a_name_is_published_once(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    publish(directory, 4)
    with pytest.raises(CheckpointError, match="already published"), directory.write(4, epoch=1):
        pass


def test_prune_keeps_the_newest_and_the_best(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    for step in range(1, 7):
        publish(directory, step)
    directory.mark_best("step-00000002", val_loss=0.1)
    assert directory.prune(keep_last=2) == ["step-00000001", "step-00000003", "step-00000004"]
    assert [c.name for c in directory.published()] == ["step-00000002", "step-00000005", "step-00000006"]
    best = directory.best()
    assert best is not None
    assert best.name == "step-00000002"
    assert directory.best_metadata()["val_loss"] == 0.1
    assert not (tmp_path / "step-00000001").exists()
    with pytest.raises(ValueError, match="at least 1"):
        directory.prune(keep_last=0)


def test_best_must_be_published_and_completion_can_be_taken_back(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    with pytest.raises(CheckpointError, match="not published"):
        directory.mark_best("step-00000001")
    assert directory.best() is None
    assert directory.completion() is None
    directory.mark_complete(step=10, best=None)
    completion = directory.completion()
    assert completion is not None
    assert completion["step"] == 10
    directory.clear_complete()
    assert directory.completion() is None


def test_an_entry_whose_folder_is_gone_is_not_published(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    publish(directory, 1)
    publish(directory, 2)
    (tmp_path / "step-00000002" / "part-0.bin").unlink()
    (tmp_path / "step-00000002" / "part-1.bin").unlink()
    (tmp_path / "step-00000002").rmdir()
    latest = directory.latest()
    assert latest is not None
    assert latest.name == "step-00000001"


# Property tests


VALID_ENTRY = json.dumps(
    {"format": 1, "name": "step-00000007", "step": 7, "epoch": 1, "train_loss": 0.5, "time": 1.0, "metadata": {}}
).encode()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=len(VALID_ENTRY) - 1), garbage=st.binary(max_size=200))
def test_a_torn_or_foreign_entry_is_never_published(tmp_path: Path, cut: int, garbage: bytes) -> None:
    """Whatever bytes an entry file holds short of a whole entry (a filesystem that tears renames, a hand
    edit, another tool's file), readers skip it without failing."""
    directory = CheckpointDir(tmp_path / f"dir-{cut}-{garbage.hex()[:16]}")
    (directory.path / "step-00000007").mkdir(parents=True)
    ledger = directory.path / LEDGER_DIR
    ledger.mkdir()
    (ledger / "step-00000007.json").write_bytes(VALID_ENTRY[:cut])
    (ledger / "step-00000008.json").write_bytes(garbage)
    (directory.path / "step-00000008").mkdir()
    (directory.path / BEST_FILE).write_bytes(garbage)
    assert directory.published() == []
    assert directory.latest() is None
    assert directory.best() is None
    (ledger / "step-00000007.json").write_bytes(VALID_ENTRY)
    assert [c.name for c in directory.published()] == ["step-00000007"]


class Crash(BaseException):
    """The writer's process dies here (a BaseException: no `except Exception` cleans up after it)."""


@contextmanager
def crash_at(call: int) -> Iterator[None]:
    """Make the `call`-th filesystem operation that makes something durable or visible die instead."""
    real = os
    calls = [0]

    class DyingOs:
        def __getattr__(self, name: str) -> Any:
            attribute = getattr(real, name)
            if name not in ("fsync", "rename", "replace", "unlink"):
                return attribute

            def operation(*args: Any, **kwargs: Any) -> Any:
                calls[0] += 1
                if calls[0] == call:
                    raise Crash(name)
                return attribute(*args, **kwargs)

            return operation

    with mock.patch.object(cajajejo.checkpoints, "os", DyingOs()):
        yield


Action = tuple[str, int]
actions = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(min_value=1, max_value=3)),
        st.tuples(st.just("prune"), st.integers(min_value=1, max_value=3)),
        st.tuples(st.just("best"), st.integers(min_value=0, max_value=5)),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=actions, crash_call=st.integers(min_value=1, max_value=60))
def test_a_writer_dying_at_any_operation_never_publishes_a_half_checkpoint(
    tmp_path: Path, plan: list[Action], crash_call: int
) -> None:
    directory = CheckpointDir(tmp_path / f"run-{time.monotonic_ns()}")
    step, done = 0, list[str]()
    pruning: set[str] = set()  # what the prune under way at the crash was removing: gone or not, both are right
    try:
        with crash_at(crash_call):
            for action, value in plan:
                pruning = set(done[:-value]) if action == "prune" else set()
                if action == "write":
                    step += 1
                    name = checkpoint_name(step)
                    folder = directory.begin(name)
                    files = write_files(folder, step, count=value)
                    directory.publish(name, step=step, epoch=1, metadata={"files": files})
                    done.append(name)
                elif action == "prune":
                    directory.prune(keep_last=value)
                    kept = {c.name for c in directory.published()}
                    done = [name for name in done if name in kept]
                elif done:
                    directory.mark_best(done[value % len(done)])
    except Crash:
        pass
    # What a reader (or a resuming trainer) sees now:
    published = directory.published()
    assert all(is_complete(c) for c in published)
    assert set(done) - pruning <= {c.name for c in published}  # nothing published before the crash is lost...
    assert len(published) - len(done) <= 1  # ...and at most the one being pruned or published at the crash
    best = directory.best()
    assert best is None or is_complete(best)
    # The next write removes the leftovers.
    publish(directory, step + 1)
    published_names = {c.name for c in directory.published()}
    on_disk = {entry for entry in os.listdir(directory.path) if entry.startswith("step-")}
    assert on_disk == published_names
    assert not [entry for entry in os.listdir(directory.path) if entry.startswith(".tmp-")]
    assert not [entry for entry in os.listdir(directory.path / LEDGER_DIR) if entry.startswith(".")]


# Real processes: a writer that publishes checkpoints as fast as it can, readers beside it, kill -9

PART_SIZES = (50, 90, 130)  # times 32 bytes: files of 1.6 to 4.2 kB

WRITER = """
import hashlib
from cajajejo.checkpoints import CheckpointDir
directory = CheckpointDir({path!r})
latest = directory.latest()
step = latest.step if latest else 0
while True:
    step += 1
    with directory.write(step, epoch=1, train_loss=1.0 / step) as folder:
        for index, size in enumerate({sizes!r}):
            (folder / f"part-{{index}}.bin").write_bytes(hashlib.sha256(f"{{step}}-{{index}}".encode()).digest() * size)
    if {prune}:
        directory.prune(keep_last=3)
"""

READER = """
import hashlib, sys, time
from cajajejo.checkpoints import CheckpointDir
directory = CheckpointDir({path!r})
deadline, seen, reads = time.monotonic() + {seconds}, 0, 0
while time.monotonic() < deadline:
    for checkpoint in directory.published():
        for index, size in enumerate({sizes!r}):
            data = (checkpoint.path / f"part-{{index}}.bin").read_bytes()
            if data != hashlib.sha256(f"{{checkpoint.step}}-{{index}}".encode()).digest() * size:
                sys.exit(f"{{checkpoint.name}}/part-{{index}}.bin is not whole: {{len(data)}} bytes")
        seen, reads = max(seen, checkpoint.step), reads + 1
print(seen, reads)
"""


def _script(template: str, **values: Any) -> list[str]:
    return [sys.executable, "-c", template.format(sizes=PART_SIZES, **values)]


def assert_whole(checkpoint: Checkpoint) -> None:
    for index, size in enumerate(PART_SIZES):
        data = (checkpoint.path / f"part-{index}.bin").read_bytes()
        expected = hashlib.sha256(f"{checkpoint.step}-{index}".encode()).digest() * size
        assert data == expected, f"{checkpoint.name} is published half-written"


def test_concurrent_readers_only_ever_see_whole_checkpoints(tmp_path: Path) -> None:
    """Two reader processes poll the ledger and read every published checkpoint while a writer publishes."""
    path = str(tmp_path / "checkpoints")
    writer = subprocess.Popen(_script(WRITER, path=path, prune=False))
    try:
        readers = [
            subprocess.Popen(_script(READER, path=path, seconds=1.5), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)
        ]
        results = [reader.communicate(timeout=60) for reader in readers]
    finally:
        writer.kill()
        writer.wait()
    for reader, (out, err) in zip(readers, results, strict=True):
        assert reader.returncode == 0, err.decode()
        seen, reads = map(int, out.split())
        assert seen > 0
        assert reads > seen  # each read many checkpoints, while new ones kept coming


def test_kill_9_at_random_moments_never_leaves_a_half_checkpoint_for_latest(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints"
    rng = random.Random(1234)
    steps, cut_short = [], 0
    for _ in range(10):
        writer = subprocess.Popen(_script(WRITER, path=str(path), prune=True))
        time.sleep(0.15 + rng.random() * 0.25)  # the interpreter's start, then somewhere among the writes
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        directory = CheckpointDir(path)
        published = {c.name for c in directory.published()}
        on_disk = set(os.listdir(path)) - {LEDGER_DIR}
        cut_short += bool(on_disk - published)  # a temporary or unpublished folder: killed mid-write
        latest = directory.latest()
        if latest is not None:
            steps.append(latest.step)
        for checkpoint in directory.published():
            assert_whole(checkpoint)
    assert len(steps) >= 8
    assert cut_short >= 1  # the kills did land in the middle of writes
    assert steps == sorted(steps)  # each writer went on from the newest published checkpoint
