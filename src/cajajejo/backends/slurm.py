"""Slurm through its own commands (sbatch, squeue, sacct, scancel), run on a `Host`: this machine, or a
login node over SSH. Nothing here keeps state between calls: Slurm is the record of what was submitted.

What callers can rely on:

1. `submit` returns the job id once sbatch accepted the script, or raises SlurmError with sbatch's own
   message (one line); `check` runs `sbatch --test-only`, which validates the script's options and
   resources against the cluster without queueing anything.
2. `states` knows a job from submission until long after it ended: squeue while slurmctld holds it
   (MinJobAge), then sacct (the accounting database), and on clusters without one, sacct's reading
   of the job-completion file (`sacct -c`). A job none of them knows has no entry.
3. `cancel` cancels what is still queued or running; ended jobs are left as they are.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cajajejo.backends.hosts import Host, LocalHost
from cajajejo.errors import CajajejoError, one_line

# What squeue and sacct print for a time not known yet (a pending job's end, say).
_NO_TIME = frozenset({"", "N/A", "Unknown", "None"})
_JOB_ID = re.compile(r"[0-9]+")
# Job states after which a job never runs again by itself.
FINAL_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
)


class SlurmError(CajajejoError):
    """A Slurm command failed; the message is the command's own, on one line."""


@dataclass(frozen=True)
class SlurmJobState:
    job_id: str
    name: str
    state: str  # PENDING, RUNNING, COMPLETED, ... (sacct's "CANCELLED by 0" is cut to CANCELLED)
    reason: str = ""  # why a pending job waits (squeue's %r), e.g. Dependency
    start: str | None = None  # ISO times as Slurm prints them (the cluster's local time)
    end: str | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


class SlurmCluster:
    """The Slurm cluster that `host` submits to. `env` is added to every command's environment (a test
    cluster's SLURM_CONF; over SSH the remote login shell's environment is used otherwise)."""

    def __init__(self, host: Host, env: Mapping[str, str] | None = None) -> None:
        self.host = host
        self.env = dict(env or {})

    def _run(self, argv: Sequence[str], what: str, *, input: str | None = None) -> str:
        result = self.host.run(argv, env=self.env or None, input=input)
        if result.returncode != 0:
            message = one_line(result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}")
            raise SlurmError(f"{what} on {self.host.name} failed: {message}")
        return result.stdout

    def check(self, script: str, *, what: str) -> None:
        """`sbatch --test-only` of the script's text (on stdin: nothing is written, nothing queued): the
        cluster accepts its options and resources and could run it."""
        self._run(["sbatch", "--test-only"], f"sbatch --test-only of {what}", input=script)

    def submit(self, script_path: str, *, workdir: str, after_ok: Iterable[str] = ()) -> str:
        """Queue `script_path` (run in `workdir`), after every job of `after_ok` has completed successfully.
        A job whose dependency can no longer be met (one failed) is cancelled, not left pending forever."""
        waits = [_checked_id(job_id) for job_id in after_ok]
        argv = ["sbatch", "--parsable", f"--chdir={workdir}"]
        if waits:
            argv += ["--dependency=afterok:" + ":".join(waits), "--kill-on-invalid-dep=yes"]
        output = self._run([*argv, script_path], f"sbatch {script_path}").strip()
        job_id = output.split(";")[0]  # --parsable prints "id" or "id;cluster"
        if not _JOB_ID.fullmatch(job_id):
            raise SlurmError(f"sbatch {script_path} on {self.host.name} printed no job id: {one_line(output)}")
        return job_id

    def states(self, job_ids: Iterable[str]) -> dict[str, SlurmJobState]:
        """What Slurm knows of each job (see the module docstring for where it looks)."""
        wanted = {_checked_id(job_id) for job_id in job_ids}
        if not wanted:
            return {}
        found = self._queued(wanted)
        missing = wanted - found.keys()
        if missing:
            found.update(self._accounted(missing))
        return found

    def queued_jobs(self) -> list[SlurmJobState]:
        """The user's jobs slurmctld still holds: queued, running, or ended within MinJobAge."""
        output = self._run(["squeue", "--me", "--noheader", "--states=all", "--format=%i|%j|%T|%r|%S|%e"], "squeue")
        found = []
        for line in output.splitlines():
            parts = line.split("|")
            if len(parts) == 6:
                job_id, name, state, reason, start, end = parts
                found.append(SlurmJobState(job_id, name, state, _reason(reason), _time(start), _time(end)))
        return found

    def _queued(self, wanted: set[str]) -> dict[str, SlurmJobState]:
        # All of the user's jobs, filtered here: squeue --jobs fails outright when one id is unknown.
        return {state.job_id: state for state in self.queued_jobs() if state.job_id in wanted}

    def _accounted(self, wanted: set[str]) -> dict[str, SlurmJobState]:
        argv = ["sacct", "--noheader", "--parsable2", "-X", "--jobs=" + ",".join(sorted(wanted, key=int))]
        fields = ["--format=JobID,JobName,State,Start,End"]
        result = self.host.run([*argv, *fields], env=self.env or None)
        if result.returncode != 0:  # no accounting database: the job-completion file, if the cluster keeps one
            result = self.host.run(["sacct", "-c", *argv[1:], *fields], env=self.env or None)
            if result.returncode != 0:
                return {}
        found: dict[str, SlurmJobState] = {}
        for line in result.stdout.splitlines():
            parts = line.split("|")
            if len(parts) == 5 and parts[0] in wanted:
                job_id, name, state, start, end = parts
                # A requeued job has a line per run: the last one is what it is now.
                found[job_id] = SlurmJobState(
                    job_id, name, state.split()[0] if state else "", "", _time(start), _time(end)
                )
        return found

    def cancel(self, job_ids: Iterable[str]) -> None:
        """Cancel the jobs; one that ended meanwhile is no error (scancel only warns about it)."""
        ids = [_checked_id(job_id) for job_id in job_ids]
        if ids:
            self._run(["scancel", *ids], "scancel")


def _checked_id(job_id: str) -> str:
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"{job_id!r} is not a Slurm job id")
    return job_id


def _time(text: str) -> str | None:
    return None if text.strip() in _NO_TIME else text.strip()


def _reason(text: str) -> str:
    return "" if text.strip() in ("None", "(null)") else text.strip()


def slurm_on(host: Host) -> SlurmCluster:
    """Slurm as `host` reaches it. On this machine, jobs find the same cajajejo as the command that
    submits them: its folder comes first on the PATH that sbatch passes on (`--export=ALL`, sbatch's
    default). On a login node, the remote login environment decides (cajajejo installed there)."""
    if isinstance(host, LocalHost):
        return SlurmCluster(host, {"PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])})
    return SlurmCluster(host)
