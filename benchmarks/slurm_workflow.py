"""Seed 001's workflow on one real local Slurm, run two ways: cajajejo's chain submitted at once against
the seed's controller loop, which submits each training segment only after the previous one returned.

The workflow is `cajajejo workflows train-eval` of the debug training (jobs/training/slurm.debug.job_config.yml,
a tiny causal LM) with `--epochs 3 --epoch-steps 10 --steps-per-job-cap 4`: 9 training segments of at
most 4 steps, each continuing from the last checkpoint, and after each epoch the debug HELM evaluation
of that epoch's last checkpoint, which the next epoch does not wait for. Both ways run the same batch
scripts, rendered by `prepare_train_eval` (two requests that differ only in folder and name: each way
trains in its own `<workdir>/checkpoints`), one way after the other on the same cluster:

- `ours`: `submit_workflow` (writes the folder, `sbatch --test-only`, then every job with `afterok`
  dependencies), then nothing but watching until every job has ended;
- `controller`: seed 001's loop: for each epoch, for each segment, submit its script (no dependency)
  and wait until it has ended (a 1 s `squeue` poll, as a simple controller does; the seed's SDK
  waits for the job's result file), then the next; after an epoch's last segment, submit its
  evaluation without waiting for it; at the end, wait for the evaluations. The controller runs here,
  in this process; the seed runs it as a Slurm job of its own, which also holds a CPU meanwhile.

Why: between two segments the controller pays for noticing the end, an sbatch round trip and a fresh
scheduling pass, while a chained job can start as soon as slurmctld releases its dependency. The
question is what that costs on a whole workflow, and how large the gaps are on a quiet cluster.

Measured, per way: total wall time from the start of submission (folder writing included) to the end
of the last job, as this process saw it (1 s poll, so up to 1 s late), from Slurm's End time (1 s
resolution, truncated) and from slurmctld's log; the training chain (first segment's Start to last
segment's End, Slurm's times); the 8 scheduling gaps between consecutive segments (Start of k+1 minus End of k, Slurm's
times; from slurmctld's own log, with millisecond times: "Allocate JobId=k+1" minus "_job_complete:
JobId=k done"; and as this process's 1 s poll saw them: first seen running minus first seen ended). Checked:
every job COMPLETED, the scripts are the same but for folder and name, and each way's checkpoint
directory ends at step 30. The cluster is tests/slurm/cluster.py's (backfill scheduler, sched_interval=2,
batch_sched_delay=0; node of 4 CPUs on this machine's cores). With --rounds N the order alternates.
Run time: a few minutes per way (each segment starts a Python with torch; each evaluation runs HELM).

    python benchmarks/slurm_workflow.py [--rounds 1] [--poll 1.0]
"""

from __future__ import annotations

import argparse
import itertools
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.slurm.cluster: the test suite's one-node Slurm

from cajajejo.backends.hosts import LocalHost  # noqa: E402
from cajajejo.backends.slurm import SlurmCluster, SlurmJobState, slurm_on  # noqa: E402
from cajajejo.backends.slurm_jobs import CHECKPOINTS_DIR, LOGS_DIR  # noqa: E402
from cajajejo.checkpoints import CheckpointDir  # noqa: E402
from cajajejo.local_mlflow import serve_mlflow  # noqa: E402
from cajajejo.settings import load_settings  # noqa: E402
from cajajejo.workflows.plan import TRAIN, PlannedJob  # noqa: E402
from cajajejo.workflows.state import WORKFLOW_FILE  # noqa: E402
from cajajejo.workflows.submit import (  # noqa: E402
    PreparedWorkflow,
    TrainEvalRequest,
    prepare_train_eval,
    submit_workflow,
    write_workflow_folder,
)
from tests.slurm.cluster import start_cluster  # noqa: E402
from tests.slurm.support import EVAL_CONFIG, RUN_SPECS, TRAIN_CONFIG, commit_configs, new_repo  # noqa: E402

EPOCHS, EPOCH_STEPS, CAP = 3, 10, 4
WAYS = ("ours", "controller")
WAY_TIMEOUT_S = 1800
# slurmctld's log lines (millisecond times) for a job given a node, and for a job that ended.
_ALLOCATED = re.compile(r"^\[(\S+)\] .*(?:sched: Allocate|Started) JobId=(\d+)")
_COMPLETED = re.compile(r"^\[(\S+)\] _job_complete: JobId=(\d+) done")


