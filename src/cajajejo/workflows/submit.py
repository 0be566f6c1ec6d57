"""`cajajejo workflows train-eval`: check the inputs, render every job's batch script, then submit the
whole chain at once (see `workflows.plan` for its shape and `workflows.state` for its folder).

Everything that can be wrong with the inputs is found before the cluster is touched: the configs
are validated, the git gate is passed, every script is rendered and checked. On the cluster, the
scripts are checked with `sbatch --test-only` before the first job is queued, and if queueing fails
midway the jobs already queued are cancelled: a workflow is submitted whole or not at all.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cajajejo import runtime_contract
from cajajejo.backends.hosts import Host
from cajajejo.backends.slurm import SlurmCluster
from cajajejo.backends.slurm_jobs import CHECKPOINTS_DIR, LOGS_DIR, SCRIPT_FILE, job_dir
from cajajejo.config.loader import load_evaluation_config, load_training_config
from cajajejo.config.run_specs import load_run_specs
from cajajejo.config.slurm import SlurmSettings, has_component_word
from cajajejo.errors import Problem, UserInputError, one_line
from cajajejo.provenance import repository_stamps
from cajajejo.render.plan import UNKNOWN_PATH
from cajajejo.render.slurm import CheckpointToEvaluate, render_slurm_script
from cajajejo.settings import Settings
from cajajejo.workflows.plan import EVALUATION_ROLE, TRAIN, PlannedJob, WorkflowPlan, plan_train_eval
from cajajejo.workflows.state import INPUTS_DIR, METRICS_DIR, WORKFLOW_FILE, metrics_file, to_json

TRAIN_CONFIG = "train_config.yml"
EVAL_CONFIG = "eval_config.yml"
RUN_SPECS = "run_specs.conf"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
CLAIM_DIR = ".workflow"  # made by the submission that owns the folder (mkdir: one wins)


@dataclass(frozen=True)
class TrainEvalRequest:
    config: Path  # a training config with the built-in trainer
    eval_config: Path
    helm_config: Path
    epochs: int
    epoch_steps: int
    steps_per_job_cap: int
    workdir: str  # absolute, on the cluster's shared filesystem
    name: str
    workdir_from: str = "--workdir"  # where workdir came from, for errors
    train_partition: str | None = None
    eval_partition: str | None = None
    allow_dirty: bool = False
    stamp_evaluation_inputs: bool = True  # False: the evaluation inputs are cajajejo's own examples


@dataclass(frozen=True)
class PreparedWorkflow:
    """A workflow ready to submit: its plan and every file to write into its folder (path → text)."""

    plan: WorkflowPlan
    files: dict[str, str]
    provenance: dict[str, str]
    scripts: dict[str, str] = field(default_factory=dict)  # job name → its script's path

    def record(self, job_ids: Mapping[str, str] | None = None) -> str:
        """workflow.json: the plan, the inputs' provenance and (once submitted) the Slurm job ids."""
        data: dict[str, Any] = {**self.plan.to_dict(), "provenance": self.provenance, "created_at": time.time()}
        if job_ids is not None:
            data["slurm_job_ids"] = dict(job_ids)
        return to_json(data)


