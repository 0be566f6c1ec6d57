"""Following a submitted workflow from wherever it was submitted: what its folder and Slurm say."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cajajejo.backends.hosts import Host
from cajajejo.backends.slurm import SlurmCluster, SlurmJobState
from cajajejo.backends.slurm_jobs import CHECKPOINTS_DIR, job_dir
from cajajejo.checkpoints import HOLDS_DIR
from cajajejo.errors import Problem, UserInputError
from cajajejo.workflows.plan import EVALUATION_ROLE, TRAIN
from cajajejo.workflows.state import FINISHED_FILE, STATE_FILE, WORKFLOW_FILE


@dataclass(frozen=True)
class Workflow:
    workdir: str
    record: dict[str, Any]  # workflow.json
    finished: dict[str, dict[str, Any]]  # job name → its finished.json
    trained_steps: int | None  # the newest checkpoint's step, as state.json last said

    @property
    def job_ids(self) -> dict[str, str]:
        return dict(self.record.get("slurm_job_ids") or {})


def load_workflow(host: Host, workdir: str) -> Workflow:
    text = host.read_file(f"{workdir}/{WORKFLOW_FILE}")
    if text is None:
        raise UserInputError(Problem(workdir, f"no {WORKFLOW_FILE} on {host.name}: not a workflow folder"))
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("jobs"), list) or "name" not in record:
        raise UserInputError(Problem(f"{workdir}/{WORKFLOW_FILE}", "is not a workflow record (damaged?)"))
    finished = {}
    for job in record["jobs"]:
        marker = host.read_file(f"{job_dir(workdir, job['name'])}/{FINISHED_FILE}")
        if marker is not None:
            finished[job["name"]] = json.loads(marker)
    state_text = host.read_file(f"{workdir}/{STATE_FILE}")
    trained = json.loads(state_text).get("trained_steps") if state_text else None
    return Workflow(workdir, record, finished, trained)


def status_lines(workflow: Workflow, cluster: SlurmCluster) -> list[str]:
    record, ids = workflow.record, workflow.job_ids
    states = cluster.states(ids.values()) if ids else {}
    done = len(workflow.finished)
    total_steps = record["epochs"] * record["epoch_steps"]
    lines = [
        f"workflow {record['name']} in {workflow.workdir}: {done}/{len(record['jobs'])} jobs finished, "
        f"{workflow.trained_steps or 0}/{total_steps} steps trained"
        + ("" if ids else " (not submitted: no Slurm job ids)")
    ]
    lines.append(f"  {'JOB':<28} {'ID':<8} {'STEPS':<9} {'START':<20} {'END':<20} STATE")
    failed = []
    for job in record["jobs"]:
        job_id = ids.get(job["name"], "-")
        state = states.get(job_id)
        steps = f"{job['start_step'] + 1}-{job['end_step']}" if job["kind"] == TRAIN else f"@{job['end_step']}"
        if state is not None and state.final and state.state != "COMPLETED":
            failed.append(f"{job['name']} {state.state}")
        lines.append(
            f"  {job['name']:<28} {job_id:<8} {steps:<9} {(state.start if state else None) or '-':<20} "
            f"{(state.end if state else None) or '-':<20} {_state(state, job['name'] in workflow.finished)}"
        )
    if failed:
        logs = f"{workflow.workdir}/logs/<job>-<id>.out"
        lines.append(f"  did not complete: {', '.join(failed)} (their logs: {logs}); what waited on them is cancelled")
    return lines


def _state(state: SlurmJobState | None, finished: bool) -> str:
    if state is None:
        return "FINISHED" if finished else "UNKNOWN"
    waiting = f" ({state.reason})" if state.reason and state.state == "PENDING" else ""
    return f"{state.state}{waiting}"


def cancel_workflow(workflow: Workflow, cluster: SlurmCluster) -> list[str]:
    """Cancel the jobs that have not ended, and release the checkpoints held for evaluations that will
    not run now (or the trainer's pruning would keep them forever); returns the jobs' names."""
    ids = workflow.job_ids
    states = cluster.states(ids.values())
    live = {name: job_id for name, job_id in ids.items() if job_id in states and not states[job_id].final}
    cluster.cancel(live.values())
    holds = f"{workflow.workdir}/{CHECKPOINTS_DIR}/{HOLDS_DIR}/{EVALUATION_ROLE}"
    cluster.host.run(["rm", "-rf", "--", holds])
    return list(live)
