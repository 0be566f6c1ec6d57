"""The checkpoint protocol: a checkpoint exists for readers only once it is complete and published.

A checkpoint directory (one per training run, usually on a volume that trainers and evaluators share)
looks like this::

    <dir>/
      step-00000120/            a complete checkpoint: renamed into place after every file was fsynced
      .tmp-step-00000140/       one being written (or left by a crash; removed by the next write)
      ledger/step-00000120.json one small JSON file per published checkpoint
      best.json                 which published checkpoint has the lowest validation loss
      training_complete.json    written once training has finished (it lists the published checkpoints)
      claims/<role>/step-00000120.1.json   an evaluator's claim: attempt 1 of role <role> on that checkpoint
      results/<role>/step-00000120.json    what role <role> found; written once, the first writer wins
      watchers/<role>/<worker>.json        a watcher of <role> registered here: prune waits for that role
      holds/<role>/step-00000120.json      that checkpoint waits for a result of <role> (one checkpoint only)
      stop_request.json         someone asked the trainer to stop early (first request wins)

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
one writer of checkpoints per directory (rank 0 of the trainer).

Evaluators: claims and results. Several evaluator *roles* ("helm", "perplexity") may evaluate the
same checkpoints independently; the workers of one role split the work. Everything is per (role,
checkpoint), and every file is created in one of two ways only: atomic rename (a file that only its
creator rewrites), or `os.link` of a complete temporary file to the final name, which fails when the
name exists, atomically on the NFS server too (an exclusive create that readers never see half
written; a retried LINK that answers EEXIST is told apart by comparing the content, which holds a
random token).

- A *claim* is attempt N of a role on a checkpoint: `claims/<role>/<name>.<N>.json`. A worker claims
  attempt N+1 only when attempt N is over: released (the worker gave it back, e.g. after an error)
  or expired (its lease was not renewed for `lease_seconds`: the worker died). Creating N+1 by
  `os.link` is the whole race: of two workers that both see N expired, exactly one creates N+1, and
  attempt N's file is never touched by anyone but its holder. So taking over a dead worker's claim
  needs no rename, lock or clean-up, and a holder that was only slow learns it lost (`renew` sees
  N+1) instead of overwriting anyone.
- The holder renews its lease (rewrites its own claim file by rename) about three times per lease.
- Expiry is judged by each clock on its own, never by comparing two hosts' clocks. An observer (a
  `CheckpointDir` object) calls a claim expired once it has seen the claim file with the same content
  for `lease_seconds` on its own monotonic clock; a restarted observer therefore waits a whole lease
  before taking over. The holder counts its lease as lost `HOLDER_SHARE` of a lease after it *began*
  its last renewal that was written in time (a renewal counts only if it returned before the lease
  it extends ran out), on its own monotonic clock, whether later renewals failed or not.
  The wall-clock times in a claim file are for people (`cajajejo checkpoints list`).
- Reading a claim can fail for a moment (ESTALE while its holder renames over it on NFS, a passing
  EIO): that claim counts as live and is looked at again later. Only a file read whole whose
  content does not parse is an unreadable claim (every earlier attempt then counts as failed).
- A *result* is `results/<role>/<name>.json`, created by `os.link`: the first writer wins, and a
  result is never overwritten. Claiming checks for a result before and after creating the claim,
  so a checkpoint with a result is never claimed again. A checkpoint is evaluated again only when
  its worker died (or lost its lease) before recording the result: at least once, never lost.

What is guaranteed, given that monotonic clocks run at the same rate (to well within
1 - HOLDER_SHARE) and that a reader who opens a claim file after a rename of it returned reads the
new content (NFS close-to-open): at most one result per (role, checkpoint) is ever recorded; and
attempt N+1 is created only after attempt N's holder released it, or after N's lease ran out on its
holder's own clock. A holder whose lease ran out must stop (`cajajejo.watch` kills its command and
records nothing); so two evaluations of one checkpoint overlap only when a holder ignores that, or
when it is paused between its last check of the lease and the write it checked for. Proof sketch:
an observer's decision rests on content C seen unchanged for a lease from its first read; the
holder began writing C before that read, so its own deadline (HOLDER_SHARE of a lease from then)
comes first; and a renewal after C that counted for the holder returned before that deadline, so
the observer would have seen it.
- Failures: a claim carries how many earlier attempts failed (released as "failed", or expired).
  The watcher (`cajajejo.watch`) records a failed result once that reaches its limit, so a
  checkpoint that always crashes its evaluator cannot hold a group up forever.

Pruning waits for evaluators: `prune(keep_last)` keeps, besides the newest `keep_last` and the best,
every checkpoint that some role has not finished with, where a role has not finished with a
checkpoint that has no result of that role and either (a) a watcher of that role is registered
(`watchers/<role>/`: the watcher writes it when it starts and leaves it, so a crashed and restarted
evaluator is still waited for), or (b) it holds a claim of that role. A checkpoint pruned before any
watcher of a role registered is never evaluated by that role: start evaluators before the trainer,
or register roles ahead (`register_watcher`). A role that is given up must be unregistered, or its
unevaluated checkpoints stay. Claims of a pruned checkpoint are deleted with it; results stay.
A *hold* (`hold(name, role)`) is the same promise for one checkpoint: it stays until it has a result
of that role, whatever other checkpoints that role skips. Segmented training uses it to keep each
epoch's last checkpoint for that epoch's evaluation job, which may start long after training moved on.

Early stop: `request_stop(reason, by)` creates `stop_request.json` (first request wins). The built-in
trainer checks it at sync points, checkpoints, marks training complete and exits 0; evaluators then
finish the remaining checkpoints and exit.

This module imports nothing heavy (no torch): users' own training scripts and evaluators call it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeGuard

LEDGER_DIR = "ledger"
BEST_FILE = "best.json"
COMPLETE_FILE = "training_complete.json"
TEMP_PREFIX = ".tmp-"
NAME_PREFIX = "step-"
CLAIMS_DIR = "claims"
RESULTS_DIR = "results"
WATCHERS_DIR = "watchers"
HOLDS_DIR = "holds"
STOP_FILE = "stop_request.json"
FORMAT = 1  # of ledger entries, claims and results; a reader skips files of a format it does not know

# Roles and workers name folders and files: a short safe label. Checkpoint names are looser (a
# foreign trainer's file names), but never a path: no "/", no leading dot, no NUL.
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_CLAIM_FILE = re.compile(r"(?P<name>.+)\.(?P<attempt>[1-9][0-9]{0,8})\.json", re.DOTALL)  # names may hold newlines
MAX_NAME = 200
# The holder's share of a lease: it stops this far into a lease that it could not renew in time,
# ahead of any observer (who waits a whole lease), whatever the latency of waking a thread.
HOLDER_SHARE = 0.9
# How a claim ended, when its holder gave it back; only "failed" counts towards the failure limit.
RELEASE_OUTCOMES = ("failed", "interrupted", "vanished", "done")


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


def check_label(value: str, what: str) -> str:
    """`value` if it can name a role or a worker (letters, digits, `.`, `_`, `-`; 100 at most); else ValueError."""
    if not isinstance(value, str) or not _LABEL.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} must be 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def check_name(name: str) -> str:
    """`name` if it can name a checkpoint in claims and results (a file name, not a path); else ValueError."""
    if not name or len(name) > MAX_NAME or name.startswith(".") or "/" in name or "\0" in name:
        raise ValueError(f"checkpoint name {name!r} cannot be claimed: it must be a file name of {MAX_NAME} at most")
    return name


def claim_file_name(name: str, attempt: int) -> str:
    """The claim file of attempt `attempt` (1, 2, ...) on checkpoint `name`: `step-00000120.1.json`."""
    return f"{name}.{attempt}.json"


def parse_claim_file_name(file_name: str) -> tuple[str, int] | None:
    """(checkpoint name, attempt) of a claim file name, or None when it is not one (temporary files too)."""
    match = _CLAIM_FILE.fullmatch(file_name)
    if match is None or file_name.startswith("."):
        return None
    return match["name"], int(match["attempt"])


@dataclass(frozen=True)
class Claim:
    """Attempt `attempt` of evaluator role `role` on checkpoint `name`, by `worker`.

    The holder's object (from `CheckpointDir.claim`) and what others read (`CheckpointDir.newest_claim`)
    are the same type; `token` tells this attempt from any other. Only the holder's object has a
    `lease_start`: this process's monotonic clock when it began the write that last extended the lease.
    """

    role: str
    name: str
    worker: str
    token: str
    attempt: int
    failures: int  # earlier attempts that failed or expired
    lease_seconds: float
    claimed_at: float
    renewed_at: float
    path: Path
    released: str | None = None  # one of RELEASE_OUTCOMES once the holder gave it back
    error: str | None = None  # why, when it failed
    last_error: str | None = None  # why the attempt before this one ended, when it failed or expired
    lease_start: float = field(default=0.0, compare=False)  # the holder's monotonic clock; see above

    def expires_at(self) -> float:
        return self.renewed_at + self.lease_seconds

    def status(self, now: float) -> str:
        """`live`, `released` or `expired` by the wall clock `now`: for display (claiming goes by `CheckpointDir`)."""
        if self.released is not None:
            return "released"
        return "expired" if now > self.expires_at() else "live"

    def held_until(self) -> float:
        """When (the holder's monotonic clock) the holder must count the claim as lost unless renewed in time."""
        return self.lease_start + self.lease_seconds * HOLDER_SHARE

    def failures_after(self) -> int:
        """How many failed attempts the next claim inherits once this one is over: it counts if it failed or expired."""
        return self.failures + (1 if self.ending() else 0)

    def ending(self) -> str | None:
        """Why this attempt, now over, failed, for the next one: its error, or that its lease expired; else None."""
        if self.released == "failed":
            return self.error or "failed"
        if self.released is None:
            return f"the lease of worker {self.worker} expired (it died or stalled)"
        return None

    def entry(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "role": self.role,
            "name": self.name,
            "worker": self.worker,
            "token": self.token,
            "attempt": self.attempt,
            "failures": self.failures,
            "lease_seconds": self.lease_seconds,
            "claimed_at": self.claimed_at,
            "renewed_at": self.renewed_at,
            "released": self.released,
            "error": self.error,
            "last_error": self.last_error,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }


@dataclass(frozen=True)
class Result:
    """What role `role` recorded for checkpoint `name`: `status` is `ok` or `failed`, `value` the evaluator's data."""

    role: str
    name: str
    status: str
    value: dict[str, Any]
    worker: str
    attempt: int
    time: float


@dataclass(frozen=True)
class StopRequest:
    """Someone (`by`) asked the trainer to stop early, for `reason`."""

    reason: str
    by: str
    time: float


class CheckpointDir:
    """A checkpoint directory: the single writer's operations and every reader's view of it.

    Nothing here caches: each call reads the directory again, so a reader sees what another host
    published since its last call (as soon as its NFS attribute cache lets it). What it keeps is
    what it observed of claims: each claim's content and since when (its monotonic clock) it saw
    that content unchanged, which is how it judges expiry (see the module docstring).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._observed: dict[Path, tuple[Claim, float]] = {}

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
        """Say that training has finished (evaluators stop waiting for new checkpoints).

        The marker lists the published checkpoints (`checkpoints`): an evaluator whose listing of
        `ledger/` is older than the marker (NFS caches listings) knows what it still has to see.
        """
        names = [c.name for c in self.published()]
        write_json_atomically(self.path / COMPLETE_FILE, {"checkpoints": names, **metadata, "time": time.time()})

    def clear_complete(self) -> None:
        """Take the marker back: training goes on past where it had finished (a larger max_steps)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path / COMPLETE_FILE)
            fsync_dir(self.path)

    def prune(self, keep_last: int) -> list[str]:
        """Delete old published checkpoints: all but the `keep_last` newest, the best, and those evaluators need.

        A checkpoint that some evaluator role has not finished with stays (the rule is in the module's
        docstring). Each is first taken out of the ledger, then deleted, then its claims: a crash in
        between leaves an unpublished folder, which the next write removes. Returns the names deleted.
        """
        if keep_last < 1:
            raise ValueError(f"keep_last must be at least 1, got {keep_last}")
        checkpoints = self.published()
        best = self.best()
        keep = {c.name for c in checkpoints[-keep_last:]} | ({best.name} if best else set())
        candidates = [c for c in checkpoints if c.name not in keep]
        if not candidates:
            return []
        claims = self._claim_files()
        busy = self._unfinished(candidates, claims)
        deleted = []
        for checkpoint in candidates:
            if checkpoint.name in busy:
                continue
            os.unlink(self.path / LEDGER_DIR / f"{checkpoint.name}.json")
            fsync_dir(self.path / LEDGER_DIR)
            shutil.rmtree(checkpoint.path, ignore_errors=True)
            for leftover in [*claims.get(checkpoint.name, []), *self._hold_files(checkpoint.name)]:
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
            deleted.append(checkpoint.name)
        return deleted

    def _unfinished(self, checkpoints: Iterable[Checkpoint], claims: Mapping[str, list[Path]]) -> set[str]:
        """The names among `checkpoints` that an evaluator role has not finished with (see the module docstring)."""
        registered = self.registered_roles()
        claimed: dict[str, set[str]] = {}
        for name, paths in claims.items():
            for claim_path in paths:
                claimed.setdefault(claim_path.parent.name, set()).add(name)
        held = self.holds()
        busy = set()
        for role in registered | claimed.keys() | held.keys():
            done = self.finished(role)
            for checkpoint in checkpoints:
                if checkpoint.name in done:
                    continue
                wanted = claimed.get(role, set()) | held.get(role, set())
                if role in registered or checkpoint.name in wanted:
                    busy.add(checkpoint.name)
        return busy

    def _claim_files(self) -> dict[str, list[Path]]:
        """Every claim file, by checkpoint name (one listing per role)."""
        found: dict[str, list[Path]] = {}
        for role in _subfolders(self.path / CLAIMS_DIR):
            folder = self.path / CLAIMS_DIR / role
            for file_name in _listing(folder):
                parsed = parse_claim_file_name(file_name)
                if parsed is not None:
                    found.setdefault(parsed[0], []).append(folder / file_name)
        return found

    # Evaluators: claims, results, registrations

    def claim(self, name: str, *, role: str, worker: str, lease_seconds: float) -> Claim | None:
        """Claim checkpoint `name` for role `role`: the Claim when this call got it, else None.

        None when the role has a result for it, or another worker's claim on it is live. A released
        or expired claim is taken over (the next attempt); of several callers exactly one gets it.
        The checkpoint itself is not looked at: the caller checks it is still there.
        """
        check_name(name)
        check_label(role, "role")
        check_label(worker, "worker")
        if not lease_seconds > 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        if self.has_result(role, name):
            return None
        folder = self.path / CLAIMS_DIR / role
        folder.mkdir(parents=True, exist_ok=True)
        attempt = self._newest_attempt(folder, name)
        while True:
            inherited = self._over(folder / claim_file_name(name, attempt), role, name) if attempt else (0, None)
            if inherited is None:
                return None
            lease_start, now = time.monotonic(), time.time()  # the lease starts before the file is written
            path = folder / claim_file_name(name, attempt + 1)
            token = secrets.token_hex(8)
            claim = Claim(role, name, worker, token, attempt + 1, inherited[0], lease_seconds, now, now, path)
            claim = replace(claim, last_error=inherited[1], lease_start=lease_start)
            if _create_exclusively(path, claim.entry()):
                break
            attempt += 1  # someone created that attempt first (or our listing was stale): look at theirs
        self._observe(claim)
        self._observed.pop(folder / claim_file_name(name, attempt), None)  # over: never looked at again
        if self.has_result(role, name):  # recorded between our first look and our claim
            self.release(claim, "done")
            return None
        return claim

    def _over(self, path: Path, role: str, name: str) -> tuple[int, str | None] | None:
        """(failures, last error) that the next attempt inherits once the claim in `path` is over; None while live."""
        try:
            seen = _parse_claim(path.read_bytes(), path, role, name)
        except FileNotFoundError:  # deleted since we listed it (pruned, or by hand): nothing to inherit
            return 0, None
        except OSError:  # ESTALE while its holder renames over it, a passing EIO: no sign of death
            return None
        if seen is None:  # read whole, yet no claim (a hand edit, a broken filesystem): every attempt failed
            return _attempt_of(path), "an unreadable claim"
        if seen.released is None and not self._unchanged_for_a_lease(seen):
            return None
        return seen.failures_after(), seen.ending()

    def _unchanged_for_a_lease(self, seen: Claim) -> bool:
        """Whether this object has seen `seen` (same content) for its whole lease, by its own monotonic clock."""
        now = time.monotonic()
        first = self._observed.get(seen.path)
        if first is None or first[0] != seen:
            self._observed[seen.path] = (seen, now)  # new to us, or renewed since: the lease starts over
            return False
        return now - first[1] >= seen.lease_seconds

    def _observe(self, written: Claim) -> None:
        """Our claim file holds `written` from now on: seen since now (by threads sharing this object too)."""
        self._observed[written.path] = (written, time.monotonic())

    def renew(self, claim: Claim) -> Claim | None:
        """Extend `claim`'s lease from now; None when it was lost (another worker took the next attempt, or late).

        Late: the write returned after the lease it extends ran out on this process's clock
        (`Claim.held_until`); by then an observer may have judged the claim expired on what it read before.
        """
        renewed = replace(claim, renewed_at=time.time(), lease_start=time.monotonic())
        write_json_atomically(claim.path, renewed.entry())
        # Checked after the write, not before: a next attempt created while we wrote is seen here.
        if time.monotonic() > claim.held_until() or self._has_next_attempt(claim):
            return None
        self._observe(renewed)
        return renewed

    def _has_next_attempt(self, claim: Claim) -> bool:
        return claim.path.with_name(claim_file_name(claim.name, claim.attempt + 1)).exists()

    def release(self, claim: Claim, outcome: str, error: str | None = None) -> None:
        """Give `claim` back (`outcome` in RELEASE_OUTCOMES): another attempt may start at once."""
        if outcome not in RELEASE_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(RELEASE_OUTCOMES)}, got {outcome!r}")
        released = replace(claim, renewed_at=time.time(), released=outcome, error=error)
        write_json_atomically(claim.path, released.entry())

    def newest_claim(self, role: str, name: str) -> Claim | None:
        """The newest attempt of `role` on `name` (live, released or expired), or None."""
        folder = self.path / CLAIMS_DIR / check_label(role, "role")
        attempt = self._newest_attempt(folder, name)
        return _read_claim(folder / claim_file_name(name, attempt), role, name) if attempt else None

    def _newest_attempt(self, folder: Path, name: str) -> int:
        attempts = [0]
        for file_name in _listing(folder):
            parsed = parse_claim_file_name(file_name)
            if parsed is not None and parsed[0] == name:
                attempts.append(parsed[1])
        return max(attempts)

    def record_result(self, claim: Claim, value: Mapping[str, Any], *, status: str = "ok") -> bool:
        """Record what `claim`'s worker found; True when this is the result, False when one was there already.

        `value` is stored as JSON (numbers that are not finite become null, other objects their text).
        """
        if status not in ("ok", "failed"):
            raise ValueError(f"status must be 'ok' or 'failed', got {status!r}")
        folder = self.path / RESULTS_DIR / claim.role
        folder.mkdir(parents=True, exist_ok=True)
        entry = {
            "format": FORMAT,
            "role": claim.role,
            "name": claim.name,
            "status": status,
            "value": _jsonable(dict(value)),
            "worker": claim.worker,
            "attempt": claim.attempt,
            "token": claim.token,
            "time": time.time(),
        }
        return _create_exclusively(folder / f"{claim.name}.json", entry)

    def has_result(self, role: str, name: str) -> bool:
        return (self.path / RESULTS_DIR / role / f"{name}.json").exists()

    def result(self, role: str, name: str) -> Result | None:
        """Role `role`'s result for checkpoint `name`, or None (also when the file does not parse)."""
        return _read_result(self.path / RESULTS_DIR / check_label(role, "role") / f"{name}.json", role, name)

    def results(self, role: str) -> dict[str, Result]:
        """Every readable result of `role`, by checkpoint name."""
        found = {}
        for name in self.finished(role):
            result = self.result(role, name)
            if result is not None:
                found[name] = result
        return found

    def finished(self, role: str) -> set[str]:
        """The checkpoints that `role` has a result for (one listing: what watchers poll)."""
        folder = self.path / RESULTS_DIR / check_label(role, "role")
        return {f[: -len(".json")] for f in _listing(folder) if f.endswith(".json") and not f.startswith(".")}

    def roles(self) -> list[str]:
        """Every role with a registered watcher, a claim, a hold or a result here."""
        found: set[str] = set()
        for folder in (CLAIMS_DIR, RESULTS_DIR, WATCHERS_DIR, HOLDS_DIR):
            found.update(_subfolders(self.path / folder))
        return sorted(found)

    def register_watcher(self, role: str, worker: str) -> None:
        """Say that `worker` evaluates this directory's checkpoints as `role`: from now on `prune` waits for it."""
        folder = self.path / WATCHERS_DIR / check_label(role, "role")
        folder.mkdir(parents=True, exist_ok=True)
        check_label(worker, "worker")
        entry = {"role": role, "worker": worker, "host": socket.gethostname(), "time": time.time()}
        write_json_atomically(folder / f"{worker}.json", entry)

    def unregister_watcher(self, role: str, worker: str | None = None) -> None:
        """Take `worker`'s registration back (every worker's when None): prune stops waiting for the role."""
        folder = self.path / WATCHERS_DIR / check_label(role, "role")
        for file_name in _listing(folder):
            if worker is None or file_name == f"{check_label(worker, 'worker')}.json":
                with contextlib.suppress(FileNotFoundError):
                    (folder / file_name).unlink()

    def hold(self, name: str, role: str) -> None:
        """Keep checkpoint `name` until it has a result of `role` (`prune` skips it until then)."""
        folder = self.path / HOLDS_DIR / check_label(role, "role")
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomically(folder / f"{check_name(name)}.json", {"format": FORMAT, "time": time.time()})
        fsync_dir(folder)

    def holds(self) -> dict[str, set[str]]:
        """The held checkpoints' names, by role."""
        found: dict[str, set[str]] = {}
        for role in _subfolders(self.path / HOLDS_DIR):
            names = {f.removesuffix(".json") for f in _listing(self.path / HOLDS_DIR / role) if f.endswith(".json")}
            found[role] = {name for name in names if not name.startswith(".")}
        return found

    def _hold_files(self, name: str) -> list[Path]:
        return [self.path / HOLDS_DIR / role / f"{name}.json" for role in _subfolders(self.path / HOLDS_DIR)]

    def registered_roles(self) -> set[str]:
        """The roles with at least one registered watcher."""
        folder = self.path / WATCHERS_DIR
        return {
            role
            for role in _subfolders(folder)
            if any(f.endswith(".json") and not f.startswith(".") for f in _listing(folder / role))
        }

    # Early stop

    def request_stop(self, reason: str, by: str) -> StopRequest:
        """Ask the trainer to stop early; returns the request in effect (an earlier one, if there was one)."""
        self.path.mkdir(parents=True, exist_ok=True)
        mine = StopRequest(str(reason), str(by), time.time())
        entry = {"format": FORMAT, "reason": mine.reason, "by": mine.by, "time": mine.time}
        if _create_exclusively(self.path / STOP_FILE, entry):
            return mine
        return self.stop_request() or mine

    def stop_request(self) -> StopRequest | None:
        """The stop request, or None. When there is none this costs one failed open (the trainer's check)."""
        data = _read_json(self.path / STOP_FILE)
        if data is None:
            return None
        reason, by, when = data.get("reason"), data.get("by"), data.get("time")
        if not (isinstance(reason, str) and isinstance(by, str) and _is_number(when)):
            return StopRequest("(unreadable stop request)", "?", 0.0)  # still a request: someone wrote the file
        return StopRequest(reason, by, float(when))

    def clear_stop_request(self) -> None:
        """Take the stop request back (training may go on, e.g. with a larger max_steps)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path / STOP_FILE)
            fsync_dir(self.path)

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


def _read_claim(path: Path, role: str, name: str) -> Claim | None:
    """The claim in `path`, or None when it is missing, cannot be read now, or is no claim of (role, name)."""
    try:
        return _parse_claim(path.read_bytes(), path, role, name)
    except OSError:
        return None


def _attempt_of(path: Path) -> int:
    parsed = parse_claim_file_name(path.name)
    return parsed[1] if parsed else 0


def _parse_claim(raw: bytes, path: Path, role: str, name: str) -> Claim | None:
    """The claim that `raw`, read whole from `path`, holds; None when it is not a claim of (role, name)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    if data.get("role") != role or data.get("name") != name:
        return None
    worker, token, attempt, failures = data.get("worker"), data.get("token"), data.get("attempt"), data.get("failures")
    lease, claimed, renewed = data.get("lease_seconds"), data.get("claimed_at"), data.get("renewed_at")
    released, error, last_error = data.get("released"), data.get("error"), data.get("last_error")
    if not (isinstance(worker, str) and isinstance(token, str) and _is_int(attempt) and _is_int(failures)):
        return None
    if not (_is_number(lease) and _is_number(claimed) and _is_number(renewed)):
        return None
    if not (released is None or released in RELEASE_OUTCOMES):
        return None
    if not (_is_text(error) and _is_text(last_error)):
        return None
    times = float(lease), float(claimed), float(renewed)
    return Claim(role, name, worker, token, attempt, failures, *times, path, released, error, last_error)