def default_name(config: Path) -> str:
    """`<first part of the config's file name>-<UTC time>`: slurm.debug.job_config.yml → slurm-20261127-031500."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "-", config.name.split(".")[0]).strip("-_") or "workflow"
    return f"{stem[:40]}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def prepare_train_eval(request: TrainEvalRequest, settings: Settings) -> PreparedWorkflow:
    """Validate, gate and render everything; raises UserInputError (one line per problem) before any I/O
    on the cluster."""
    if not _NAME.fullmatch(request.name) or has_component_word(request.name):
        raise UserInputError(
            Problem(
                "--name",
                f"{request.name!r} must be letters, digits, '_' and '-' (64 at most), without the words hetjob "
                "and packjob: it starts every job's Slurm name",
            )
        )
    training = load_training_config(request.config)
    if training.config.training.trainer is None:
        raise UserInputError(
            Problem(
                str(request.config),
                "a train-eval workflow runs the built-in trainer (it resumes and stops at exact steps); "
                "this config runs training.script",
                field="training.script",
            )
        )
    evaluation = load_evaluation_config(request.eval_config)
    load_run_specs(request.helm_config)
    stamped = [request.config, *((request.eval_config, request.helm_config) if request.stamp_evaluation_inputs else ())]
    version, repo_paths = repository_stamps(stamped, allow_dirty=request.allow_dirty)
    workdir = request.workdir
    train_settings = _settings(
        training.config.slurm, settings, request, request.train_partition, "--partition-train", str(request.config)
    )
    eval_settings = _settings(
        evaluation.config.slurm, settings, request, request.eval_partition, "--partition-eval", str(request.eval_config)
    )
    if not train_settings.requeue:
        raise UserInputError(
            Problem(
                str(request.config),
                "requeue: false: a workflow's training jobs go on after their time limit by requeueing; remove it",
                field="slurm.requeue",
            )
        )
    plan = plan_train_eval(
        request.name,
        workdir,
        epochs=request.epochs,
        epoch_steps=request.epoch_steps,
        steps_per_job_cap=request.steps_per_job_cap,
        train_partition=train_settings.partition,
        eval_partition=eval_settings.partition,
    )
    inputs = f"{workdir}/{INPUTS_DIR}"
    files = {
        f"{inputs}/{TRAIN_CONFIG}": training.text,
        f"{inputs}/{EVAL_CONFIG}": evaluation.text,
        f"{inputs}/{RUN_SPECS}": Path(request.helm_config).read_text(encoding="utf-8"),
    }
    provenance = {
        runtime_contract.ENV_CONFIG_VERSION: version,
        "training_config": repo_paths[request.config],
        "evaluation_config": repo_paths.get(request.eval_config, UNKNOWN_PATH),
        "helm_config": repo_paths.get(request.helm_config, UNKNOWN_PATH),
    }
    scripts = {}
    for job in plan.jobs:
        record = ["cajajejo", "workflows", "record", workdir, "--job", job.name]
        if job.kind == TRAIN:
            text = render_slurm_script(
                training.config,
                train_settings,
                job_name=job.name,
                config_path=f"{inputs}/{TRAIN_CONFIG}",
                provenance_env={
                    runtime_contract.ENV_CONFIG_VERSION: version,
                    runtime_contract.ENV_CONFIG_PATH: provenance["training_config"],
                },
                extra_trainer_args=_segment_arguments(job),
                checkpoint_dir=f"{workdir}/{CHECKPOINTS_DIR}",
                after_steps=[record],
                source=str(request.config),
            )
        else:
            text = render_slurm_script(
                evaluation.config,
                eval_settings,
                job_name=job.name,
                config_path=f"{inputs}/{EVAL_CONFIG}",
                helm_config_path=f"{inputs}/{RUN_SPECS}",
                provenance_env={
                    runtime_contract.ENV_CONFIG_VERSION: version,
                    runtime_contract.ENV_CONFIG_PATH: provenance["evaluation_config"],
                    runtime_contract.ENV_HELM_CONFIG_PATH: provenance["helm_config"],
                },
                checkpoint=CheckpointToEvaluate(
                    f"{workdir}/{CHECKPOINTS_DIR}", job.end_step, EVALUATION_ROLE, metrics_file(workdir, job.epoch)
                ),
                after_steps=[record],
                source=str(request.eval_config),
            )
        path = f"{job_dir(workdir, job.name)}/{SCRIPT_FILE}"
        files[path] = text
        scripts[job.name] = path
    return PreparedWorkflow(plan, files, provenance, scripts)


def _settings(
    section: SlurmSettings | None,
    settings: Settings,
    request: TrainEvalRequest,
    partition: str | None,
    partition_option: str,
    source: str,
) -> SlurmSettings:
    resolved = (section or SlurmSettings()).with_defaults(
        settings, workdir=request.workdir, workdir_from=request.workdir_from, source=source
    )
    return resolved if partition is None else _with_partition(resolved, partition, partition_option)


def _with_partition(settings: SlurmSettings, partition: str, option: str) -> SlurmSettings:
    from pydantic import ValidationError

    try:
        return SlurmSettings.model_validate({**settings.model_dump(exclude_unset=True), "partition": partition})
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise UserInputError(Problem(option, message)) from None


def _segment_arguments(job: PlannedJob) -> list[str]:
    """The trainer stops exactly at the segment's last step: a rerun (requeue) resumes and stops there too."""
    hold = ["--hold-for", EVALUATION_ROLE] if job.ends_epoch else []
    return ["--max-steps", str(job.end_step), *hold]


