"""Where fetched log entries go: the terminal, a JSON Lines file or a JSON array file, as they arrive.

Files are written through `atomic_writer`: an interrupted or failed fetch leaves no file, and a
finished one appears whole. Entries are written one by one, so memory does not grow with the count.
While a file is being written, SIGTERM and SIGHUP unwind the fetch like Ctrl-C does, so that its
temporary file is removed too; only SIGKILL, which no process can catch, leaves it behind.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from cajajejo.errors import Problem, UserInputError
from cajajejo.files import atomic_writer
from cajajejo.logs import LogQuery, RetryPolicy, format_entry, lower_bound, make_client, read_entries, task_of
from cajajejo.settings import Settings
from cajajejo.termination import exit_cleanly_on_termination

FORMATS = {".jsonl": "jsonl", ".json": "json"}


def output_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserInputError(Problem("--output-path", f"{path}: name it .jsonl (JSON Lines) or .json (a JSON array)"))
    return fmt


@dataclass
class FetchSummary:
    count: int = 0
    first: str | None = None
    last: str | None = None
    tasks: list[str] = field(default_factory=list)  # the group tasks whose entries came, in order of first entry

    def group_hint(self, name: str, command: str = "cajajejo logs") -> str | None:
        """What to tell the user who read a group's tasks interleaved: how to read one (as SkyPilot says)."""
        if not self.tasks:
            return None
        count = f"{len(self.tasks)} task{'s' if len(self.tasks) > 1 else ''}"
        tasks = ", ".join(self.tasks)
        return f"Hint: this group has {count} ({tasks}). Use '{command} {name} --task TASK' to view one."


class Progress:
    """A count on stderr, redrawn at most a few times a second, only when stderr is a terminal."""

    def __init__(self, stream: TextIO | None = None, interval_s: float = 0.25) -> None:
        self._stream = stream or sys.stderr
        self._enabled = self._stream.isatty()
        self._interval_s = interval_s
        self._next = 0.0

    def update(self, count: int) -> None:
        if self._enabled and time.monotonic() >= self._next:
            self._next = time.monotonic() + self._interval_s
            self._stream.write(f"\rfetched {count:,} entries")
            self._stream.flush()

    def done(self) -> None:
        if self._enabled:
            self._stream.write("\r\033[K")
            self._stream.flush()


def write_entries(
    entries: Iterable[dict[str, Any]],
    *,
    output_path: Path | None = None,
    terminal: TextIO | None = None,
    progress: Progress | None = None,
    summary: FetchSummary | None = None,
    task_prefix: bool = False,
) -> FetchSummary:
    """Send each entry to the terminal (formatted; a group's with its task first when `task_prefix`) and/or
    `output_path` (as JSON), in order, counting them into `summary` (which shows how far it got if stopped)."""
    summary = summary if summary is not None else FetchSummary()
    if output_path is None:
        _drain(entries, None, None, terminal, progress, summary, task_prefix)
        return summary
    fmt = output_format(output_path)
    with exit_cleanly_on_termination(), atomic_writer(output_path) as handle:
        _drain(entries, handle, fmt, terminal, progress, summary, task_prefix)
    return summary


def _drain(
    entries: Iterable[dict[str, Any]],
    handle: TextIO | None,
    fmt: str | None,
    terminal: TextIO | None,
    progress: Progress | None,
    summary: FetchSummary,
    task_prefix: bool,
) -> None:
    separator = "[\n" if fmt == "json" else ""
    try:
        for entry in entries:
            if handle is not None:
                handle.write(separator + json.dumps(entry, ensure_ascii=False, separators=(",", ":")))
                separator = ",\n" if fmt == "json" else ""
                if fmt == "jsonl":
                    handle.write("\n")
            if terminal is not None:
                terminal.write(format_entry(entry, task_prefix=task_prefix) + "\n")
            task = task_of(entry)
            if task is not None and task not in summary.tasks:
                summary.tasks.append(task)
            summary.count += 1
            summary.first = summary.first or entry.get("timestamp")
            summary.last = entry.get("timestamp")
            if progress is not None:
                progress.update(summary.count)
        if handle is not None and fmt == "json":
            handle.write("[]\n" if summary.count == 0 else "\n]\n")
    finally:
        if progress is not None:
            progress.done()


def fetch_job_logs(
    job_name: str,
    *,
    settings: Settings,
    namespace: str | None = None,
    shift_unit: str = "days",
    shift_amount: int = 1,
    output_path: Path | None = None,
    follow: bool = False,
    quiet: bool = False,
    retry: RetryPolicy | None = None,
    rank: int | None = None,
    task: str | None = None,
    summary: FetchSummary | None = None,
) -> FetchSummary:
    """The use case behind `cajajejo logs` and `invoke get-job-logs`: check, query, stream, summarise.

    `job_name` is a job's or a group's; `task` reads one task of a group. `summary`, when given, is filled
    as entries come (so a caller still has it when the fetch is stopped)."""
    if follow and output_path is not None:
        raise UserInputError(Problem("--follow", "cannot be combined with --output-path; pipe to `tee` instead"))
    if output_path is not None:
        output_format(output_path)  # a bad name is an error before any request
    if quiet and output_path is None:
        raise UserInputError(Problem("--quiet", "needs --output-path, or nothing would be shown"))
    query = LogQuery(
        job_name=job_name,
        namespace=namespace or settings.get("namespace") or "default",
        since=lower_bound(shift_unit, shift_amount),
        cluster=settings.get("gke_cluster"),
        rank=rank,
        task=task,
    )
    client = make_client(settings.require("gcp_project", "read job logs"))
    entries = read_entries(client, query, follow=follow, retry=retry)
    return write_entries(
        entries,
        output_path=output_path,
        terminal=None if quiet else sys.stdout,
        progress=Progress() if output_path is not None else None,
        summary=summary,
        task_prefix=task is None,
    )