@dataclass
class JobRecord:
    """One job as this process saw it (time.time() of the polls) and as Slurm reports it."""

    job: PlannedJob
    job_id: str
    submitted: float
    seen_running: float | None = None
    seen_ended: float | None = None
    state: str = "PENDING"
    start: float | None = None  # Slurm's Start and End, epoch seconds (1 s resolution)
    end: float | None = None


@dataclass
class Tracker:
    """Polls Slurm for the jobs it was given; keeps when each was first seen running and ended."""

    cluster: SlurmCluster
    workdir: str
    jobs: dict[str, JobRecord] = field(default_factory=dict)  # by Slurm id

    def add(self, job: PlannedJob, job_id: str, submitted: float) -> None:
        self.jobs[job_id] = JobRecord(job, job_id, submitted)

    def poll(self) -> None:
        open_ids = [job_id for job_id, record in self.jobs.items() if record.seen_ended is None]
        if not open_ids:
            return
        states = self.cluster.states(open_ids)
        now = time.time()
        for job_id, state in states.items():
            self._update(self.jobs[job_id], state, now)

    def _update(self, record: JobRecord, state: SlurmJobState, now: float) -> None:
        record.state = state.state
        if state.state != "PENDING" and record.seen_running is None:
            record.seen_running = now
        if state.final:
            record.seen_ended = now
            record.start, record.end = _epoch(state.start), _epoch(state.end)

    def wait(self, job_ids: Iterable[str], interval: float, deadline: float) -> None:
        """Poll every `interval` s until every one of `job_ids` has ended; exits if any did not complete."""
        wanted = list(job_ids)
        while True:
            self.poll()
            failed = [self.jobs[i] for i in self.jobs if self.jobs[i].seen_ended and self.jobs[i].state != "COMPLETED"]
            if failed:
                self._abort(f"{failed[0].job.name} ({failed[0].job_id}) ended {failed[0].state}", failed[0])
            if all(self.jobs[job_id].seen_ended is not None for job_id in wanted):
                return
            if time.monotonic() > deadline:
                self._abort("the workflow did not end in time", None)
            time.sleep(interval)

    def _abort(self, why: str, record: JobRecord | None) -> None:
        self.cluster.cancel([i for i, r in self.jobs.items() if r.seen_ended is None])
        log = ""
        if record is not None:
            path = Path(self.workdir) / LOGS_DIR / f"{record.job.name}-{record.job_id}.out"
            log = path.read_text(errors="replace")[-3000:] if path.exists() else f"(no {path})"
        raise SystemExit(f"benchmark stopped: {why}\n{log}")


@dataclass
class WayResult:
    way: str
    started: float  # time.time() before anything was written or submitted
    tracker: Tracker
    final_step: int | None
    ctld: dict[str, tuple[float, float]] = field(default_factory=dict)  # job id → (allocated, done), slurmctld log

    def records(self, kind: str | None = None) -> list[JobRecord]:
        chosen = [r for r in self.tracker.jobs.values() if kind is None or r.job.kind == kind]
        return sorted(chosen, key=lambda r: (r.job.start_step, r.job.kind != TRAIN))

    def training(self) -> list[JobRecord]:
        return self.records(TRAIN)

    def total_polled(self) -> float:
        return max(_known(r.seen_ended) for r in self.records()) - self.started

    def total_slurm(self) -> float:
        return max(_known(r.end) for r in self.records()) - self.started

    def chain(self) -> float:
        segments = self.training()
        return _known(segments[-1].end) - _known(segments[0].start)

    def gaps_slurm(self) -> list[float]:
        segments = self.training()
        return [_known(b.start) - _known(a.end) for a, b in itertools.pairwise(segments)]

    def total_ctld(self) -> float:
        return max(self.ctld[r.job_id][1] for r in self.records()) - self.started

    def gaps_ctld(self) -> list[float]:
        ids = [r.job_id for r in self.training()]
        return [self.ctld[b][0] - self.ctld[a][1] for a, b in itertools.pairwise(ids)]

    def gaps_polled(self) -> list[float]:
        segments = self.training()
        return [_known(b.seen_running) - _known(a.seen_ended) for a, b in itertools.pairwise(segments)]


def _epoch(text: str | None) -> float | None:
    """Slurm's ISO time (the cluster's local time, this machine's) as epoch seconds."""
    return None if text is None else datetime.fromisoformat(text).timestamp()


def _known(value: float | None) -> float:
    if value is None:
        raise SystemExit("benchmark stopped: Slurm reported no Start/End for an ended job")
    return value


