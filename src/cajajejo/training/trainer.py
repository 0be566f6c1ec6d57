"""The built-in trainer's loop: DDP steps, sync points, validation per epoch, checkpoints, exact resume.

Every rank runs the same loop. What happens at a step is decided from numbers all ranks share (the
step count, the epoch length, the options) or from what they agreed at a sync point (`sync.py`), so
all ranks always take part in the same collectives. Rank 0 prints, writes the shared files and
talks to MLflow.

Order of events after a step: a sync point when one is due or forced; at an epoch's end or at the
last step, validation then a checkpoint (the `best` pointer follows the lowest validation loss);
else a checkpoint every `checkpoints.every_steps`; then, if a stop was agreed or this process has
done its `--stop-after-steps`, a checkpoint (unless one was just written) and exit 0.

An early-stop request (`stop_request.json` in the checkpoint directory, from an evaluator or
`cajajejo checkpoints request-stop`) is a stop that ends training: rank 0 finds it at a sync point,
all ranks stop after that step, rank 0 checkpoints and marks training complete, so evaluators finish
their work and exit. A trainer restarted later finds the request and only marks completion again.

Resume: the newest published checkpoint restores model, optimizer, LR scheduler, each rank's RNG
states and the data position; with the same world size and seed, the steps that follow are bitwise
the ones an uninterrupted run takes (on CPU; CUDA kernels are not all deterministic).
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cajajejo import runtime_contract
from cajajejo.checkpoints import CheckpointDir, checkpoint_name
from cajajejo.config.training import TrainerConfig, TrainingJobConfig
from cajajejo.errors import Problem, UserInputError, printable
from cajajejo.run_tags import run_tags, stamps_from_env
from cajajejo.training.data import SampleOrder
from cajajejo.training.state import (
    Progress,
    load_rng_states,
    load_trainer_state,
    save_rng_states,
    save_trainer_state,
)
from cajajejo.training.sync import StepSync, StopRequests, SyncReport
from cajajejo.training.tasks import Task, build_task
from cajajejo.training.tracking import MlflowRunLog, NoRunLog, RunLog, RunRequest, flatten, now_ms
from cajajejo.training.world import World, join_world, leave_world

EARLY_STOP = "stop-request"  # the [STOP] line's reason: stop-request:<the request's reason>

# Seconds to sleep after each step: slows a tiny run down enough to interrupt it in a preemption drill (tests).
STEP_DELAY_ENV = "CAJAJEJO_TRAINING_STEP_DELAY"
DECLARED_WORKER = "declared-by-group"  # the watcher registration a group makes for its evaluators ahead


@dataclass(frozen=True)
class TrainingOptions:
    """The validated config and the command line's overrides."""

    config: TrainingJobConfig
    config_path: str
    checkpoint_dir: Path
    max_steps: int | None = None  # overrides trainer.max_steps
    stop_after_steps: int | None = None  # at most this many steps in this process, then checkpoint and exit 0
    hold_for: str | None = None  # an evaluator role the last checkpoint is kept for when training ends

    @property
    def trainer(self) -> TrainerConfig:
        trainer = self.config.training.trainer
        assert trainer is not None, "the command refuses configs with training.script"
        return trainer


def train(options: TrainingOptions) -> int:
    """Train in this process as one rank of torchrun's world (or alone); returns the exit code."""
    stops = StopRequests()
    stops.install()  # before joining the world: a signal during start-up is kept, not fatal
    try:
        world = join_world()
        try:
            return Trainer(options, world, stops).run()
        finally:
            leave_world(world)
    finally:
        stops.uninstall()


