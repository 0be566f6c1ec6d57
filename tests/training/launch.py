"""Helpers for the trainer tests: a small training config, real torchrun launches, and killing them.

torchrun starts each worker in a session of its own, so "the whole process group" of a training job
is torchrun plus its workers: `kill_job` signals all of them, workers first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from cajajejo.checkpoints import CheckpointDir
from cajajejo.training.trainer import STEP_DELAY_ENV

TORCHRUN = Path(sys.executable).with_name("torchrun")
EXPERIMENT = "training-tests"  # the session's MLflow server is shared: evaluation tests use their own names
CONFIG_SHA = "89abcdef0123456789abcdef0123456789abcdef"


def training_config(**trainer: Any) -> dict[str, Any]:
    """A config for the built-in trainer: by default a small classifier, 2 epochs of 32 steps on 2 ranks."""
    model = trainer.pop("model", {"type": "classifier", "samples": 1024, "features": 16, "hidden": 32, "classes": 4})
    checkpoints = trainer.pop("checkpoints", {"every_steps": 5, "keep_last": 2})
    return {
        "version": "v4",
        "kind": "training",
        "image": "registry.example.com/ml-platform/training",
        "image_tag": "test",
        "compute_config": {"cpu": "2", "memory": "4Gi"},
        "training": {
            "nproc_per_node": 2,
            "trainer": {"model": model, "epochs": 2, "batch_size": 16, "learning_rate": 0.01, "seed": 7, **trainer},
            "checkpoints": {"directory": "/out/checkpoints", **checkpoints},
        },
        "mlflow_config": {"tracking_uri": "http://127.0.0.1:5000"},
        "tracking_config": {"experiment_name": EXPERIMENT, "run_name": "ddp", "tags": {"team": "tests"}},
    }


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def job_env(tmp: Path, tracking_uri: str | None = None, step_delay: float | None = None) -> dict[str, str]:
    """The environment of a training job's processes: offline, provenance stamps, MLflow when given."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp / "hf-home"),
        "OMP_NUM_THREADS": "1",
        "CONFIG_VERSION": CONFIG_SHA,
        "CONFIG_PATH_GIT_REPO": "jobs/training/test.job_config.yml",
        "JOB_NAME": "train-test-job",
        "TORCHELASTIC_ERROR_FILE": str(tmp / "torchelastic-error.json"),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    if step_delay:
        env[STEP_DELAY_ENV] = str(step_delay)
    return env


@dataclass
class Job:
    """A running torchrun job, its output going to a file."""

    process: subprocess.Popen[bytes]
    log: Path

    def wait(self, timeout: float = 120) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        return code, self.log.read_text()


def start_torchrun(config: Path, checkpoints: Path, env: dict[str, str], *args: str, nproc: int = 2) -> Job:
    """`torchrun --standalone --nproc-per-node N -m cajajejo.training ...` (standalone: c10d on a free port)."""
    log = checkpoints.parent / f"torchrun-{time.monotonic_ns()}.log"
    command = [
        str(TORCHRUN),
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "-m",
        "cajajejo.training",
        "--config",
        str(config),
        "--checkpoint-dir",
        str(checkpoints),
        *args,
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    return Job(process, log)


def run_torchrun(config: Path, checkpoints: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    return start_torchrun(config, checkpoints, env, *args).wait()


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc: no psutil here)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # the name in (...) may hold spaces
        if parent == pid:
            found.append(int(entry))
    return found


def workers(job: Job, count: int = 2, timeout: float = 60) -> list[int]:
    """The worker processes of a torchrun job, once all `count` have started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = children(job.process.pid)
        if len(found) >= count:
            return sorted(found)
        time.sleep(0.05)
    raise AssertionError(f"torchrun did not start {count} workers: {job.log.read_text()[-2000:]}")


def rank_of(pid: int) -> int:
    """The RANK torchrun gave worker `pid` (from its environment)."""
    for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if item.startswith(b"RANK="):
            return int(item[5:])
    raise AssertionError(f"process {pid} has no RANK")


def kill_job(job: Job) -> None:
    """SIGKILL torchrun and its workers at once, as a node failure or an OOM kill of the pod would."""
    for pid in [*children(job.process.pid), job.process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    job.process.wait(timeout=30)


def wait_for(condition: Callable[[], bool], what: str, job: Job, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if job.process.poll() is not None:
            raise AssertionError(f"the job ended before {what}: {job.log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def published_step(checkpoints: Path) -> int:
    latest = CheckpointDir(checkpoints).latest()
    return latest.step if latest else 0


def final_weights(checkpoints: Path) -> tuple[int, dict[str, torch.Tensor]]:
    """The step and the classifier weights of the newest published checkpoint."""
    latest = CheckpointDir(checkpoints).latest()
    assert latest is not None, f"no checkpoint published in {checkpoints}"
    return latest.step, torch.load(latest.path / "model.pt", weights_only=True)


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert different == [], f"weights differ in {different}"


def lines(output: str, prefix: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(prefix)]