def ctld_times(log: Path, job_ids: Iterable[str]) -> dict[str, tuple[float, float]]:
    """Each job's allocation (its first) and end (its last) from slurmctld's log, in epoch seconds."""
    allocated: dict[str, float] = {}
    done: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if match := _ALLOCATED.match(line):
            allocated.setdefault(match[2], datetime.fromisoformat(match[1]).timestamp())
        elif match := _COMPLETED.match(line):
            done[match[2]] = datetime.fromisoformat(match[1]).timestamp()
    missing = [job_id for job_id in job_ids if job_id not in allocated or job_id not in done]
    if missing:
        raise SystemExit(f"benchmark stopped: slurmctld's log ({log}) lacks the start or end of jobs {missing}")
    return {job_id: (allocated[job_id], done[job_id]) for job_id in job_ids}


def prepare(configs: Path, workdir: Path, name: str) -> PreparedWorkflow:
    """What `cajajejo workflows train-eval` renders for seed 001's example (settings: none but the repo's)."""
    request = TrainEvalRequest(
        config=configs / TRAIN_CONFIG,
        eval_config=configs / EVAL_CONFIG,
        helm_config=configs / RUN_SPECS,
        epochs=EPOCHS,
        epoch_steps=EPOCH_STEPS,
        steps_per_job_cap=CAP,
        workdir=str(workdir),
        name=name,
        train_partition="train",
        eval_partition="eval",
    )
    return prepare_train_eval(request, load_settings(cwd=configs, environ={}))


def same_work(a: PreparedWorkflow, b: PreparedWorkflow) -> None:
    """Both ways' scripts are the same once folder and name are set aside (same work per job)."""

    def neutral(prepared: PreparedWorkflow, job: PlannedJob) -> str:
        text = prepared.files[prepared.scripts[job.name]]
        return text.replace(prepared.plan.workdir, "<workdir>").replace(prepared.plan.name, "<name>")

    for job_a, job_b in zip(a.plan.jobs, b.plan.jobs, strict=True):
        if neutral(a, job_a) != neutral(b, job_b):
            raise SystemExit(f"benchmark stopped: {job_a.name} and {job_b.name} have different scripts")


def run_ours(prepared: PreparedWorkflow, cluster: SlurmCluster, poll: float) -> WayResult:
    tracker = Tracker(cluster, prepared.plan.workdir)
    started = time.time()
    ids = submit_workflow(prepared, cluster)
    submitted = time.time()
    for job in prepared.plan.jobs:
        tracker.add(job, ids[job.name], submitted)
    tracker.wait(ids.values(), poll, time.monotonic() + WAY_TIMEOUT_S)
    return WayResult("ours", started, tracker, _final_step(prepared))


def run_controller(prepared: PreparedWorkflow, cluster: SlurmCluster, poll: float) -> WayResult:
    """Seed 001's loop over the same scripts: a segment at a time, evaluations fired and waited for at the end."""
    plan, host = prepared.plan, cluster.host
    tracker = Tracker(cluster, plan.workdir)
    deadline = time.monotonic() + WAY_TIMEOUT_S
    started = time.time()
    write_workflow_folder(prepared, host)  # the folder submit_workflow writes, before its first job

    def submit(job: PlannedJob) -> str:
        job_id = cluster.submit(prepared.scripts[job.name], workdir=plan.workdir)
        tracker.add(job, job_id, time.time())
        return job_id

    evaluations = []
    for epoch in range(plan.epochs):
        for job in (j for j in plan.training() if j.epoch == epoch):
            tracker.wait([submit(job)], poll, deadline)
        evaluations.append(submit(next(j for j in plan.evaluations() if j.epoch == epoch)))
    tracker.wait(evaluations, poll, deadline)
    ids = {record.job.name: job_id for job_id, record in tracker.jobs.items()}
    host.write_file(f"{plan.workdir}/{WORKFLOW_FILE}", prepared.record(ids))  # for `workflows status`, after the end
    return WayResult("controller", started, tracker, _final_step(prepared))


def _final_step(prepared: PreparedWorkflow) -> int | None:
    latest = CheckpointDir(Path(prepared.plan.workdir) / CHECKPOINTS_DIR).latest()
    return latest.step if latest else None


def _summary(values: list[float]) -> tuple[float, float, float]:
    return statistics.fmean(values), statistics.median(values), max(values)