class Trainer:
    """One rank's training state and loop."""

    def __init__(self, options: TrainingOptions, world: World, stops: StopRequests) -> None:
        self.options = options
        self.config = options.trainer
        self.world = world
        self.stops = stops
        self.checkpoints = CheckpointDir(options.checkpoint_dir)
        if world.is_main:
            stops.check_request = self._early_stop_reason
        self.say(
            f"[DDP] world={world.size} backend={world.backend} device={world.device} "
            f"nnodes={world.nnodes} nproc_per_node={world.local_size}"
        )
        latest = self.checkpoints.latest() if world.is_main else None
        resume_name = world.from_main(latest.name if latest else None)
        self.resumed_from = self.checkpoints.path / resume_name if resume_name else None
        _seed_everything(self.config.seed)  # the model's initial weights: the same on every rank
        self.task: Task = build_task(self.config.model, self.config.seed, world, self.checkpoints, self.resumed_from)
        self.order = SampleOrder(self.task.train_size, self.config.batch_size, world.size, world.rank, self.config.seed)
        if self.order.steps_per_epoch == 0:
            raise UserInputError(
                Problem(
                    options.config_path,
                    f"{self.task.train_size} training samples make no step of batch_size {self.config.batch_size} "
                    f"on {world.size} processes; lower batch_size or add data",
                    field="training.trainer.batch_size",
                )
            )
        max_steps = options.max_steps or self.config.max_steps
        self.total_steps = self.config.epochs * self.order.steps_per_epoch
        if options.max_steps is not None and options.max_steps > self.total_steps:
            # Asked for on the command line (a workflow's segment end): falling short would end it early, quietly.
            raise UserInputError(
                Problem(
                    options.config_path,
                    f"--max-steps {options.max_steps} is past the end of training: {self.config.epochs} epochs of "
                    f"{self.order.steps_per_epoch} steps on {world.size} processes make {self.total_steps}; "
                    "raise epochs",
                    field="training.trainer.epochs",
                )
            )
        if max_steps is not None:
            self.total_steps = min(self.total_steps, max_steps)
        self.model = self._initial_model().to(world.device)
        self.ddp = self._wrap(self.model)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _warmup(self.config.warmup_steps))
        self.progress = self._initial_progress()
        self.last_checkpoint_step = self.progress.global_step if self.resumed_from else -1
        self.run_log: RunLog = NoRunLog()
        self.train_seconds = 0.0
        self.trained_samples = 0
        self.steps_here = 0  # steps this process has trained (for --stop-after-steps)
        self.step_delay = float(os.environ.get(STEP_DELAY_ENV) or 0)

    # Setting up

    def _initial_model(self) -> nn.Module:
        if self.resumed_from is None:
            return self.task.new_model()
        return self.task.load_model(self.resumed_from)

    def _wrap(self, model: nn.Module) -> nn.Module:
        if not self.world.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.world.device.index] if self.world.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def _initial_progress(self) -> Progress:
        if self.resumed_from is None:
            # Training draws (dropout) differ per rank, like independent workers; the data order does not use them.
            _seed_everything(self.config.seed + self.world.rank)
            return Progress(world_size=self.world.size)
        progress = load_trainer_state(self.resumed_from, self.optimizer, self.scheduler, self.world.device)
        load_rng_states(self.resumed_from, self.world.rank)
        if progress.world_size != self.world.size:
            progress.step_in_epoch = self.order.resume_step(progress.samples_in_epoch)
            progress.samples_in_epoch = progress.step_in_epoch * self.order.global_batch
            progress.world_size = self.world.size
        self.say(
            f"[RESUME] from={self.resumed_from.name} epoch={progress.epoch + 1} "
            f"step={progress.global_step} step_in_epoch={progress.step_in_epoch}"
        )
        return progress

    def _open_run_log(self) -> RunLog:
        if not self.world.is_main:
            return NoRunLog()
        uri = os.environ.get(runtime_contract.ENV_MLFLOW_TRACKING_URI, "").strip()
        if not uri:
            self.say(f"[MLFLOW] {runtime_contract.ENV_MLFLOW_TRACKING_URI} is not set: training without MLflow")
            return NoRunLog()
        config = self.options.config
        stamps = stamps_from_env(os.environ, self.options.config_path)
        tags = run_tags(config, stamps, {"cajajejo.kind": "training", "cajajejo.device": str(self.world.device)})
        trainer = self.config.model_copy(update={"max_steps": self.options.max_steps or self.config.max_steps})
        params = {
            **flatten(trainer.model_dump(mode="json"), "trainer"),
            **flatten(config.training.checkpoints.model_dump(mode="json", exclude={"directory"}), "checkpoints"),
            "world_size": str(self.world.size),
            "nnodes": str(self.world.nnodes),
            "nproc_per_node": str(self.world.local_size),
            "backend": self.world.backend,
            "steps_per_epoch": str(self.order.steps_per_epoch),
            "total_steps": str(self.total_steps),
        }
        return MlflowRunLog(
            uri,
            RunRequest(
                experiment_name=config.tracking_config.experiment_name,
                run_name=config.tracking_config.run_name or stamps.job_name,
                tags=tags,
                params=params,
                resume_run_id=self.progress.mlflow_run_id,
            ),
        )

    def _register_evaluator_roles(self) -> None:
        """Register the roles a job group says will evaluate these checkpoints: pruning then waits for them."""
        roles = os.environ.get(runtime_contract.ENV_CHECKPOINT_ROLES, "")
        for role in (part.strip() for part in roles.split(",")):
            if role:
                self.checkpoints.register_watcher(role, DECLARED_WORKER)

    # The loop

    def run(self) -> int:
        early_stop = self.world.from_main(self._early_stop_reason() if self.world.is_main else None)
        if self.progress.global_step >= self.total_steps or early_stop is not None:
            # A restart after the end (or after an early stop): make sure best and complete are marked, nothing else.
            if early_stop is not None:
                self._say_stopped(f"{EARLY_STOP}:{early_stop}")
            self._complete(early_stop)
            return 0
        if self.world.is_main:
            self.checkpoints.clear_complete()  # training goes on (a larger max_steps): evaluators keep waiting
            self._register_evaluator_roles()
        self.run_log = self._open_run_log()
        status = "FAILED"
        try:
            reason = self._loop()
            finished = reason is None or reason.startswith(EARLY_STOP)
            status = "FINISHED" if finished else "KILLED"
        finally:
            self.run_log.close(status)
        if reason is not None:
            self._say_stopped(reason)
        if finished:
            self._complete(self.stops.request_reason if reason else None)
        return 0

    def _say_stopped(self, reason: str) -> None:
        if self.world.is_main:
            self.say(f"[STOP] step={self.progress.global_step} reason={reason} checkpoint={self._latest_name()}")

    def _early_stop_reason(self) -> str | None:
        """The early-stop request's reason as one log token (rank 0), or None when nobody asked."""
        request = self.checkpoints.stop_request()
        if request is None:
            return None
        return "_".join(printable(request.reason).split())[:100] or "-"

    def _loop(self) -> str | None:
        """Train until the end (returns None) or an agreed stop (returns why)."""
        sync = StepSync(self.world, self.stops)
        while self.progress.global_step < self.total_steps and self.progress.epoch < self.config.epochs:
            reason = self.advance(sync)
            if reason is not None:
                return reason
        return None

    def advance(self, sync: StepSync) -> str | None:
        """One step and what follows it (sync point, validation, checkpoint); a stop's reason ends the loop.

        Public for `benchmarks/trainer_overhead.py`, which times exactly this against a plain DDP step.
        """
        progress = self.progress
        if progress.step_in_epoch < self.order.steps_per_epoch:
            self._step(sync)
            self.steps_here += 1
            if self.step_delay:
                time.sleep(self.step_delay)
        stop_after = self.options.stop_after_steps
        epoch_end = progress.step_in_epoch >= self.order.steps_per_epoch
        last = progress.global_step >= self.total_steps
        periodic = progress.global_step % self.options.config.training.checkpoints.every_steps == 0
        segment_end = stop_after is not None and self.steps_here >= stop_after
        stop = None
        if sync.due(forced=epoch_end or last or periodic or segment_end):
            report = sync.exchange()
            self._report(report)
            if report.early_stop:  # before signals: a request ends training, a signal only pauses it
                stop = f"{EARLY_STOP}:{self.stops.request_reason}" if self.world.is_main else EARLY_STOP
            elif report.stop_requested:
                stop = self.stops.signal_name or "signal-to-another-rank"
        if epoch_end or last:
            self._validate_and_checkpoint(epoch_end)
            sync.restart_clock()
        elif periodic or stop or segment_end:
            self._checkpoint()
            sync.restart_clock()
        if not last and (stop or segment_end):
            return stop or f"stop-after-steps={stop_after}"
        return None

    def _step(self, sync: StepSync) -> None:
        progress = self.progress
        indices = self.order.indices(progress.epoch, progress.step_in_epoch)
        learning_rate = self.optimizer.param_groups[0]["lr"]
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.task.training_loss(self.ddp, indices)
        torch.autograd.backward(loss)
        self.optimizer.step()
        if self.scheduler.last_epoch < self.config.warmup_steps:  # past the warmup its factor stays 1: no call
            self.scheduler.step()
        progress.step_in_epoch += 1
        progress.global_step += 1
        progress.samples_in_epoch += self.order.global_batch
        sync.record(loss.detach(), learning_rate)

    def _report(self, report: SyncReport) -> None:
        steps = len(report.losses)
        if not steps:
            return
        step = self.progress.global_step
        self.progress.train_loss = report.losses[-1]
        samples = steps * self.order.global_batch
        self.train_seconds += report.seconds
        self.trained_samples += samples
        if not self.world.is_main:
            return
        speed = samples / max(report.seconds, 1e-9)
        mean = sum(report.losses) / steps
        self.say(
            f"[TRAIN] epoch={self.progress.epoch + 1} step={step} loss={mean:.4f} "
            f"lr={report.learning_rates[-1]:.3g} samples_per_s={speed:.1f}"
        )
        stamp, first = now_ms(), step - steps + 1
        metrics = [("train/loss", loss, first + i, stamp) for i, loss in enumerate(report.losses)]
        metrics += [("train/lr", rate, first + i, stamp) for i, rate in enumerate(report.learning_rates)]
        metrics.append(("train/samples_per_s", speed, step, stamp))
        self.run_log.log_metrics(metrics)

    # Validation and checkpoints

    def _validate(self) -> float:
        """The mean validation loss over all ranks' shards (every validation sample counted once)."""
        model, task = self.model, self.task
        indices = torch.arange(self.world.rank, task.validation_size, self.world.size)
        total = torch.zeros(2, dtype=torch.float64, device=self.world.device)
        model.eval()
        with torch.no_grad():
            for start in range(0, len(indices), self.config.batch_size):
                loss_sum, count = task.validation_loss(model, indices[start : start + self.config.batch_size])
                total[0] += loss_sum.to(torch.float64)
                total[1] += count
        model.train()
        loss_sum, count = self.world.all_reduce_sum(total).tolist()
        return float(loss_sum / count) if count else math.nan

    def _validate_and_checkpoint(self, epoch_end: bool) -> None:
        progress = self.progress
        epoch = progress.epoch + 1
        val_loss = self._validate()
        metrics: dict[str, float] = {"val_loss": val_loss}
        line = f"[EPOCH] epoch={epoch} step={progress.global_step} val_loss={val_loss:.4f}"
        if self.task.reports_perplexity:
            metrics["val_perplexity"] = math.exp(min(val_loss, 700.0))  # exp(710) overflows a float
            line += f" val_ppl={metrics['val_perplexity']:.2f}"
        self.say(line)
        stamp = now_ms()
        self.run_log.log_metrics(
            [(name.replace("_", "/", 1), value, progress.global_step, stamp) for name, value in metrics.items()]
        )
        if epoch_end:
            progress.epoch, progress.step_in_epoch, progress.samples_in_epoch = progress.epoch + 1, 0, 0
        self._checkpoint(epoch=epoch, metrics=metrics)

    def _checkpoint(self, epoch: int | None = None, metrics: dict[str, float] | None = None) -> None:
        """Write and publish a checkpoint of the current step (a collective: every rank calls it)."""
        progress, world = self.progress, self.world
        if self.last_checkpoint_step == progress.global_step:
            return
        name = checkpoint_name(progress.global_step)
        if world.is_main:
            self.checkpoints.begin(name)
        world.barrier()
        folder = self.checkpoints.temp_path(name)
        save_rng_states(folder, world.rank)
        if world.is_main:
            progress.mlflow_run_id = self.run_log.run_id() or progress.mlflow_run_id
            self.task.save_model(self.model, folder)
            save_trainer_state(folder, self.optimizer, self.scheduler, progress)
        world.barrier()  # every rank's files are written (and closed) before rank 0 publishes
        self.last_checkpoint_step = progress.global_step
        if not world.is_main:
            return
        metadata: dict[str, Any] = {
            "kind": self.task.kind,
            "world_size": world.size,
            "mlflow_run_id": progress.mlflow_run_id,
            **(metrics or {}),
        }
        self.checkpoints.publish(
            name,
            step=progress.global_step,
            epoch=epoch or progress.epoch + 1,
            train_loss=progress.train_loss,
            metadata=metadata,
        )
        self._update_best()
        pruned = self.checkpoints.prune(self.options.config.training.checkpoints.keep_last)
        pruned_note = f" pruned={','.join(pruned)}" if pruned else ""
        self.say(f"[CHECKPOINT] step={progress.global_step} name={name}{pruned_note}")

    def _update_best(self) -> None:
        """Point `best` at the published checkpoint with the lowest validation loss (the earliest of equals)."""
        scored = [c for c in self.checkpoints.published() if isinstance(c.metadata.get("val_loss"), int | float)]
        scored = [c for c in scored if math.isfinite(c.metadata["val_loss"])]
        if not scored:
            return
        best = min(scored, key=lambda c: (c.metadata["val_loss"], c.step))
        current = self.checkpoints.best()
        if current is None or current.name != best.name:
            self.checkpoints.mark_best(best.name, val_loss=best.metadata["val_loss"], step=best.step)

    def _complete(self, early_stop: str | None = None) -> None:
        if not self.world.is_main:
            return
        self._update_best()
        best = self.checkpoints.best()
        best_name = best.name if best else None
        stopped = {"early_stop": early_stop} if early_stop else {}
        last = self.checkpoints.latest()
        if self.options.hold_for is not None and last is not None:
            # Before completion is marked: whoever waits for the marker finds the hold in place.
            self.checkpoints.hold(last.name, self.options.hold_for)
        self.checkpoints.mark_complete(step=self.progress.global_step, best=best_name, **stopped)
        speed = self.trained_samples / self.train_seconds if self.train_seconds else 0.0
        best_loss = f" best_val_loss={best.metadata['val_loss']:.4f}" if best else ""
        self.say(
            f"[DONE] steps={self.progress.global_step} best={best_name}{best_loss} "
            f"train_seconds={self.train_seconds:.3f} samples_per_s={speed:.1f}"
        )

    def _latest_name(self) -> str | None:
        latest = self.checkpoints.latest()
        return latest.name if latest else None

    def say(self, line: str) -> None:
        """Print one log line on rank 0 (stdout, flushed: a job's log shows it at once)."""
        if self.world.is_main:
            print(line, flush=True)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # CUDA's generators too


def _warmup(steps: int) -> Any:
    """The LR factor per step: linear warmup over `steps` steps, then the configured rate."""

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / steps) if steps else 1.0

    return factor
