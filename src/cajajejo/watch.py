"""The watcher: evaluate every checkpoint of a training run once per evaluator role, as soon as it is whole.

A `Watcher` polls a *source* of checkpoints, claims the oldest one that its role has no result for,
calls `handle(checkpoint)`, records what `handle` returned as the role's result, and goes on; it
returns once training is complete and every checkpoint has a result of its role. Claims, leases,
results and the rules behind them are `cajajejo.checkpoints`'; this module is the loop around them.

Two sources, one small protocol (`CheckpointSource`):
- `LedgerSource`: a `cajajejo.checkpoints` directory (the built-in trainer's, or any script using
  `CheckpointDir`). A checkpoint is ready once its ledger entry is there: never half written.
- `ForeignSource`: a directory where a trainer of its own writes `checkpoint_epoch_N.pt` in place
  (not atomically) and `latest.json` after each (seed 000's trainer). A file is ready once
  `latest.json` names it or a later epoch (the trainer writes it after the file is closed); in a
  directory without `latest.json`, once its size and mtime stayed the same across two looks
  `stable_seconds` apart (and a watcher does not finish while a file is still settling). Once
  `latest.json` exists it is trusted alone: a file left torn by a crashed writer also stops
  changing, and only `latest.json` tells it from a whole one. Claims and results go to a state
  directory (default `<dir>/.cajajejo/`). Training is complete when `training_complete` or
  `training_complete.json` exists.

Polling, and why it is cheap and quick on NFS. inotify does not see other hosts' writes, so the
watcher polls every `poll_seconds` (0.2 s: publication to `handle` takes ~0.1 s on average). A poll
of the ledger is one `stat` of `ledger/` when its mtime has not changed; but NFS clients cache
attributes, so the folder is listed anyway every `relist_seconds`. Entries are read once (they never
change). The results of the role are one listing per poll. When deciding to finish, the watcher
reads the completion marker first and lists afresh after it, and also looks up every checkpoint the
marker names (`mark_complete` lists them): a stale cached listing can delay the end, never cut it short.

Failures: when `handle` raises, the claim is released (another attempt may start at once, here or
on another worker) and the error is logged. Every attempt that raised, or whose worker died (its
lease expired), counts; when a checkpoint has failed `max_attempts` times (default 3) a *failed*
result is recorded instead (with the last error), so the group can finish. A checkpoint that
disappears before it is claimed (pruned, deleted by hand) is skipped with a line, once: this
watcher never looks at it again, even while its ledger entry stays. Interrupting the watcher
(SIGTERM as a `SystemExit`, Ctrl-C) releases the claim without counting a failure.

A lost claim: `LeaseKeeper` renews the lease while `handle` works. Once the lease ran out on this
process's own clock (renewals failed for most of a lease, or came back too late) or another worker
took the next attempt, the claim is lost: the command of a `CommandEvaluator` is killed at once,
an in-process `handle` can ask `current_lease()` whether it still holds the claim, and whatever
`handle` returns or raises afterwards is dropped (no result, no release, logged as `abandoned`).
So at most one worker records a checkpoint's result, and a second evaluation starts only after
the first holder's lease ran out on its own clock, by when it has stopped (the precise statement
is in `cajajejo.checkpoints`).

Early stop: with a stop request in the directory (`cajajejo checkpoints request-stop`) the built-in
trainer checkpoints and marks training complete, and the watchers finish as above. A trainer that
does not honour it (a foreign one) never marks completion; so after a stop request the watcher also
finishes when no new checkpoint appeared for `stop_grace_seconds` (default 600 s: the trainer's
last checkpoint may take that long to write).

Log lines start with `[WATCH]`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cajajejo.checkpoints import LEDGER_DIR, Checkpoint, CheckpointDir, Claim, check_label
from cajajejo.errors import one_line, printable

PREFIX = "[WATCH]"
STATE_DIR = ".cajajejo"  # a foreign directory's claims and results, unless told otherwise
FOREIGN_LATEST = "latest.json"
NO_SUCH_STEP = "no-checkpoint-at-step"  # a one-step watcher found no published checkpoint of its step
FOREIGN_COMPLETE = ("training_complete", "training_complete.json")
_FOREIGN_FILE = re.compile(r"checkpoint_epoch_(0|[1-9][0-9]{0,8})\.pt")

Handle = Callable[[Checkpoint], Mapping[str, Any]]


class CheckpointSource(Protocol):
    """Where a watcher finds checkpoints, and where their claims and results are kept."""

    @property
    def state(self) -> CheckpointDir:
        """The directory of claims, results, registrations and the stop request."""
        ...

    def ready(self, fresh: bool = False) -> list[Checkpoint]:
        """The whole checkpoints, oldest first. `fresh`: no cached listing, and whatever completion names."""
        ...

    def still_there(self, checkpoint: Checkpoint) -> bool:
        """Whether `checkpoint` is still published (not pruned or deleted since `ready` saw it)."""
        ...

    def settling(self) -> bool:
        """Whether a checkpoint that `ready` left out may still become whole (a file not yet stable)."""
        ...

    def completion(self) -> dict[str, Any] | None:
        """The training-complete marker's data, or None while training goes on."""
        ...

    def describe(self) -> str: ...


