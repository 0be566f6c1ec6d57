"""kill -9 campaigns on real processes: a writer killed mid-write under a watcher, evaluators killed mid-evaluation.

(a) The trainer side: a writer process publishing (and pruning) as fast as it can is SIGKILLed again and
    again while a watcher evaluates: `handle` only ever gets whole checkpoints, and prune never takes
    one away before the watcher has its result.
(b) The evaluator side: `cajajejo checkpoints watch` processes (with their command) are SIGKILLed at
    random moments and restarted, with 1 s leases: at the end every checkpoint has exactly one result,
    none was skipped, and a checkpoint was evaluated to the end twice only when the watcher that
    evaluated it first died before it could record the result (at-least-once, never lost).
(c) Two evaluators on one directory split the work with no overlap.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cajajejo.checkpoints import LEDGER_DIR, Checkpoint, CheckpointDir
from cajajejo.watch import LedgerSource, Watcher, WatchSummary
from tests.checkpoints.support import (
    PART_SIZES,
    Mark,
    evaluator_script,
    is_whole,
    publish,
    read_marks,
    start_watch,
    wait_until,
)

WRITER = f"""
import hashlib, sys, time
from cajajejo.checkpoints import CheckpointDir
directory, last, complete = CheckpointDir(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "complete"
latest = directory.latest()
step = latest.step if latest else 0
while step < last:
    step += 1
    with directory.write(step, epoch=1, train_loss=1.0 / step) as folder:
        for index, size in enumerate({PART_SIZES!r}):
            (folder / f"part-{{index}}.bin").write_bytes(hashlib.sha256(f"{{step}}-{{index}}".encode()).digest() * size)
    directory.prune(keep_last=2)
    time.sleep(0.005)
if complete:
    directory.mark_complete(step=step)
"""


def test_a_writer_killed_mid_write_again_and_again_never_hands_a_partial_checkpoint_to_the_watcher(
    tmp_path: Path,
) -> None:
    path = tmp_path / "checkpoints"
    directory = CheckpointDir(path)
    directory.register_watcher("check", "w1")  # before the first prune: the writer must wait for this role
    partial: list[str] = []

    def handle(checkpoint: Checkpoint) -> Mapping[str, Any]:
        if not is_whole(checkpoint):
            partial.append(checkpoint.name)
        return {}

    summaries: list[WatchSummary] = []
    watcher = Watcher(LedgerSource(directory), "check", "w1", poll_seconds=0.01, log=lambda line: None)
    thread = threading.Thread(target=lambda: summaries.append(watcher.run(handle)), daemon=True)
    thread.start()
    rng = random.Random(20240611)
    cut_short = 0
    for _ in range(10):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "100000", "no"])
        time.sleep(0.12 + rng.random() * 0.25)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        published = {c.name for c in directory.published()}
        on_disk = {e for e in os.listdir(path) if e.startswith(("step-", ".tmp-step-"))}
        cut_short += bool(on_disk - published)
    last = directory.latest()
    assert last is not None
    final = subprocess.run([sys.executable, "-c", WRITER, str(path), str(last.step + 5), "complete"], check=True)
    assert final.returncode == 0
    thread.join(60)
    assert not thread.is_alive(), "the watcher did not finish"
    summary = summaries[0]
    assert partial == []
    assert summary.failed == summary.skipped == []  # pruning never took a checkpoint from under it
    assert cut_short >= 1  # the kills did land in the middle of writes
    finished = directory.finished("check")
    assert {c.name for c in directory.published()} <= finished
    assert set(summary.handled) == finished
    assert len(finished) >= last.step // 2  # most steps were published whole (a kill loses at most one)
    assert len(os.listdir(path / LEDGER_DIR)) <= 3  # and pruned once evaluated


def test_evaluators_killed_at_random_moments_lose_nothing_and_never_finish_a_checkpoint_twice(
    tmp_path: Path, reaper: list[subprocess.Popen[bytes]]
) -> None:
    path = tmp_path / "checkpoints"
    directory = CheckpointDir(path)
    script, marks = evaluator_script(tmp_path)
    log = tmp_path / "watch.log"
    for step in range(1, 5):
        publish(directory, step)

    def keep_training() -> None:
        for step in range(5, 11):
            time.sleep(0.3)
            publish(directory, step)
        directory.mark_complete(step=10)

    trainer = threading.Thread(target=keep_training, daemon=True)
    trainer.start()
    options = ("--lease-seconds", "1", "--poll-seconds", "0.05", "--max-attempts", "100")
    rng = random.Random(7)
    killed: set[int] = set()
    for round_ in range(6):
        before = {m.id for m in read_marks(marks)}
        watch = start_watch(path, f"w{round_}", script, marks, 0.3, *options, log=log)
        reaper.append(watch)
        started = functools.partial(_started, marks, before, watch.pid)
        wait_until(started, f"round {round_}'s watcher to start an evaluation")
        # Even rounds: in the middle of the command's 0.3 s. Odd ones: anywhere, also between the
        # command's end and the result, or in the next claim.
        time.sleep(rng.uniform(0, 0.15) if round_ % 2 == 0 else rng.uniform(0, 0.6))
        os.killpg(watch.pid, signal.SIGKILL)  # the watcher and its command, like a pod's end
        watch.wait()
        killed.add(watch.pid)
    last = start_watch(path, "last", script, marks, 0.3, *options, log=log)
    reaper.append(last)
    assert last.wait(timeout=60) == 0, log.read_text()[-3000:]
    trainer.join()

    results = directory.results("eval")
    names = [c.name for c in directory.published()]
    assert len(names) == 10
    assert sorted(results) == names  # every checkpoint has a result, and only one file each
    assert sorted(os.listdir(path / "results" / "eval")) == [f"{n}.json" for n in names]
    assert all(r.status == "ok" for r in results.values())
    all_marks = read_marks(marks)
    for name in names:
        result = results[name]
        winner = result.value["output"]["id"]
        starts = [m for m in all_marks if m.name == name and m.kind == "start"]
        dones = [m for m in all_marks if m.name == name and m.kind == "done"]
        assert winner in {m.id for m in dones}
        # Another evaluation that ran to its end: its watcher died before it could record the result.
        assert all(m.watcher in killed for m in dones if m.id != winner), (name, dones)
        # None began after the checkpoint was done.
        assert all(m.time < result.time for m in starts), (name, starts, result)
    assert _killed_mid_evaluation(all_marks, killed) >= 1  # the campaign did hit evaluations
    assert "[WATCH] skipped " not in log.read_text()


def _started(marks: Path, before: set[str], watcher: int) -> list[Mark]:
    """Evaluations that `watcher` started, other than those in `before`."""
    return [m for m in read_marks(marks) if m.id not in before and m.watcher == watcher]


def _killed_mid_evaluation(marks: list[Mark], killed: set[int]) -> int:
    done = {m.id for m in marks if m.kind == "done"}
    return sum(1 for m in marks if m.kind == "start" and m.id not in done and m.watcher in killed)


def test_two_evaluators_on_one_directory_split_the_work_without_overlap(
    tmp_path: Path, reaper: list[subprocess.Popen[bytes]]
) -> None:
    path = tmp_path / "checkpoints"
    directory = CheckpointDir(path)
    script, marks = evaluator_script(tmp_path)
    log = tmp_path / "watch.log"
    options = ("--lease-seconds", "5", "--poll-seconds", "0.05")
    watchers = [start_watch(path, worker, script, marks, 0.2, *options, log=log) for worker in ("left", "right")]
    reaper.extend(watchers)
    for step in range(1, 11):
        publish(directory, step)
        time.sleep(0.1)
    directory.mark_complete(step=10)
    for watch in watchers:
        assert watch.wait(timeout=60) == 0, log.read_text()[-3000:]
    all_marks = read_marks(marks)
    starts = sorted(m.name for m in all_marks if m.kind == "start")
    assert starts == [c.name for c in directory.published()]  # each evaluated exactly once
    results = directory.results("eval")
    assert len(results) == 10
    workers = {r.worker for r in results.values()}
    assert workers == {"left", "right"}
    assert all(m.path == str(path / m.name) and m.step == int(m.name.split("-")[1]) for m in all_marks)
