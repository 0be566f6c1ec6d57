"""Running a training job on this machine: real torchrun agents on loopback, no cluster, no GPU needed.

`cajajejo train --local CONFIG` starts the same torchrun command a pod runs (`cajajejo.torchrun`), once
per simulated node, with the rendezvous on 127.0.0.1 and everything the job writes under one work
folder: checkpoints, scratch and (unless told to keep the config's) a local MLflow. The run is stamped
like a submitted job: the local commit (with -dirty) and the config's repository path.

Each agent runs in a session of its own, so Ctrl-C or SIGTERM here reaches every agent and its workers
as SIGTERM (torchrun forwards it; the built-in trainer then checkpoints and exits), and one failed
agent stops the others instead of leaving them waiting at a rendezvous.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cajajejo import runtime_contract as contract
from cajajejo.config.loader import load_training_config
from cajajejo.config.training import TrainingJobConfig
from cajajejo.errors import CajajejoError
from cajajejo.torchrun import torchrun_command

LOCAL_JOB_PREFIX = "local"
STOP_GRACE_SECONDS = 30.0  # how long agents get to checkpoint after SIGTERM before they are killed
COPY_GRACE_SECONDS = 5.0  # how long output still in the pipes gets to be copied once every process is gone
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class LocalRun:
    """What a local training run used, for the summary printed after it."""

    workdir: Path
    checkpoint_dir: Path
    tracking_uri: str
    job_name: str
    returncode: int


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def launcher() -> list[str]:
    """torchrun of this interpreter's environment: the one installed beside it, else its module."""
    beside = Path(sys.executable).parent / "torchrun"
    return [str(beside)] if beside.is_file() else [sys.executable, "-m", "torch.distributed.run"]


@dataclass(frozen=True)
class LocalProcess:
    """One process of a local run: what to start, with what env, and the label its output lines get."""

    argv: list[str]
    env: dict[str, str]
    label: str = ""  # when set, every output line is prefixed `[label] ` (a group's tasks share one terminal)
    cwd: Path | None = None
    log: Path | None = None  # when set, every output line is written here too, without its prefix


@dataclass(frozen=True)
class TrainingLaunch:
    """A training job's local agents, not started yet, and what the run will use."""

    processes: list[LocalProcess]
    checkpoint_dir: Path
    tracking_uri: str
    job_name: str