def write_workflow_folder(prepared: PreparedWorkflow, host: Host) -> None:
    """The workflow's folder on the cluster, before any job is queued: claimed first (a folder holds one
    workflow: a second one would share its checkpoints and overwrite its inputs), then its folders,
    inputs and scripts, and workflow.json without job ids (the jobs' last step reads the plan from it)."""
    workdir = prepared.plan.workdir
    host.make_dirs(workdir)
    # mkdir is atomic on every filesystem, NFS included: of two submissions into one folder, one wins.
    if host.run(["mkdir", "--", f"{workdir}/{CLAIM_DIR}"]).returncode != 0:
        raise UserInputError(
            Problem(workdir, "holds a workflow already: give another --workdir (or --name), or delete the folder")
        )
    for folder in (LOGS_DIR, CHECKPOINTS_DIR, METRICS_DIR):
        host.make_dirs(f"{workdir}/{folder}")
    for path, text in prepared.files.items():
        host.write_file(path, text)
    host.write_file(f"{workdir}/{WORKFLOW_FILE}", prepared.record())


def submit_workflow(prepared: PreparedWorkflow, cluster: SlurmCluster) -> dict[str, str]:
    """Check the scripts, write the folder, queue every job with its dependencies; the Slurm job ids by name.

    All or nothing: if a job cannot be queued, the ones queued before it are cancelled; if none was,
    the folder is released, so submitting again into it works. Each id is recorded in workflow.json as
    soon as its job is queued, so `workflows cancel` reaches whatever was queued, whatever happens here.
    """
    plan, host = prepared.plan, cluster.host
    # One script of each kind (the others differ only in step numbers and names), before anything is written.
    for job in {job.kind: job for job in plan.jobs}.values():
        cluster.check(prepared.files[prepared.scripts[job.name]], what=f"job {job.name}")
    write_workflow_folder(prepared, host)
    ids: dict[str, str] = {}
    try:
        for job in plan.jobs:
            ids[job.name] = cluster.submit(
                prepared.scripts[job.name], workdir=plan.workdir, after_ok=[ids[name] for name in job.after]
            )
            host.write_file(f"{plan.workdir}/{WORKFLOW_FILE}", prepared.record(ids))
    except BaseException as failure:
        _undo(prepared, cluster, ids, failure)
        raise
    return ids


def _undo(prepared: PreparedWorkflow, cluster: SlurmCluster, ids: dict[str, str], failure: BaseException) -> None:
    """After a failed submission: cancel what was queued, or release the folder when nothing was."""
    workdir = prepared.plan.workdir
    try:
        if ids:
            cluster.cancel(ids.values())
        else:
            cluster.host.run(["rm", "-rf", "--", f"{workdir}/{CLAIM_DIR}", f"{workdir}/{WORKFLOW_FILE}"])
    except Exception as exc:  # the way to the cluster is gone too: say what is left, keep the first error
        left = f"jobs {', '.join(ids.values())} may still be queued: cajajejo workflows cancel {workdir}"
        failure.add_note(f"could not undo the submission ({one_line(exc)}); {left if ids else 'nothing was queued'}")
