"""The jobs on a backend, as `cajajejo jobs list|status|delete` show and end them.

Every backend keeps the same small contract (`JobBackend`); what differs is how a job is named
(Kubernetes: its Job name in a namespace; Slurm: the id sbatch printed) and what "delete" means
(Kubernetes deletes the Job, its pods and what it owns; Slurm cancels a job that has not ended and
keeps its files and logs). Planning and submitting go through `cajajejo.submission`, one use case per
backend behind the same git gate and stamps; logs through `cajajejo.log_output` (Cloud Logging) and
`cajajejo.backends.slurm_jobs.follow_log` (the job's output file).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from cajajejo.backends import slurm_jobs
from cajajejo.backends.slurm import SlurmCluster


class JobBackend(Protocol):
    """1. `list_jobs`: one line per job cajajejo can see there, newest first where the backend knows.
    2. `job_status`: lines describing one job; ClusterError/SlurmError when the backend does not know it.
    3. `end_job`: stop the job and free what it holds; returns what was ended or deleted (nothing for a
       job that had already ended and has nothing left to delete)."""

    def list_jobs(self) -> list[str]: ...

    def job_status(self, job: str) -> list[str]: ...

    def end_job(self, job: str) -> list[str]: ...


class KubernetesJobs:
    def __init__(self, cluster: Any, namespace: str) -> None:
        self.cluster = cluster  # a KubernetesCluster
        self.namespace = namespace

    def list_jobs(self) -> list[str]:
        summaries = self.cluster.list_jobs(self.namespace)
        if not summaries:
            return [f"no cajajejo jobs in namespace {self.namespace}"]
        lines = [f"{'NAME':<45} {'KIND':<11} {'STATE':<10} {'CREATED':<26} CONFIG VERSION"]
        for job in summaries:
            lines.append(
                f"{job.name:<45} {job.kind:<11} {job.state:<10} {job.created or '-':<26} {job.config_version or '-'}"
            )
        return lines

    def job_status(self, job: str) -> list[str]:
        summary = self.cluster.job_status(job, self.namespace)
        pods = f"; {summary.completions} pods" if summary.completions > 1 else ""
        lines = [
            f"{summary.kind} job {summary.name} in {summary.namespace}: {summary.state}{pods}",
            f"  active {summary.active}, succeeded {summary.succeeded}, failed {summary.failed}; "
            f"created {summary.created or '-'}",
            f"  config version {summary.config_version or '-'}",
        ]
        for pod in summary.pods:
            rank = f" (rank {pod.rank})" if pod.rank is not None else ""
            lines.append(f"  pod {pod.name}{rank}: {pod.phase}" + (f" ({pod.reason})" if pod.reason else ""))
        return lines

    def end_job(self, job: str) -> list[str]:
        return list(self.cluster.delete_job(job, self.namespace))


class SlurmJobs:
    def __init__(self, cluster: SlurmCluster) -> None:
        self.cluster = cluster

    def list_jobs(self) -> list[str]:
        states = self.cluster.queued_jobs()
        if not states:
            return [f"no queued or recent Slurm jobs of yours on {self.cluster.host.name}"]
        lines = [f"{'JOB ID':<10} {'NAME':<45} {'STATE':<12} {'START':<20} END"]
        for state in sorted(states, key=_newest_first):
            lines.append(
                f"{state.job_id:<10} {state.name:<45} {state.state:<12} {state.start or '-':<20} {state.end or '-'}"
            )
        return lines

    def job_status(self, job: str) -> list[str]:
        return slurm_jobs.status_lines(self.cluster, job)

    def end_job(self, job: str) -> list[str]:
        return slurm_jobs.cancel_job(self.cluster, job)


def _newest_first(state: Any) -> tuple[int, str]:
    """Array and heterogeneous jobs print ids like 5001_[1-4] or 123+0: sorted by their leading number."""
    match = re.match(r"\d+", state.job_id)
    return (-int(match[0]) if match else 0, state.job_id)