def local_training(
    config: Path,
    *,
    workdir: Path,
    nnodes: int = 1,
    nproc_per_node: int | None = None,
    trainer_args: Sequence[str] = (),
    tracking_uri: str | None = None,
    checkpoint_dir: Path | None = None,
    job_name: str | None = None,
    environ: Mapping[str, str] | None = None,
    label: str = "",
    stamped_as: Path | None = None,
) -> TrainingLaunch:
    """CONFIG's job as `nnodes` local torchrun agents; `tracking_uri` None: a local MLflow in `workdir`.

    `stamped_as`: the file whose commit and repository path stamp the run (default CONFIG; a group's
    inline config is stamped as its group file).
    """
    loaded = load_training_config(config)
    job = loaded.config
    workdir = workdir.resolve()
    checkpoint_dir = checkpoint_dir or workdir / "checkpoints"
    job_name = job_name or f"{LOCAL_JOB_PREFIX}-{config.stem.replace('.', '-')}"
    env = dict(os.environ if environ is None else environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # what torchrun would set anyway, without its warning
    tracking_uri = tracking_uri or f"sqlite:///{workdir / 'mlflow.db'}"
    env.update(_job_env(job, stamped_as or config, job_name, workdir, tracking_uri))
    args = list(trainer_args)
    if job.training.trainer is not None:
        args = ["--checkpoint-dir", str(checkpoint_dir), *args]
    port = free_port()
    processes = [
        LocalProcess(
            torchrun_command(
                job,
                node_rank=str(rank),
                rendezvous_host="127.0.0.1",
                rendezvous_port=port,
                run_id=job_name,
                config_path=str(config),
                nnodes=nnodes,
                nproc_per_node=nproc_per_node,
                launcher=launcher(),
                trainer_args=args,
            ),
            env,
            f"{label}-{rank}" if label and nnodes > 1 else label,
        )
        for rank in range(nnodes)
    ]
    (workdir / "scratch").mkdir(parents=True, exist_ok=True)
    return TrainingLaunch(processes, checkpoint_dir, tracking_uri, job_name)


def run_training_locally(
    config: Path,
    *,
    workdir: Path,
    nnodes: int = 1,
    nproc_per_node: int | None = None,
    trainer_args: Sequence[str] = (),
    keep_tracking_uri: bool = False,
    environ: Mapping[str, str] | None = None,
) -> LocalRun:
    """Run CONFIG's job here as `nnodes` local torchrun agents; returns when all have ended."""
    tracking_uri = load_training_config(config).config.mlflow_config.tracking_uri if keep_tracking_uri else None
    launch = local_training(
        config,
        workdir=workdir,
        nnodes=nnodes,
        nproc_per_node=nproc_per_node,
        trainer_args=trainer_args,
        tracking_uri=tracking_uri,
        environ=environ,
    )
    returncode = run_processes(launch.processes)
    return LocalRun(workdir.resolve(), launch.checkpoint_dir, launch.tracking_uri, launch.job_name, returncode)


def _job_env(job: TrainingJobConfig, config: Path, job_name: str, workdir: Path, tracking_uri: str) -> dict[str, str]:
    """What a pod's env would hold, for a run on this machine."""
    version, config_in_repo = _local_stamps(config)
    env = {
        **job.kubernetes_config.env,
        contract.ENV_CONFIG_VERSION: version,
        contract.ENV_CONFIG_PATH: config_in_repo,
        contract.ENV_JOB_NAME: job_name,
        contract.ENV_SCRATCH_DIR: str(workdir / "scratch"),
        contract.ENV_MLFLOW_TRACKING_URI: tracking_uri,
    }
    model = job.training.trainer.model if job.training.trainer is not None else None
    if model is not None and model.type == "causal_lm" and model.local_files_only:
        env["HF_HUB_OFFLINE"] = "1"
        env["TRANSFORMERS_OFFLINE"] = "1"
    return env


def _local_stamps(config: Path) -> tuple[str, str]:
    """The local commit (with -dirty) and the config's repository path; placeholders outside a repository."""
    try:
        from cajajejo.provenance import provenance_for

        stamps = provenance_for(config, allow_dirty=True)
        return stamps.config_version, stamps.config_path
    except CajajejoError:
        return "unversioned", str(config)


def run_processes(processes: Sequence[LocalProcess]) -> int:
    """Start every process, wait for all; the first failure (or a signal here) stops the rest.

    Returns the run's outcome: 0 when all exited 0, else the exit code of the process that failed
    first (in time; 128+N for one killed by signal N), or 130 (Ctrl-C) or 143 (SIGTERM) when this
    process was told to stop before any failed. Each process runs in a session of its own (its children
    with it), so stopping reaches a whole torchrun agent or shell script, even after its leader has gone.
    """
    outcome = _Outcome()
    started: list[_Started] = []
    previous = {number: signal.signal(number, outcome.interrupted) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        for process in processes:
            started.append(_Started.start(process))  # one by one: those started before a failed start are stopped
        _wait_for_outcome(started, outcome)
    finally:
        _stop(started, outcome)
        for number, handler in previous.items():
            signal.signal(number, handler)
    return outcome.code or 0


class _Outcome:
    """What decides a run's exit status: the first thing to go wrong, in time."""

    def __init__(self) -> None:
        self.code: int | None = None
        self.signals = 0  # how many Ctrl-C or SIGTERM this process got: one more while stopping hurries it

    def interrupted(self, number: int, frame: object) -> None:
        self.signals += 1
        self.failed(128 + number)

    def failed(self, code: int) -> None:
        if self.code is None:
            self.code = code


def _exit_status(returncode: int) -> int:
    """A shell's way: Popen's -N for a process killed by signal N is 128+N."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass(frozen=True)
class _Started:
    """A started process, its process group (its pid: it leads a session) and the thread copying its output."""

    process: subprocess.Popen[bytes]
    copier: threading.Thread | None

    @classmethod
    def start(cls, spec: LocalProcess) -> _Started:
        """Start one process; a labelled or logged one's output goes through a thread (see `_copy_lines`)."""
        if not spec.label and spec.log is None:
            return cls(subprocess.Popen(spec.argv, env=spec.env, cwd=spec.cwd, start_new_session=True), None)
        log = None
        if spec.log is not None:
            spec.log.parent.mkdir(parents=True, exist_ok=True)
            log = spec.log.open("wb")  # there from the start, so a task that prints nothing has one too
        child = subprocess.Popen(
            spec.argv,
            env=spec.env,
            cwd=spec.cwd,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert child.stdout is not None
        prefix = f"[{spec.label}] ".encode() if spec.label else b""
        copier = threading.Thread(target=_copy_lines, args=(child.stdout, prefix, log), daemon=True)
        copier.start()
        return cls(child, copier)

    def alive(self, groups: set[int] | None) -> bool:
        """Whether the leader runs, or its group still holds a process (`groups`: see `_live_groups`)."""
        if self.process.poll() is None:
            return True
        if groups is not None:
            return self.process.pid in groups
        try:  # no /proc: the kernel says, counting a zombie no one reaps as alive (until the grace ends)
            os.killpg(self.process.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def signal(self, number: int) -> None:
        # The whole group, even when its leader has exited: what it left running (`server &`) is in it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, number)


def _wait_for_outcome(started: list[_Started], outcome: _Outcome) -> None:
    """Until every leader has exited, or one failed, or this process was told to stop."""
    while outcome.code is None:
        codes = [each.process.poll() for each in started]  # every one, each pass: any may fail first
        for code in codes:
            if code:
                outcome.failed(_exit_status(code))
        if None not in codes:
            return
        time.sleep(POLL_SECONDS)


def _stop(started: list[_Started], outcome: _Outcome) -> None:
    """SIGTERM what is still running, SIGKILL what is left after the grace (or at one more Ctrl-C).

    Then the copying threads finish what the pipes still hold; a process that left its group (a
    daemon) may keep its pipe open, so they get a few seconds and are left behind after that.
    """
    signals_before = outcome.signals
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    groups = _live_groups()
    running = [each for each in started if each.alive(groups)]
    for each in running:
        each.signal(signal.SIGTERM)
    while running and time.monotonic() < deadline and outcome.signals == signals_before:
        time.sleep(POLL_SECONDS / 2)
        groups = _live_groups()
        running = [each for each in running if each.alive(groups)]
    for each in running:
        each.signal(signal.SIGKILL)
    copied_by = time.monotonic() + COPY_GRACE_SECONDS
    for each in started:
        with contextlib.suppress(subprocess.TimeoutExpired):
            each.process.wait(timeout=max(0.0, copied_by - time.monotonic()))
        if each.copier is not None:
            each.copier.join(timeout=max(0.0, copied_by - time.monotonic()))


def _live_groups() -> set[int] | None:
    """The process groups that hold a process that is not a zombie; None where there is no /proc.

    Zombies do not count: a task's orphan is reaped by init, which in some containers never happens,
    and a group of zombies holds nothing (no pipe, no file) that stopping would release.
    """
    proc = Path("/proc")
    if not (proc / "self" / "stat").is_file():
        return None
    groups = set()
    for stat in proc.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):  # the process ended while we looked
            # After the command (in parentheses, and it may hold any character): state, ppid, pgrp, ...
            state, _, group = stat.read_text().rpartition(")")[2].split()[:3]
            if state != "Z":
                groups.add(int(group))
    return groups


def _copy_lines(source: IO[bytes], prefix: bytes, log: IO[bytes] | None) -> None:
    """Copy `source` line by line to stdout, each line prefixed, and as it is to `log`.

    One write per line keeps lines of different processes whole. A line without its newline (the
    last one of a process killed mid-line) gets one.
    """
    with source:
        for line in iter(source.readline, b""):
            whole = line if line.endswith(b"\n") else line + b"\n"
            if log is not None:
                log.write(whole)
                log.flush()  # readable while the run goes on (tail -f)
            _write_stdout(prefix + whole)
    if log is not None:
        log.close()


_OUTPUT_LOCK = threading.Lock()


def _write_stdout(data: bytes) -> None:
    with _OUTPUT_LOCK:
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except (OSError, ValueError):  # a broken pipe, mostly; a closed or lost terminal too
            _discard_stdout()


def _discard_stdout() -> None:
    """Send what is still to come on stdout to /dev/null: its reader has gone (`... | head`).

    The run goes on as if it were still read: a task must never block on a full pipe (nor its copying
    thread die), the log files stay whole, and the summary printed after the run does not fail either.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with contextlib.suppress(OSError, ValueError):  # no file descriptor (captured): each write fails alone
            os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