class LedgerSource:
    """A `cajajejo.checkpoints` directory: a checkpoint is ready once its ledger entry is published."""

    def __init__(self, directory: CheckpointDir | str | os.PathLike[str], relist_seconds: float = 1.0) -> None:
        self.directory = directory if isinstance(directory, CheckpointDir) else CheckpointDir(directory)
        self.relist_seconds = relist_seconds
        self._entries: dict[str, Checkpoint] = {}  # entries never change once published: read each once
        self._ledger_mtime: int | None = None
        self._listed_at = -float("inf")

    @property
    def state(self) -> CheckpointDir:
        return self.directory

    def ready(self, fresh: bool = False) -> list[Checkpoint]:
        ledger = self.directory.path / LEDGER_DIR
        try:
            mtime = os.stat(ledger).st_mtime_ns
        except FileNotFoundError:
            mtime = None
        now = time.monotonic()
        unchanged = mtime == self._ledger_mtime and now - self._listed_at < self.relist_seconds
        if fresh or not unchanged:
            self._ledger_mtime, self._listed_at = mtime, now
            self._update(self._listed_names(ledger, fresh))
        return sorted(self._entries.values(), key=lambda c: (c.step, c.name))

    def _listed_names(self, ledger: Path, fresh: bool) -> set[str]:
        try:
            names = {f.removesuffix(".json") for f in os.listdir(ledger) if f.endswith(".json") and f[0] != "."}
        except FileNotFoundError:
            names = set()
        if fresh:  # what the completion marker names, in case this host's listing of ledger/ is stale
            named = (self.directory.completion() or {}).get("checkpoints")
            if isinstance(named, list):
                names.update(n for n in named if isinstance(n, str) and n and "/" not in n and n[0] != ".")
        return names

    def _update(self, names: set[str]) -> None:
        for gone in self._entries.keys() - names:
            del self._entries[gone]
        for name in names - self._entries.keys():
            checkpoint = self.directory.get(name)  # None: unreadable, or its folder is gone; looked at again later
            if checkpoint is not None:
                self._entries[name] = checkpoint

    def still_there(self, checkpoint: Checkpoint) -> bool:
        ledger_entry = self.directory.path / LEDGER_DIR / f"{checkpoint.name}.json"
        return ledger_entry.exists() and checkpoint.path.is_dir()

    def settling(self) -> bool:
        return False  # an entry is published whole or not at all

    def completion(self) -> dict[str, Any] | None:
        return self.directory.completion()

    def describe(self) -> str:
        return str(self.directory.path)


