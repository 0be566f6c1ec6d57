"""A workflow's folder on the cluster's shared filesystem, and `state.json`, the record of what it did.

    <workdir>/
      workflow.json          the plan, the inputs' provenance and, once submitted, each job's Slurm id
      state.json             rebuilt by every job when it ends: jobs finished, checkpoints, metric files
      inputs/                the configs every job reads (copied at submission: later edits change nothing)
      jobs/<job>/job.sbatch  each job's batch script; jobs/<job>/finished.json once it has succeeded
      checkpoints/           the training's checkpoint directory (`cajajejo.checkpoints`), shared by all segments
      metrics/epoch_NNN.json each epoch's evaluation result
      logs/<job>-<id>.out    each job's output (a requeued job appends to its file)

No process watches the workflow: each job writes what it did into the folder as it ends, and
`state.json` is rebuilt from the folder under a lock, so two jobs ending at once both appear in it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cajajejo.backends.slurm_jobs import CHECKPOINTS_DIR, JOBS_DIR  # the layout single Slurm jobs have too
from cajajejo.checkpoints import CheckpointDir
from cajajejo.files import write_text_atomically

WORKFLOW_FILE = "workflow.json"
STATE_FILE = "state.json"
INPUTS_DIR = "inputs"
METRICS_DIR = "metrics"
FINISHED_FILE = "finished.json"
_LOCK_FILE = ".state.lock"


def metrics_file(workdir: str, epoch: int) -> str:
    return f"{workdir}/{METRICS_DIR}/epoch_{epoch:03d}.json"


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def record_finished(workdir: Path, job_name: str) -> dict[str, Any]:
    """Called by a job as its last step, once its work succeeded: mark it finished, rebuild state.json."""
    plan = _read_json(workdir / WORKFLOW_FILE)
    if plan is None:
        raise FileNotFoundError(f"{workdir / WORKFLOW_FILE} is missing: not a workflow folder")
    if job_name not in {job["name"] for job in plan["jobs"]}:
        raise ValueError(f"{job_name!r} is not a job of workflow {plan['name']}")
    marker = {
        "job": job_name,
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "restarts": int(os.environ.get("SLURM_RESTART_COUNT") or 0),
        "finished_at": time.time(),
    }
    write_text_atomically(workdir / JOBS_DIR / job_name / FINISHED_FILE, to_json(marker))
    return rebuild_state(workdir)


def rebuild_state(workdir: Path) -> dict[str, Any]:
    """state.json from what the folder holds now; under a lock, so that the last writer saw everything."""
    with _locked(workdir / _LOCK_FILE):
        state = read_state(workdir)
        write_text_atomically(workdir / STATE_FILE, to_json(state))
    return state


def read_state(workdir: Path) -> dict[str, Any]:
    """The workflow as its folder describes it (what state.json holds)."""
    plan = _read_json(workdir / WORKFLOW_FILE) or {}
    ids = plan.get("slurm_job_ids") or {}
    checkpoints = CheckpointDir(workdir / CHECKPOINTS_DIR)
    published = checkpoints.published()
    jobs = []
    for job in plan.get("jobs", []):
        finished = _read_json(workdir / JOBS_DIR / job["name"] / FINISHED_FILE)
        jobs.append({**job, "slurm_job_id": ids.get(job["name"]), "finished": finished})
    metric_files = sorted(str(path) for path in (workdir / METRICS_DIR).glob("epoch_*.json"))
    return {
        "workflow": plan.get("name"),
        "total_steps": plan.get("epochs", 0) * plan.get("epoch_steps", 0),
        "trained_steps": published[-1].step if published else 0,
        "complete": bool(jobs) and all(job["finished"] for job in jobs),
        "jobs": jobs,
        "checkpoints": [
            {"name": c.name, "step": c.step, "path": str(c.path), "published_at": c.time} for c in published
        ],
        "metrics_files": metric_files,
        "updated_at": time.time(),
    }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # flock is honoured across NFS clients by NFSv4 (and by v3 with lockd); state.json is a summary that
    # `workflows status` can always rebuild, so a filesystem without locks loses at worst one refresh.
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as exc:  # ENOSYS, ENOLCK (a Lustre mounted noflock, an NFS without lockd)
            print(f"cajajejo: {path}: no lock ({exc.strerror}); state.json rebuilt without one", file=sys.stderr)
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
