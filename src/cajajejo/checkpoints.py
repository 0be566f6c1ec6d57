"""The checkpoint protocol: a checkpoint exists for readers only once it is complete and published.

A checkpoint directory (one per training run, usually on a volume that trainers and evaluators share)
looks like this::

    <dir>/
      step-00000120/            a complete checkpoint: renamed into place after every file was fsynced
      .tmp-step-00000140/       one being written (or left by a crash; removed by the next write)
      ledger/step-00000120.json one small JSON file per published checkpoint
      best.json                 which published checkpoint has the lowest validation loss
      training_complete.json    written once training has finished

Writing a checkpoint (`CheckpointDir.write`, or `begin` + `publish` when several processes write
files into it) goes: files into `.tmp-<name>/`, fsync every file and folder, rename the folder to
`<name>`, fsync the checkpoint directory, and only then publish: write the ledger entry to a
temporary file, fsync it, rename it to `ledger/<name>.json`, fsync `ledger/`. A crash at any point
leaves either no ledger entry (the checkpoint does not exist; the next write removes its leftovers)
or a complete checkpoint with a complete entry.

Why one file per entry, and not an append-only JSONL ledger: appends are atomic only on a local
filesystem. On NFS (a shared PVC) `O_APPEND` is emulated by the client, so two hosts appending
interleave or overwrite each other, and a reader can see a line half-written. A rename inside one
directory is atomic on the server, and NFS close-to-open consistency guarantees that a reader who
opens a name after the rename sees the whole file. So N readers on N hosts only ever see no entry
or a whole one, whatever their caches hold; a reader polls the `ledger/` listing (inotify does not
see other hosts' writes). An entry that does not parse is ignored all the same (a filesystem that
breaks rename atomicity, a hand edit), and so is one whose checkpoint folder has gone.

Readers need nothing from writers but the ledger: `published()`, `latest()`, `best()`. There is
one writer per directory (rank 0 of the trainer); readers never write here.

Open for the next step, claims by evaluators: a claim will be one more small file per checkpoint
and evaluator, `claims/<name>/<evaluator>.json`, created atomically (written to a temporary file,
then `os.link`ed to its name, which fails if it exists even on NFS), holding a lease time that the
evaluator renews; results likewise under `results/<name>/`. `prune` will then skip checkpoints with a
live claim. Nothing in today's layout has to change for that: readers already ignore folders they
do not know.

This module imports nothing heavy (no torch): users' own training scripts and evaluators call it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LEDGER_DIR = "ledger"
BEST_FILE = "best.json"
COMPLETE_FILE = "training_complete.json"
TEMP_PREFIX = ".tmp-"
NAME_PREFIX = "step-"
FORMAT = 1  # of ledger entries; a reader skips entries of a format it does not know


class CheckpointError(Exception):
    """A checkpoint operation that cannot be done as asked (e.g. publishing a name twice)."""


def checkpoint_name(step: int) -> str:
    """The folder name of the checkpoint taken after `step` optimizer steps: `step-00000120`."""
    if step < 0:
        raise ValueError(f"step must not be negative, got {step}")
    return f"{NAME_PREFIX}{step:08d}"


@dataclass(frozen=True)
class Checkpoint:
    """One published checkpoint, as its ledger entry describes it."""

    name: str
    step: int
    epoch: int
    train_loss: float | None
    time: float  # seconds since the epoch, when it was published
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)

    def entry(self) -> dict[str, Any]:
        """The ledger entry as JSON data (the path is not stored: the ledger may be mounted elsewhere)."""
        return {
            "format": FORMAT,
            "name": self.name,
            "step": self.step,
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "time": self.time,
            "metadata": self.metadata,
        }


class CheckpointDir:
    """A checkpoint directory: the single writer's operations and every reader's view of it.

    Nothing here caches: each call reads the directory again, so a reader sees what another host
    published since its last call (as soon as its NFS attribute cache lets it).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    # Readers

    def published(self) -> list[Checkpoint]:
        """Every published checkpoint whose folder is there, in step order (then by name)."""
        ledger = self.path / LEDGER_DIR
        try:
            names = sorted(os.listdir(ledger))
        except FileNotFoundError:
            return []
        found = []
        for file_name in names:
            if file_name.startswith(".") or not file_name.endswith(".json"):
                continue  # a temporary entry being written, or something that is not ours
            checkpoint = self._read_entry(ledger / file_name)
            if checkpoint is not None and checkpoint.path.is_dir():
                found.append(checkpoint)
        return sorted(found, key=lambda c: (c.step, c.name))

    def latest(self) -> Checkpoint | None:
        """The published checkpoint with the highest step, or None when there is none."""
        checkpoints = self.published()
        return checkpoints[-1] if checkpoints else None

    def get(self, name: str) -> Checkpoint | None:
        """The published checkpoint called `name`, or None."""
        checkpoint = self._read_entry(self.path / LEDGER_DIR / f"{name}.json")
        return checkpoint if checkpoint is not None and checkpoint.path.is_dir() else None

    def best(self) -> Checkpoint | None:
        """The checkpoint `mark_best` pointed at last, while it is published; else None."""
        pointer = _read_json(self.path / BEST_FILE)
        name = pointer.get("name") if pointer else None
        return self.get(name) if isinstance(name, str) else None

    def best_metadata(self) -> dict[str, Any]:
        """What `mark_best` stored beside the name (e.g. its validation loss); empty when none."""
        return _read_json(self.path / BEST_FILE) or {}

    def completion(self) -> dict[str, Any] | None:
        """What `mark_complete` stored, or None while training has not finished."""
        return _read_json(self.path / COMPLETE_FILE)

    # The writer

    def begin(self, name: str) -> Path:
        """Remove leftovers of crashed writes, create the empty temporary folder for `name` and return it.

        Leftovers are temporary folders and entries, and checkpoint folders that were renamed into
        place but never published. Only the one writer of the directory calls this.
        """
        if self.get(name) is not None:
            raise CheckpointError(f"checkpoint {name} is already published in {self.path}")
        self.clean_up()
        temp = self.temp_path(name)
        temp.mkdir(parents=True)
        return temp

    def temp_path(self, name: str) -> Path:
        """Where `begin(name)` put the temporary folder (other processes of the writer write there too)."""
        return self.path / f"{TEMP_PREFIX}{name}"

    def publish(
        self,
        name: str,
        *,
        step: int,
        epoch: int,
        train_loss: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Checkpoint:
        """Make the temporary folder of `name` durable, rename it into place, then add its ledger entry."""
        temp = self.temp_path(name)
        final = self.path / name
        fsync_tree(temp)
        os.rename(temp, final)  # fails if `final` exists: begin() removed any unpublished one
        fsync_dir(self.path)
        loss = train_loss if train_loss is None or math.isfinite(train_loss) else None  # JSON has no NaN
        checkpoint = Checkpoint(name, step, epoch, loss, time.time(), final, dict(metadata or {}))
        ledger = self.path / LEDGER_DIR
        ledger.mkdir(exist_ok=True)
        write_json_atomically(ledger / f"{name}.json", checkpoint.entry())
        return checkpoint

    @contextlib.contextmanager
    def write(
        self,
        step: int,
        *,
        epoch: int,
        train_loss: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Iterator[Path]:
        """Write a checkpoint from one process: yields the temporary folder, publishes when the block ends.

        If the block raises, the temporary folder is removed and nothing is published::

            with CheckpointDir("/out/checkpoints").write(step, epoch=epoch, train_loss=loss) as folder:
                torch.save(model.state_dict(), folder / "model.pt")
        """
        name = checkpoint_name(step)
        temp = self.begin(name)
        try:
            yield temp
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        self.publish(name, step=step, epoch=epoch, train_loss=train_loss, metadata=metadata)

    def mark_best(self, name: str, **metadata: Any) -> None:
        """Point `best.json` at the published checkpoint `name` (with e.g. its val_loss)."""
        if self.get(name) is None:
            raise CheckpointError(f"cannot mark {name} as best: it is not published in {self.path}")
        write_json_atomically(self.path / BEST_FILE, {**metadata, "name": name, "time": time.time()})

    def mark_complete(self, **metadata: Any) -> None:
        """Say that training has finished (evaluators stop waiting for new checkpoints)."""
        write_json_atomically(self.path / COMPLETE_FILE, {**metadata, "time": time.time()})

    def clear_complete(self) -> None:
        """Take the marker back: training goes on past where it had finished (a larger max_steps)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path / COMPLETE_FILE)
            fsync_dir(self.path)

    def prune(self, keep_last: int) -> list[str]:
        """Delete all but the `keep_last` newest published checkpoints; the best and the newest always stay.

        Each is first taken out of the ledger, then deleted: a crash in between leaves an unpublished
        folder, which the next write removes. Returns the names deleted.
        """
        if keep_last < 1:
            raise ValueError(f"keep_last must be at least 1, got {keep_last}")
        checkpoints = self.published()
        best = self.best()
        keep = {c.name for c in checkpoints[-keep_last:]} | ({best.name} if best else set())
        deleted = []
        for checkpoint in checkpoints:
            if checkpoint.name in keep:
                continue
            os.unlink(self.path / LEDGER_DIR / f"{checkpoint.name}.json")
            fsync_dir(self.path / LEDGER_DIR)
            shutil.rmtree(checkpoint.path, ignore_errors=True)
            deleted.append(checkpoint.name)
        return deleted

    def clean_up(self) -> list[str]:
        """Remove what crashed writes left: temporary folders and files, unpublished checkpoint folders.

        Temporary files include a best/complete pointer whose rename never happened.
        """
        if not self.path.is_dir():
            self.path.mkdir(parents=True, exist_ok=True)
            return []
        published = {c.name for c in self.published()}
        removed = []
        for entry in sorted(os.listdir(self.path)):
            path = self.path / entry
            leftover = entry.startswith(TEMP_PREFIX) or (
                entry.startswith(NAME_PREFIX) and entry not in published and path.is_dir()
            )
            if leftover:
                _remove(path)
                removed.append(entry)
        ledger = self.path / LEDGER_DIR
        if ledger.is_dir():
            for entry in os.listdir(ledger):
                if entry.startswith(TEMP_PREFIX):
                    _remove(ledger / entry)
                    removed.append(f"{LEDGER_DIR}/{entry}")
        return removed

    def _read_entry(self, path: Path) -> Checkpoint | None:
        data = _read_json(path)
        if data is None or data.get("format") != FORMAT:
            return None
        try:
            name, step, epoch = data["name"], data["step"], data["epoch"]
            loss, when, metadata = data.get("train_loss"), data["time"], data.get("metadata") or {}
        except KeyError:
            return None
        well_formed = (
            isinstance(name, str)
            and name == path.name.removesuffix(".json")
            and _is_int(step)
            and _is_int(epoch)
            and (loss is None or isinstance(loss, int | float))
            and isinstance(when, int | float)
            and isinstance(metadata, dict)
        )
        if not well_formed:
            return None
        return Checkpoint(
            name, step, epoch, None if loss is None else float(loss), float(when), self.path / name, metadata
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it is missing, torn or not an object."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def write_json_atomically(path: Path, data: Mapping[str, Any]) -> None:
    """Write `data` to `path` so that a reader sees the old file or the whole new one, never a part.

    Temporary file in the same folder, fsync, rename over `path`, fsync the folder.
    """
    temp = path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}")
    payload = json.dumps(data, sort_keys=True, allow_nan=False).encode() + b"\n"
    with open(temp, "wb") as file:
        file.write(payload)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp, path)
    fsync_dir(path.parent)


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under `root`, and `root` itself (their data and their names)."""
    for folder, _, files in os.walk(root):
        for file_name in files:
            fd = os.open(os.path.join(folder, file_name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))


def fsync_dir(path: Path) -> None:
    """fsync a folder, so that names created, renamed or removed in it survive a crash of the host."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