def _read_result(path: Path, role: str, name: str) -> Result | None:
    data = _read_json(path)
    if data is None or data.get("format") != FORMAT or data.get("role") != role or data.get("name") != name:
        return None
    status, value, worker = data.get("status"), data.get("value"), data.get("worker")
    attempt, when = data.get("attempt"), data.get("time")
    if status not in ("ok", "failed") or not (isinstance(value, dict) and isinstance(worker, str)):
        return None
    if not (_is_int(attempt) and _is_number(when)):
        return None
    return Result(role, name, str(status), value, worker, attempt, float(when))


def _is_text(value: object) -> TypeGuard[str | None]:
    return value is None or isinstance(value, str)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _jsonable(value: Any) -> Any:
    """`value` as plain JSON data: non-finite floats become None, tuples lists, unknown objects their str."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return str(value)


def _listing(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _subfolders(folder: Path) -> list[str]:
    """The names in `folder` that are valid roles and folders."""
    return sorted(n for n in _listing(folder) if _LABEL.fullmatch(n) and (folder / n).is_dir())


def _is_int(value: object) -> TypeGuard[int]:
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

    Temporary file in the same folder, fsync, rename over `path`, fsync the folder. The temporary
    name is unique per call: threads of one process (a watcher's lease renewal) never share one.
    """
    temp = _write_temporary(path, _json_bytes(data))
    os.replace(temp, path)
    fsync_dir(path.parent)