def parse_foreign_name(file_name: str) -> int | None:
    """The epoch of a foreign checkpoint file name (`checkpoint_epoch_12.pt` -> 12), or None."""
    match = _FOREIGN_FILE.fullmatch(file_name)
    return int(match[1]) if match else None


def parse_latest(raw: bytes) -> tuple[int, float | None] | None:
    """(epoch, train loss) from a foreign `latest.json`, or None when it is torn or names no checkpoint file.

    `{"checkpoint": "checkpoint_epoch_4.pt", "epoch": 4, "train_loss": 0.61, ...}`: the file name counts.
    """
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    named = data.get("checkpoint") if isinstance(data, dict) else None
    epoch = parse_foreign_name(named) if isinstance(named, str) else None
    if epoch is None:
        return None
    loss = data.get("train_loss")
    finite = isinstance(loss, int | float) and not isinstance(loss, bool) and math.isfinite(loss)
    return epoch, float(loss) if finite else None


class ForeignSource:
    """A directory of `checkpoint_epoch_N.pt` files written in place by a trainer that knows nothing of us.

    A checkpoint's name is its file name, its step and epoch are N. What makes a file ready is in the
    module docstring.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        state_dir: str | os.PathLike[str] | None = None,
        stable_seconds: float = 2.0,
    ) -> None:
        self.path = Path(path)
        self.directory = CheckpointDir(state_dir if state_dir is not None else self.path / STATE_DIR)
        self.stable_seconds = stable_seconds
        self._looks: dict[str, tuple[int, int, float]] = {}  # file -> (size, mtime_ns, since when unchanged)
        self._latest: tuple[int, float | None] | None = None  # the newest epoch latest.json named, and its loss
        self._has_latest = False
        self._unsettled = 0  # files the last look found not (yet) stable

    @property
    def state(self) -> CheckpointDir:
        return self.directory

    def ready(self, fresh: bool = False) -> list[Checkpoint]:
        try:
            file_names = set(os.listdir(self.path))
        except FileNotFoundError:
            return []
        self._read_latest()
        now = time.monotonic()
        found = []
        self._unsettled = 0
        for file_name in file_names:
            epoch = parse_foreign_name(file_name)
            if epoch is None:
                continue
            try:
                stat = os.stat(self.path / file_name)
            except FileNotFoundError:
                continue
            if stat.st_size > 0 and self._is_whole(file_name, epoch, stat.st_size, stat.st_mtime_ns, now):
                found.append(self._checkpoint(file_name, epoch, stat.st_mtime))
            elif not self._has_latest:
                self._unsettled += 1  # without latest.json, every file becomes stable some time
        self._looks = {name: look for name, look in self._looks.items() if name in file_names}
        return sorted(found, key=lambda c: c.step)

    def _is_whole(self, file_name: str, epoch: int, size: int, mtime_ns: int, now: float) -> bool:
        if self._has_latest:
            return self._latest is not None and epoch <= self._latest[0]
        previous = self._looks.get(file_name)
        if previous is None or previous[:2] != (size, mtime_ns):
            self._looks[file_name] = (size, mtime_ns, now)
            return self.stable_seconds <= 0
        return now - previous[2] >= self.stable_seconds

    def _read_latest(self) -> None:
        """Remember the newest epoch latest.json named (it is rewritten in place: a torn read changes nothing)."""
        try:
            raw = (self.path / FOREIGN_LATEST).read_bytes()
        except FileNotFoundError:
            return
        except OSError:
            raw = b""
        self._has_latest = True
        named = parse_latest(raw)
        if named is not None and (self._latest is None or named[0] >= self._latest[0]):
            self._latest = named

    def _checkpoint(self, file_name: str, epoch: int, mtime: float) -> Checkpoint:
        loss = self._latest[1] if self._latest is not None and self._latest[0] == epoch else None
        return Checkpoint(file_name, epoch, epoch, loss, mtime, self.path / file_name, {"format": "foreign"})

    def still_there(self, checkpoint: Checkpoint) -> bool:
        return checkpoint.path.is_file()

    def settling(self) -> bool:
        # With latest.json, a file beyond the epoch it names once training is complete was left torn by
        # a crash: it never becomes whole, and is not waited for.
        return self._unsettled > 0

    def completion(self) -> dict[str, Any] | None:
        for marker in FOREIGN_COMPLETE:
            path = self.path / marker
            if path.exists():
                try:
                    data = json.loads(path.read_bytes())
                except (OSError, ValueError):
                    data = None  # written in place: its content may be half there; the name is what counts
                return data if isinstance(data, dict) else {}
        return None

    def describe(self) -> str:
        return f"{self.path} (foreign; state in {self.directory.path})"


@dataclass
class WatchSummary:
    """What one watcher did: checkpoints it evaluated, gave up on, or skipped, and why it stopped."""

    role: str
    worker: str
    handled: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # recorded as failed results (attempts exhausted)
    skipped: list[str] = field(default_factory=list)  # gone before it could be evaluated
    abandoned: list[str] = field(default_factory=list)  # the claim was lost while evaluating: no result here
    reason: str = ""


class HandleError(Exception):
    """An evaluation failed; `details` go into the failed result once attempts are exhausted."""

    def __init__(self, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = dict(details or {})


def default_worker() -> str:
    """`<host>-<pid>`, made a valid label: unique per process, and the pod's name on Kubernetes."""
    raw = f"{socket.gethostname()}-{os.getpid()}"
    label = re.sub(r"[^A-Za-z0-9._-]", "-", raw).lstrip("._-")[-100:]
    return label or f"worker-{os.getpid()}"