def print_round(number: int, results: dict[str, WayResult]) -> None:
    ours, controller = results["ours"], results["controller"]
    order = " then ".join(results)
    print(f"\nround {number} ({order}): {EPOCHS} epochs x {EPOCH_STEPS} steps, cap {CAP}: 9 segments + 3 evaluations")
    rows: list[tuple[str, Callable[[WayResult], float]]] = [
        ("total wall, polled (s)", WayResult.total_polled),
        ("total wall, Slurm End (s)", WayResult.total_slurm),
        ("total wall, slurmctld log (s)", WayResult.total_ctld),
        ("training chain, Slurm (s)", WayResult.chain),
        ("gap mean, Slurm (s)", lambda r: _summary(r.gaps_slurm())[0]),
        ("gap median, Slurm (s)", lambda r: _summary(r.gaps_slurm())[1]),
        ("gap max, Slurm (s)", lambda r: _summary(r.gaps_slurm())[2]),
        ("gap mean, slurmctld log (s)", lambda r: _summary(r.gaps_ctld())[0]),
        ("gap median, slurmctld log (s)", lambda r: _summary(r.gaps_ctld())[1]),
        ("gap max, slurmctld log (s)", lambda r: _summary(r.gaps_ctld())[2]),
        ("gap mean, polled (s)", lambda r: _summary(r.gaps_polled())[0]),
        ("gap median, polled (s)", lambda r: _summary(r.gaps_polled())[1]),
        ("gap max, polled (s)", lambda r: _summary(r.gaps_polled())[2]),
        ("sum of gaps, slurmctld log (s)", lambda r: sum(r.gaps_ctld())),
    ]
    print(f"  {'':<32}{'ours':>10}{'controller':>12}{'ours/ctl':>10}")
    for label, measure in rows:
        a, b = measure(ours), measure(controller)
        ratio = f"{a / b:.2f}" if b else "-"
        print(f"  {label:<32}{a:>10.2f}{b:>12.2f}{ratio:>10}")
    print(f"  {'final checkpoint step':<32}{ours.final_step!s:>10}{controller.final_step!s:>12}")
    for result in results.values():
        gaps = " ".join(f"{g:.0f}" for g in result.gaps_slurm())
        ctld = " ".join(f"{g:.2f}" for g in result.gaps_ctld())
        polled = " ".join(f"{g:.0f}" for g in result.gaps_polled())
        print(f"  {result.way:>10} gaps, Slurm: {gaps} | slurmctld log: {ctld} | polled: {polled}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="Rounds of both ways; the order alternates.")
    parser.add_argument("--poll", type=float, default=1.0, help="Seconds between squeue polls (both ways).")
    args = parser.parse_args()
    mlflow = str(Path(sys.executable).parent / "mlflow")
    rounds: list[dict[str, WayResult]] = []
    with tempfile.TemporaryDirectory(prefix="slurm-workflow-") as temp:
        root = Path(temp)
        with start_cluster(root / "slurm") as slurm, serve_mlflow(root / "mlflow", mlflow) as tracking_uri:
            commit_configs(new_repo(root / "configs"), tracking_uri)
            # Jobs find the same cajajejo as this process (as `workflows train-eval` arranges on this machine).
            cluster = slurm_on(LocalHost())
            for number in range(1, args.rounds + 1):
                order = WAYS if number % 2 else WAYS[::-1]
                prepared = {
                    way: prepare(root / "configs", slurm.work_dir / f"r{number}-{way}", f"r{number}-{way}")
                    for way in order
                }
                same_work(prepared["ours"], prepared["controller"])
                results: dict[str, WayResult] = {}
                for way in order:
                    print(f"round {number}: {way} ...", flush=True)
                    run = run_ours if way == "ours" else run_controller
                    results[way] = run(prepared[way], cluster, args.poll)
                    result = results[way]
                    result.ctld = ctld_times(slurm.logs["slurmctld"], result.tracker.jobs)
                    print(f"round {number}: {way} done in {result.total_polled():.1f} s", flush=True)
                    if result.final_step != EPOCHS * EPOCH_STEPS:
                        raise SystemExit(f"benchmark stopped: {way} ended at step {result.final_step}, not 30")
                print_round(number, results)
                rounds.append(results)
    if len(rounds) > 1:
        print(f"\nover {len(rounds)} rounds (mean):")
        for label, measure in (
            ("total wall, polled (s)", WayResult.total_polled),
            ("training chain, Slurm (s)", WayResult.chain),
        ):
            a = statistics.fmean(measure(r["ours"]) for r in rounds)
            b = statistics.fmean(measure(r["controller"]) for r in rounds)
            print(f"  {label:<32}{a:>10.2f}{b:>12.2f}{a / b:>10.2f}")
        gaps = {way: [g for r in rounds for g in r[way].gaps_ctld()] for way in WAYS}
        for way in WAYS:
            mean, median, top = _summary(gaps[way])
            print(f"  {way:>10} gaps, slurmctld log: mean {mean:.2f} s  median {median:.2f} s  max {top:.2f} s")


if __name__ == "__main__":
    main()
