"""Helpers for the checkpoint-protocol tests: checkpoints whose content can be checked, evaluator processes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cajajejo.checkpoints import Checkpoint, CheckpointDir, checkpoint_name

PART_SIZES = (50, 90, 130)  # times 32 bytes


def part(step: int, index: int) -> bytes:
    return hashlib.sha256(f"{step}-{index}".encode()).digest() * PART_SIZES[index]


def publish(directory: CheckpointDir, step: int) -> Checkpoint:
    """Publish a checkpoint of three files whose content depends on the step (see `is_whole`)."""
    name = checkpoint_name(step)
    folder = directory.begin(name)
    for index in range(len(PART_SIZES)):
        (folder / f"part-{index}.bin").write_bytes(part(step, index))
    return directory.publish(name, step=step, epoch=1, train_loss=0.5)


def is_whole(checkpoint: Checkpoint) -> bool:
    """Every file of the checkpoint is there with the content it was written with."""
    try:
        return all(
            (checkpoint.path / f"part-{index}.bin").read_bytes() == part(checkpoint.step, index)
            for index in range(len(PART_SIZES))
        )
    except FileNotFoundError:
        return False


# An evaluator command for `cajajejo checkpoints watch`: marks its start and its end in MARKS (one file
# each, named after a fresh id, holding the time and the watcher's pid), sleeps between them, prints its
# id as a JSON object (which becomes the result's `output`).
EVALUATOR = """
import json, os, sys, time, uuid
marks, seconds = sys.argv[1], float(sys.argv[2])
name, me = os.environ["CAJAJEJO_CHECKPOINT_NAME"], uuid.uuid4().hex

def mark(kind):
    record = {"kind": kind, "name": name, "id": me, "time": time.time(), "watcher": os.getppid(),
              "worker": os.environ["CAJAJEJO_EVALUATOR_WORKER"], "step": int(os.environ["CAJAJEJO_CHECKPOINT_STEP"]),
              "path": os.environ["CAJAJEJO_CHECKPOINT_PATH"]}
    temp = os.path.join(marks, f".{kind}-{name}-{me}")
    with open(temp, "w") as file:
        json.dump(record, file)
    os.rename(temp, os.path.join(marks, f"{kind}-{name}-{me}"))

mark("start")
time.sleep(seconds)
mark("done")
print("evaluated", name)
print(json.dumps({"id": me}))
"""


@dataclass(frozen=True)
class Mark:
    kind: str  # start or done
    name: str
    id: str
    time: float
    watcher: int  # the pid of the `cajajejo checkpoints watch` that ran the command
    worker: str
    step: int
    path: str


def evaluator_script(tmp: Path) -> tuple[Path, Path]:
    """The evaluator command's script and its (empty) marks folder."""
    script, marks = tmp / "evaluator.py", tmp / "marks"
    script.write_text(EVALUATOR)
    marks.mkdir()
    return script, marks


def read_marks(marks: Path) -> list[Mark]:
    return [Mark(**json.loads(p.read_text())) for p in sorted(marks.iterdir()) if not p.name.startswith(".")]


def start_watch(
    directory: Path, worker: str, script: Path, marks: Path, seconds: float, *options: str, log: Path
) -> subprocess.Popen[bytes]:
    """`cajajejo checkpoints watch DIR --role eval ... -- python evaluator.py MARKS SECONDS` in a session of its own
    (so that a kill of its process group takes its command too, as the end of a pod would)."""
    command = [
        sys.executable,
        "-m",
        "cajajejo.cli",
        "checkpoints",
        "watch",
        str(directory),
        "--role",
        "eval",
        "--worker",
        worker,
        *options,
        "--",
        sys.executable,
        str(script),
        str(marks),
        str(seconds),
    ]
    env = {key: value for key, value in os.environ.items() if not key.startswith("CAJAJEJO_")}
    with log.open("ab") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