def _create_exclusively(path: Path, data: Mapping[str, Any], tries: int = 3) -> bool:
    """Create `path` holding `data` unless it exists; True when this call created it.

    The content goes to a temporary file first (fsynced), which is then hard-linked to `path`:
    `link` fails when the name exists, atomically on the NFS server too, and readers never see the
    file half-written. Over NFS a LINK whose reply was lost is sent again and answers EEXIST
    although the first one worked: the content (which holds a unique token or time) tells.
    """
    payload = _json_bytes(data)
    temp = _write_temporary(path, payload)
    try:
        os.link(temp, path)
        created = True
    except FileExistsError:
        created = _holds(path, payload)
    except FileNotFoundError:
        # The trainer's clean_up took our temporary file for a crash's leftover (a stop request's
        # lies in the directory's root): write it again.
        if tries <= 1:
            raise
        return _create_exclusively(path, data, tries - 1)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    if created:
        fsync_dir(path.parent)
    return created


def _write_temporary(path: Path, payload: bytes) -> Path:
    temp = path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    with open(temp, "wb") as file:
        file.write(payload)
        file.flush()
        os.fsync(file.fileno())
    return temp


def _json_bytes(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, allow_nan=False).encode() + b"\n"


def _holds(path: Path, payload: bytes) -> bool:
    try:
        return path.read_bytes() == payload
    except OSError:
        return False


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
