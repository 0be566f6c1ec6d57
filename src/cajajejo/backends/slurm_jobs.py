"""A job config on Slurm: plan, submit, status, logs, cancel (the Slurm side of `cajajejo jobs ...`).

A job lives in the Slurm workdir (a folder every node sees), laid out as workflows lay out theirs:

    <workdir>/jobs/<job name>/   the config file(s) the job reads (copied: later edits change nothing)
                                 and job.sbatch, its batch script
    <workdir>/logs/<job name>-<job id>.out   everything the job printed (a requeued run appends)
    <workdir>/checkpoints/<job name>/        a training job's checkpoints (its requeued runs resume there)

Slurm's job id is the job's handle for status, logs and cancel; the name is what it was submitted as.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from cajajejo import runtime_contract
from cajajejo.backends.slurm import SlurmCluster, SlurmError
from cajajejo.config.common import JobConfigBase
from cajajejo.config.slurm import SlurmSettings
from cajajejo.errors import Problem, UserInputError
from cajajejo.render.plan import Provenance
from cajajejo.render.slurm import render_slurm_script

JOBS_DIR = "jobs"
LOGS_DIR = "logs"
CHECKPOINTS_DIR = "checkpoints"
SCRIPT_FILE = "job.sbatch"
CONFIG_FILES = {"training": "train_config.yml", "evaluation": "eval_config.yml"}
RUN_SPECS_FILE = "run_specs.conf"


def job_dir(workdir: str, job_name: str) -> str:
    return f"{workdir}/{JOBS_DIR}/{job_name}"


@dataclass(frozen=True)
class SlurmJobPlan:
    """A rendered, checked job for Slurm: the files it needs on the cluster (path → text) and its script."""

    job_name: str
    kind: str
    workdir: str
    files: dict[str, str]
    script_path: str

    @property
    def script(self) -> str:
        return self.files[self.script_path]

    @property
    def title(self) -> str:
        return f"{self.kind} job {self.job_name}"


def plan_slurm_job(
    config: JobConfigBase,
    config_text: str,
    settings: SlurmSettings,
    *,
    kind: str,
    job_name: str,
    provenance: Provenance,
    run_specs_text: str | None = None,
    source: str,
) -> SlurmJobPlan:
    """The job's files and batch script; `settings` must have their workdir settled (`with_defaults`)."""
    folder = job_dir(settings.shared_dir, job_name)
    config_path = f"{folder}/{CONFIG_FILES[kind]}"
    files = {config_path: config_text}
    stamps = {
        runtime_contract.ENV_CONFIG_VERSION: provenance.config_version,
        runtime_contract.ENV_CONFIG_PATH: provenance.config_path,
    }
    helm_config_path = None
    if run_specs_text is not None:
        helm_config_path = f"{folder}/{RUN_SPECS_FILE}"
        files[helm_config_path] = run_specs_text
        stamps[runtime_contract.ENV_HELM_CONFIG_PATH] = provenance.helm_config_path
    script = render_slurm_script(
        config,
        settings,
        job_name=job_name,
        config_path=config_path,
        provenance_env=stamps,
        helm_config_path=helm_config_path,
        source=source,
    )
    script_path = f"{folder}/{SCRIPT_FILE}"
    files[script_path] = script
    return SlurmJobPlan(job_name, kind, settings.shared_dir, files, script_path)


def submit_slurm_job(plan: SlurmJobPlan, cluster: SlurmCluster, *, dry_run: bool = False) -> str | None:
    """Check the script with `sbatch --test-only`, then (unless `dry_run`, which writes nothing on the
    cluster) write the job's files and queue it; the job id."""
    cluster.check(plan.script, what=plan.title)
    if dry_run:
        return None
    host = cluster.host
    for folder in (LOGS_DIR, CHECKPOINTS_DIR):
        host.make_dirs(f"{plan.workdir}/{folder}")
    for path, text in plan.files.items():
        host.write_file(path, text)
    return cluster.submit(plan.script_path, workdir=plan.workdir)


def status_lines(cluster: SlurmCluster, job_id: str) -> list[str]:
    state = cluster.states([_job_id(job_id)]).get(job_id)
    if state is None:
        raise SlurmError(f"Slurm on {cluster.host.name} does not know job {job_id} (or no longer: see sacct)")
    waiting = f" ({state.reason})" if state.reason and state.state == "PENDING" else ""
    return [
        f"slurm job {job_id} ({state.name}) on {cluster.host.name}: {state.state}{waiting}",
        f"  started {state.start or '-'}, ended {state.end or '-'}",
    ]


def cancel_job(cluster: SlurmCluster, job_id: str) -> list[str]:
    """Cancel the job unless it has ended; what was cancelled."""
    state = cluster.states([_job_id(job_id)]).get(job_id)
    if state is None:
        raise SlurmError(f"Slurm on {cluster.host.name} does not know job {job_id}")
    if state.final:
        return []
    cluster.cancel([job_id])
    return [f"slurm job {job_id} ({state.name})"]


def log_path(cluster: SlurmCluster, job_id: str, workdir: str | None) -> str:
    """Where the job's output is: Slurm says while it holds the job; after that, `workdir`'s logs/."""
    result = cluster.host.run(["scontrol", "-o", "show", "job", _job_id(job_id)], env=cluster.env or None)
    for field in result.stdout.split() if result.returncode == 0 else []:
        if field.startswith("StdOut="):
            return field.removeprefix("StdOut=")  # scontrol shows it with %x and %j filled in
    if workdir is None:
        raise UserInputError(
            Problem("--workdir", f"Slurm no longer holds job {job_id}: say which Slurm workdir its logs are in")
        )
    listing = cluster.host.run(["find", f"{workdir}/{LOGS_DIR}", "-maxdepth", "1", "-name", f"*-{job_id}.out"])
    found = sorted(listing.stdout.split())
    if not found:
        raise UserInputError(Problem("--workdir", f"no log of job {job_id} in {workdir}/{LOGS_DIR}"))
    return found[0]


def follow_log(
    cluster: SlurmCluster, job_id: str, path: str, *, follow: bool, poll_seconds: float = 1.0
) -> Iterator[bytes]:
    """The job's output from the start; with `follow`, new output as it comes, until the job has ended."""
    offset = 0
    while True:
        ended = not follow or _ended(cluster, job_id)
        data = cluster.host.read_bytes_from(path, offset) or b""
        if data:
            offset += len(data)
            yield data
        if ended:  # looked at before the last read: nothing the job printed is missed
            return
        time.sleep(poll_seconds)


def _ended(cluster: SlurmCluster, job_id: str) -> bool:
    state = cluster.states([job_id]).get(job_id)
    return state is None or state.final


def _job_id(job_id: str) -> str:
    if not job_id.isdigit():
        raise UserInputError(Problem("JOB", f"{job_id!r} is not a Slurm job id (a number, as sbatch printed it)"))
    return job_id
