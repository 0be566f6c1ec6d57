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

    Returns 0 when all exited 0, else the first non-zero exit code. Each process runs in a session of
    its own (its children with it), so stopping reaches a whole torchrun agent or shell script.
    """
    running = [_start(process) for process in processes]
    agents = [agent for agent, _ in running]
    stopping = False

    def stop(number: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        _signal_all(agents, signal.SIGTERM)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        while any(agent.poll() is None for agent in agents):
            failed = [agent for agent in agents if agent.returncode not in (None, 0)]
            if failed and not stopping:
                stopping = True
                _signal_all(agents, signal.SIGTERM)
            time.sleep(0.2)
    finally:
        _stop_within_grace(agents)
        for number, handler in previous.items():
            signal.signal(number, handler)
        for _, copier in running:
            if copier is not None:
                copier.join()
    codes = [agent.returncode for agent in agents]
    return next((code for code in codes if code != 0), 0)


def _start(process: LocalProcess) -> tuple[subprocess.Popen[bytes], threading.Thread | None]:
    """Start one process; a labelled one's output goes through a thread that prefixes each line."""
    if not process.label:
        return subprocess.Popen(process.argv, env=process.env, cwd=process.cwd, start_new_session=True), None
    child = subprocess.Popen(
        process.argv,
        env=process.env,
        cwd=process.cwd,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert child.stdout is not None
    copier = threading.Thread(target=_copy_lines, args=(child.stdout, f"[{process.label}] ".encode()), daemon=True)
    copier.start()
    return child, copier


def _copy_lines(source: IO[bytes], prefix: bytes) -> None:
    """Copy `source` to stdout line by line, each line prefixed; one write per line keeps lines whole."""
    out = sys.stdout.buffer
    for line in iter(source.readline, b""):
        with _OUTPUT_LOCK:
            out.write(prefix + line if line.endswith(b"\n") else prefix + line + b"\n")
            out.flush()
    source.close()


_OUTPUT_LOCK = threading.Lock()


def _signal_all(agents: list[subprocess.Popen[bytes]], number: int) -> None:
    for agent in agents:
        if agent.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(agent.pid, number)


def _stop_within_grace(agents: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for agent in agents:
        try:
            agent.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_all([agent], signal.SIGKILL)
            agent.wait()