def _print_line(line: str) -> None:
    print(line, flush=True)


class Watcher:
    """Evaluates the checkpoints of `source` as evaluator role `role`, one at a time, oldest first."""

    def __init__(
        self,
        source: CheckpointSource,
        role: str,
        worker: str | None = None,
        *,
        lease_seconds: float = 60.0,
        poll_seconds: float = 0.2,
        max_attempts: int = 3,
        stop_grace_seconds: float = 600.0,
        only_step: int | None = None,
        log: Callable[[str], None] = _print_line,
    ) -> None:
        if not (lease_seconds > 0 and poll_seconds > 0 and stop_grace_seconds >= 0):
            raise ValueError("lease_seconds and poll_seconds must be positive, stop_grace_seconds not negative")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.source = source
        self.state = source.state
        self.role = check_label(role, "role")
        self.worker = check_label(worker or default_worker(), "worker")
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.max_attempts = max_attempts
        self.stop_grace_seconds = stop_grace_seconds
        # Only the checkpoint of this step, then stop: one evaluation job per checkpoint (Slurm workflows).
        # Such a watcher does not register its role, which would keep every other checkpoint for it.
        self.only_step = only_step
        self.log = log
        self._known: set[str] = set()
        self._last_new = time.monotonic()  # when a checkpoint was last seen for the first time
        self._stop_seen: float | None = None
        self._passed_over: set[str] = set()  # names that cannot be claimed, or vanished: never looked at again

    def say(self, event: str, **values: object) -> None:
        details = " ".join(f"{key}={printable(str(value))}" for key, value in values.items())
        self.log(f"{PREFIX} {event} role={self.role} worker={self.worker} {details}".rstrip())

    def run(self, handle: Handle) -> WatchSummary:
        """Evaluate until training is complete and every checkpoint has a result of this role; returns what was done."""
        summary = WatchSummary(self.role, self.worker)
        if self.only_step is None:
            self.state.register_watcher(self.role, self.worker)
        self.say(
            "watching",
            source=self.source.describe(),
            **({} if self.only_step is None else {"step": self.only_step}),
            lease_seconds=self.lease_seconds,
            poll_seconds=self.poll_seconds,
            max_attempts=self.max_attempts,
        )
        while True:
            pending = self._pending(fresh=False)
            if pending and self._evaluate_one(pending, handle, summary):
                continue  # look again at once: more may be waiting
            reason = self._finished()
            if reason is not None:
                summary.reason = reason
                self.say(
                    "finished",
                    reason=reason,
                    handled=len(summary.handled),
                    failed=len(summary.failed),
                    skipped=len(summary.skipped),
                )
                return summary
            time.sleep(self.poll_seconds)

    def _pending(self, fresh: bool) -> list[Checkpoint]:
        ready = self._wanted(self.source.ready(fresh))
        new = {c.name for c in ready} - self._known
        if new:
            self._known |= new
            self._last_new = time.monotonic()
        done = self.state.finished(self.role)
        return [c for c in ready if c.name not in done and c.name not in self._passed_over]

    def _wanted(self, ready: list[Checkpoint]) -> list[Checkpoint]:
        return ready if self.only_step is None else [c for c in ready if c.step == self.only_step]

    def _finished(self) -> str | None:
        """Why to stop now (training complete or stopped, and nothing left), or None to go on polling."""
        if self.only_step is not None:
            wanted = self._wanted(self.source.ready(fresh=True))
            if not wanted:
                return NO_SUCH_STEP
            done = self.state.finished(self.role)
            return None if any(c.name not in done for c in wanted) else "evaluated"
        completion = self.source.completion()  # first: every checkpoint is published before the marker
        reason = "training-complete"
        if completion is None:
            request = self.state.stop_request()
            if request is None:
                return None
            now = time.monotonic()
            self._stop_seen = self._stop_seen or now
            if now - max(self._stop_seen, self._last_new) < self.stop_grace_seconds:
                return None  # the trainer should checkpoint and mark completion: give it time
            reason = "stop-request"
        return None if self._pending(fresh=True) or self.source.settling() else reason

    def _evaluate_one(self, pending: Sequence[Checkpoint], handle: Handle, summary: WatchSummary) -> bool:
        """Claim the oldest checkpoint nobody holds and evaluate it; False when all are held by others."""
        for checkpoint in pending:
            try:
                claim = self.state.claim(
                    checkpoint.name, role=self.role, worker=self.worker, lease_seconds=self.lease_seconds
                )
            except ValueError as exc:  # a name that cannot be claimed (a hand-made ledger entry)
                self._passed_over.add(checkpoint.name)
                self.say("ignored", name=checkpoint.name, why=one_line(exc))
                continue
            if claim is None:
                continue
            if not self.source.still_there(checkpoint):
                self.state.release(claim, "vanished")
                # Its ledger entry may stay (a folder deleted by hand): claiming it again would never end.
                self._passed_over.add(checkpoint.name)
                summary.skipped.append(checkpoint.name)
                self.say("skipped", name=checkpoint.name, why="gone-before-it-was-claimed")
                continue
            if claim.failures >= self.max_attempts:
                self._give_up(claim, claim.last_error or "?", summary)
                return True
            self._evaluate(checkpoint, claim, handle, summary)
            return True
        return False

    def _evaluate(self, checkpoint: Checkpoint, claim: Claim, handle: Handle, summary: WatchSummary) -> None:
        self.say("start", name=checkpoint.name, step=checkpoint.step, attempt=claim.attempt)
        started = time.monotonic()
        keeper = LeaseKeeper(self.state, claim, self.say)
        try:
            with keeper.kept():
                value = dict(handle(checkpoint))  # not a mapping: a failed attempt like any other error
        except Exception as exc:
            if keeper.lost:  # the error is likely our own kill; either way the attempt is someone else's now
                self._abandoned(claim, summary, exc)
            else:
                self._failed(claim, exc, summary)
            return
        except BaseException:
            if not keeper.lost:  # a lost claim is not ours to write to
                self.state.release(claim, "interrupted")  # SIGTERM, Ctrl-C: another worker may start at once
            self.say("interrupted", name=checkpoint.name, attempt=claim.attempt)
            raise
        if keeper.lost:  # checked last thing before recording: a worker past its lease records nothing
            self._abandoned(claim, summary)
            return
        recorded = self.state.record_result(claim, value)
        summary.handled.append(checkpoint.name)
        seconds = f"{time.monotonic() - started:.3f}"
        if recorded:
            self.say("done", name=checkpoint.name, attempt=claim.attempt, seconds=seconds)
        else:  # another worker took over while this one stalled, and finished first
            self.say("done", name=checkpoint.name, attempt=claim.attempt, seconds=seconds, kept="earlier-result")

    def _abandoned(self, claim: Claim, summary: WatchSummary, exc: Exception | None = None) -> None:
        summary.abandoned.append(claim.name)
        error = {} if exc is None else {"error": one_line(f"{type(exc).__name__}: {exc}", 300)}
        self.say("abandoned", name=claim.name, attempt=claim.attempt, why="claim-lost", **error)

    def _failed(self, claim: Claim, exc: Exception, summary: WatchSummary) -> None:
        error = one_line(f"{type(exc).__name__}: {exc}", 300)
        failures = claim.failures + 1
        self.say(
            "failed", name=claim.name, attempt=claim.attempt, failures=f"{failures}/{self.max_attempts}", error=error
        )
        details = exc.details if isinstance(exc, HandleError) else {}
        if failures >= self.max_attempts:
            self._give_up(claim, error, summary, failures, details)
        else:
            self.state.release(claim, "failed", error)

    def _give_up(
        self,
        claim: Claim,
        error: str,
        summary: WatchSummary,
        failures: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        failures = claim.failures if failures is None else failures
        value = {**(details or {}), "error": error, "failures": failures, "attempts": claim.attempt}
        self.state.record_result(claim, value, status="failed")
        summary.failed.append(claim.name)
        self.say("gave-up", name=claim.name, failures=failures, error=error)


_CURRENT_LEASE: ContextVar[LeaseKeeper | None] = ContextVar("cajajejo_current_lease", default=None)


def current_lease() -> LeaseKeeper | None:
    """The lease of the claim that the watcher's `handle`, running in this thread, works for; None outside one."""
    return _CURRENT_LEASE.get()


class LeaseKeeper:
    """Renews a claim's lease from a background thread while `handle` works, about three times a lease.

    `lost` turns true for good once the lease ran out on this process's monotonic clock
    (`Claim.held_until`; renewals that fail or come back late do not extend it) or another worker
    took the next attempt. Then the callbacks given to `on_lost` run, from the keeper's thread.
    """

    def __init__(self, state: CheckpointDir, claim: Claim, say: Callable[..., None]) -> None:
        self.state = state
        self.claim = claim
        self._say = say
        self._lost = threading.Event()
        self._stopping = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()  # a callback added while the claim is being lost runs exactly once
        self._thread = threading.Thread(target=self._run, name=f"lease-{claim.name}", daemon=True)

    @property
    def lost(self) -> bool:
        # The clock too, not only the flag: the keeper's thread may wake late, the deadline does not.
        return self._lost.is_set() or time.monotonic() > self.claim.held_until()

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the claim is lost (now, if it is already)."""
        with self._lock:
            if not self._lost.is_set():
                self._callbacks.append(callback)
                return
        callback()

    @contextlib.contextmanager
    def kept(self) -> Iterator[LeaseKeeper]:
        """Renew while the block runs, as `current_lease()` in this thread."""
        token = _CURRENT_LEASE.set(self)
        self._thread.start()
        try:
            yield self
        finally:
            self._stopping.set()
            self._thread.join()
            _CURRENT_LEASE.reset(token)

    def _run(self) -> None:
        interval = self.claim.lease_seconds / 3
        while not self._stopping.wait(max(0.0, min(interval, self.claim.held_until() - time.monotonic()))):
            if time.monotonic() > self.claim.held_until():
                self._lose("lease-ran-out")
                return
            try:
                renewed = self.state.renew(self.claim)
            except OSError as exc:  # a passing NFS hiccup: try again soon, while the lease lasts
                self._say("renew-failed", name=self.claim.name, error=one_line(exc))
                interval = self.claim.lease_seconds / 10
                continue
            if renewed is None:
                self._lose("taken-over-or-renewed-late")
                return
            self.claim, interval = renewed, self.claim.lease_seconds / 3

    def _lose(self, why: str) -> None:
        with self._lock:
            self._lost.set()
            callbacks, self._callbacks = self._callbacks, []
        self._say("lost-claim", name=self.claim.name, attempt=self.claim.attempt, why=why)
        for callback in callbacks:
            callback()


# The plain-command evaluator of `cajajejo checkpoints watch DIR --role R -- COMMAND...`

ENV_PATH = "CAJAJEJO_CHECKPOINT_PATH"
ENV_NAME = "CAJAJEJO_CHECKPOINT_NAME"
ENV_STEP = "CAJAJEJO_CHECKPOINT_STEP"
ENV_EPOCH = "CAJAJEJO_CHECKPOINT_EPOCH"
ENV_ROLE = "CAJAJEJO_EVALUATOR_ROLE"
ENV_WORKER = "CAJAJEJO_EVALUATOR_WORKER"
STOP_GRACE_SECONDS = 10  # after SIGTERM to an interrupted command, before SIGKILL


@dataclass(frozen=True)
class CommandEvaluator:
    """Runs `argv` once per checkpoint (no shell), told which checkpoint through the environment.

    The command's stdout passes through. Its result: `{"exit_code": 0}`, plus `output`: the last
    line it printed when that line is a JSON object. A non-zero exit is a failed attempt
    (`HandleError`, retried by the watcher). An interrupted watcher stops the command too, and a
    lost claim (`current_lease()`) SIGKILLs it at once: another worker may start on the checkpoint.
    """

    argv: tuple[str, ...]
    role: str
    worker: str

    def environment(self, checkpoint: Checkpoint) -> dict[str, str]:
        return {
            **os.environ,
            ENV_PATH: str(checkpoint.path),
            ENV_NAME: checkpoint.name,
            ENV_STEP: str(checkpoint.step),
            ENV_EPOCH: str(checkpoint.epoch),
            ENV_ROLE: self.role,
            ENV_WORKER: self.worker,
        }

    def __call__(self, checkpoint: Checkpoint) -> dict[str, Any]:
        process = subprocess.Popen(list(self.argv), env=self.environment(checkpoint), stdout=subprocess.PIPE)
        lease = current_lease()
        if lease is not None:
            lease.on_lost(process.kill)  # Popen.kill signals nothing once the process was waited for
        try:
            last = _pass_through(process)
            code = process.wait()
        except BaseException:
            _end(process)
            raise
        if code != 0:
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            raise HandleError(f"{self.argv[0]}: {how}", {"exit_code": code})
        result: dict[str, Any] = {"exit_code": 0}
        output = _json_object(last)
        if output is not None:
            result["output"] = output
        return result


def _pass_through(process: subprocess.Popen[bytes]) -> bytes:
    """Copy the command's stdout to ours line by line; returns its last non-empty line."""
    assert process.stdout is not None
    last = b""
    for line in process.stdout:
        sys.stdout.write(line.decode(errors="replace"))
        sys.stdout.flush()
        if line.strip():
            last = line
    return last


def _json_object(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _end(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after STOP_GRACE_SECONDS: an interrupted watcher leaves no evaluation behind."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()
