"""Segmented training with evaluation beside it, as plain data: which Slurm jobs, in which order.

Each epoch of `epoch_steps` steps is trained in segments of at most `steps_per_job_cap` steps, each
its own Slurm job that continues from the last checkpoint and stops at its segment's last step.
After an epoch's last segment, an evaluation job evaluates the checkpoint of that step. Every job
waits only for what it needs (`afterok`): a segment for the segment before it, an evaluation for its
epoch's last segment. The next epoch's training never waits for an evaluation, so evaluations run
beside training whenever the cluster has room.

The plan is made before anything is submitted, printed by `--dry-run`, saved as `workflow.json` in
the workflow's folder, and the whole chain is submitted at once: no controller has to stay alive.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

TRAIN: Literal["train"] = "train"
EVALUATE: Literal["evaluate"] = "evaluate"
EVALUATION_ROLE = "epoch-eval"  # the evaluator role of every evaluation job (results, holds)


@dataclass(frozen=True)
class PlannedJob:
    """One Slurm job of the workflow: a training segment [start_step, end_step), or an evaluation of the
    checkpoint at end_step (its epoch's last step)."""

    name: str  # also the Slurm job name
    kind: Literal["train", "evaluate"]
    epoch: int  # from 0
    segment: int | None  # a training job's place in its epoch, from 0; None for an evaluation
    start_step: int
    end_step: int
    after: tuple[str, ...]  # the jobs (by name) that must complete successfully first
    partition: str | None
    ends_epoch: bool = False  # a training job whose last checkpoint its epoch's evaluation evaluates

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "after": list(self.after)}


@dataclass(frozen=True)
class WorkflowPlan:
    name: str
    workdir: str
    epochs: int
    epoch_steps: int
    steps_per_job_cap: int
    jobs: tuple[PlannedJob, ...]

    @property
    def total_steps(self) -> int:
        return self.epochs * self.epoch_steps

    def training(self) -> list[PlannedJob]:
        return [job for job in self.jobs if job.kind == TRAIN]

    def evaluations(self) -> list[PlannedJob]:
        return [job for job in self.jobs if job.kind == EVALUATE]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "workdir": self.workdir,
            "epochs": self.epochs,
            "epoch_steps": self.epoch_steps,
            "steps_per_job_cap": self.steps_per_job_cap,
            "jobs": [job.to_dict() for job in self.jobs],
        }

    def describe(self) -> list[str]:
        """The plan as `--dry-run` prints it: one line per job, in submission order."""
        lines = [
            f"workflow {self.name} in {self.workdir}: {self.epochs} epochs of {self.epoch_steps} steps, at most "
            f"{self.steps_per_job_cap} steps per training job: {len(self.training())} training jobs, "
            f"{len(self.evaluations())} evaluations, {self.total_steps} steps in all"
        ]
        for job in self.jobs:
            where = f" on {job.partition}" if job.partition else ""
            after = f" after {', '.join(job.after)}" if job.after else ""
            if job.kind == TRAIN:
                what = f"train steps {job.start_step + 1}-{job.end_step}"
            else:
                what = f"evaluate the checkpoint of step {job.end_step}"
            lines.append(f"  {job.name}: {what}{where}{after}")
        return lines


def plan_train_eval(
    name: str,
    workdir: str,
    *,
    epochs: int,
    epoch_steps: int,
    steps_per_job_cap: int,
    train_partition: str | None = None,
    eval_partition: str | None = None,
) -> WorkflowPlan:
    """The jobs of seed 001's workflow, in an order in which each job's dependencies come before it."""
    if min(epochs, epoch_steps, steps_per_job_cap) < 1:
        raise ValueError("epochs, epoch_steps and steps_per_job_cap must be at least 1")
    jobs: list[PlannedJob] = []
    previous: str | None = None
    for epoch in range(epochs):
        first, last = epoch * epoch_steps, (epoch + 1) * epoch_steps
        starts = range(first, last, steps_per_job_cap)
        for segment, start in enumerate(starts):
            job = PlannedJob(
                name=f"{name}-e{epoch}-s{segment}",
                kind=TRAIN,
                epoch=epoch,
                segment=segment,
                start_step=start,
                end_step=min(start + steps_per_job_cap, last),
                after=(previous,) if previous else (),
                partition=train_partition,
                ends_epoch=start + steps_per_job_cap >= last,
            )
            jobs.append(job)
            previous = job.name
        assert previous is not None
        jobs.append(
            PlannedJob(
                name=f"{name}-e{epoch}-eval",
                kind=EVALUATE,
                epoch=epoch,
                segment=None,
                start_step=last,
                end_step=last,
                after=(previous,),
                partition=eval_partition,
            )
        )
    return WorkflowPlan(name, workdir, epochs, epoch_steps, steps_per_job_cap, tuple(jobs))
