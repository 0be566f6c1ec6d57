"""A job config on the real local Slurm: `parse-job|submit-job --backend slurm`, `jobs status|list|delete`
and `logs` for Slurm jobs, and the built-in trainer surviving a requeue and its time limit."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import git
import pytest

from cajajejo.checkpoints import CheckpointDir
from tests.slurm.cluster import SlurmCluster
from tests.slurm.support import EVAL_CONFIG, RUN_SPECS, TRAIN_CONFIG, cajajejo, commit_configs, new_repo
from tests.support import REPO, MlflowServer


@pytest.fixture(scope="module")
def jobs_repo(tmp_path_factory: pytest.TempPathFactory, mlflow_server: MlflowServer) -> Path:
    """A repository with the Slurm debug config, pointed at the session's MLflow, and a time-limited copy."""
    root = tmp_path_factory.mktemp("slurm-jobs-repo")
    repo = new_repo(root)
    text = (REPO / TRAIN_CONFIG).read_text().replace("http://127.0.0.1:5000", mlflow_server.uri)
    text = text.replace("    epochs: 10 ", "    max_steps: 40\n    epochs: 10 ")
    assert "max_steps: 40" in text
    (root / "train.yml").write_text(text)
    # One minute, USR1 30 s before the end: a long run checkpoints, requeues itself and goes on.
    limited = text.replace('time_limit: "10"', 'time_limit: "1"').replace(
        "signal_grace_seconds: 60", "signal_grace_seconds: 30"
    )
    assert limited != text
    (root / "limited.yml").write_text(limited)
    repo.index.add(["train.yml", "limited.yml"])
    repo.index.commit("configs")
    return root


def submit(config: str, root: Path, workdir: Path, *extra: str, step_delay: float = 0.0) -> str:
    env = {"CAJAJEJO_TRAINING_STEP_DELAY": str(step_delay)} if step_delay else {}
    result = cajajejo(
        "jobs", "training", "submit-job", "--path-to-config", config, "--backend", "slurm", "--workdir", str(workdir),
        *extra, cwd=root, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    match = re.search(r"submitted to Slurm on localhost: job (\d+)", result.stdout)
    assert match, result.stdout
    return match[1]


def wait_until(slurm: SlurmCluster, job_id: str, workdir: Path, pattern: str, timeout: float = 120) -> str:
    """The job's log once `pattern` is in it; fails as soon as the job has failed."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        log = the_log(workdir, job_id)
        text = log.read_text() if log.exists() else ""
        if re.search(pattern, text):
            return text
        state = slurm.job_state(job_id)
        assert state not in ("FAILED", "CANCELLED", "TIMEOUT"), f"job {job_id} {state}\n{text[-3000:]}"
        time.sleep(0.3)
    pytest.fail(f"no {pattern!r} in the log of job {job_id} after {timeout} s\n{text[-3000:]}")


def the_log(workdir: Path, job_id: str) -> Path:
    (found,) = list((workdir / "logs").glob(f"*-{job_id}.out")) or [workdir / "logs" / f"missing-{job_id}.out"]
    return found


def steps_logged(uri: str, run_id: str) -> list[int]:
    from mlflow.tracking import MlflowClient

    return [m.step for m in MlflowClient(tracking_uri=uri).get_metric_history(run_id, "train/loss")]


def test_parse_job_prints_the_batch_script_and_kubernetes_options_are_refused(jobs_repo: Path) -> None:
    parsed = cajajejo(
        "jobs", "training", "parse-job", "train.yml", "-", "--backend", "slurm", "--workdir", "/shared/ml",
        "--job-name", "seg-1", cwd=jobs_repo,
    )  # fmt: skip
    assert parsed.returncode == 0, parsed.stderr
    script = parsed.stdout
    assert script.startswith("#!/bin/bash\n#SBATCH --job-name=seg-1\n")
    assert "#SBATCH --output=/shared/ml/logs/%x-%j.out" in script
    assert "#SBATCH --time=10" in script
    assert "--checkpoint-dir /shared/ml/checkpoints/seg-1" in script
    refused = cajajejo(
        "jobs", "training", "parse-job", "train.yml", "-", "--backend", "slurm", "--namespace", "x", cwd=jobs_repo
    )
    assert refused.returncode == 2
    assert "--namespace: for Kubernetes only, not with --backend slurm" in refused.stderr
    no_workdir = cajajejo("jobs", "training", "parse-job", "train.yml", "-", "--backend", "slurm", cwd=jobs_repo)
    assert no_workdir.returncode == 2
    (line,) = no_workdir.stderr.strip().splitlines()
    assert line.startswith("error: train.yml: slurm.workdir: no Slurm workdir: set slurm.workdir in the config")
    kubernetes_only = cajajejo("jobs", "training", "parse-job", "train.yml", "-", "--workdir", "/x", cwd=jobs_repo)
    assert kubernetes_only.returncode == 2
    assert "--workdir: need --backend slurm" in kubernetes_only.stderr


def test_a_requeued_job_resumes_from_its_last_checkpoint_with_no_step_lost_or_repeated(
    jobs_repo: Path, slurm_cluster: SlurmCluster, mlflow_server: MlflowServer
) -> None:
    workdir = slurm_cluster.work_dir / "requeue"
    job_id = submit("train.yml", jobs_repo, workdir, step_delay=0.3)
    status = cajajejo("jobs", "status", job_id, "--backend", "slurm", cwd=jobs_repo)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"slurm job {job_id} (train-")
    wait_until(slurm_cluster, job_id, workdir, r"\[CHECKPOINT\] step=10 ")
    slurm_cluster.run("scontrol", "requeue", job_id)  # preemption: the job is stopped and queued again
    text = wait_until(slurm_cluster, job_id, workdir, r"\[DONE\] steps=", timeout=240)
    assert slurm_cluster.wait_for(job_id, "COMPLETED", timeout=60) == "COMPLETED"
    resumed = [int(step) for step in re.findall(r"\[RESUME\] from=step-\d+ epoch=\d+ step=(\d+) ", text)]
    assert len(resumed) == 1
    assert resumed[0] >= 10
    checkpoints = CheckpointDir(workdir / "checkpoints" / next(iter(re.findall(r"train-[a-z0-9-]+", status.stdout))))
    latest = checkpoints.latest()
    assert latest is not None
    total = latest.step
    assert "[DONE] steps=" + str(total) in text
    # Every step is in the training run's history; steps after the resume point are there once more
    # only when the stop had to be forced before a checkpoint (never here: SIGTERM stops at a step).
    steps = steps_logged(mlflow_server.uri, latest.metadata["mlflow_run_id"])
    assert sorted(set(steps)) == list(range(1, total + 1))
    assert sorted(steps) == list(range(1, total + 1)), f"steps logged twice after resuming at {resumed[0]}"


def test_at_its_time_limit_a_job_checkpoints_requeues_itself_and_finishes_exactly(
    jobs_repo: Path, slurm_cluster: SlurmCluster, mlflow_server: MlflowServer
) -> None:
    workdir = slurm_cluster.work_dir / "time-limit"
    # ~0.8 s a step, 40 steps: with start-up, longer than the one minute a run gets.
    job_id = submit("limited.yml", jobs_repo, workdir, step_delay=0.8)
    text = wait_until(slurm_cluster, job_id, workdir, r"\[DONE\] steps=", timeout=420)
    stops = re.findall(r"\[STOP\] step=(\d+) reason=SIGUSR1 checkpoint=step-(\d+)", text)
    assert stops, text[-3000:]
    assert all(int(step) == int(saved) for step, saved in stops)  # each stop checkpointed the step it stopped at
    assert "cajajejo: stopped on a signal from Slurm" in text
    # Every run resumed exactly at the newest checkpoint before it. (On a loaded machine a run may get
    # the signal before the trainer has started: it is requeued having done nothing, and logs no STOP.)
    last_checkpoint, resumed = 0, []
    for line in text.splitlines():
        if match := re.search(r"\[(?:CHECKPOINT|STOP)\] step=(\d+) ", line):
            last_checkpoint = int(match[1])
        elif match := re.search(r"\[RESUME\] from=step-\d+ epoch=\d+ step=(\d+) ", line):
            resumed.append(int(match[1]))
            assert resumed[-1] == last_checkpoint, line
    assert len(resumed) >= len(stops)
    assert slurm_cluster.wait_for(job_id, "COMPLETED", timeout=60) == "COMPLETED"
    runs = slurm_cluster.jobcomp_records(job_id)  # one line per run: the requeued ones, then the last
    assert len(runs) >= len(stops) + 1
    assert "TIMEOUT" not in {run.state for run in runs}
    (checkpoint_dir,) = (workdir / "checkpoints").iterdir()
    latest = CheckpointDir(checkpoint_dir).latest()
    assert latest is not None
    assert latest.step == 40  # trainer.max_steps, across every run
    steps = steps_logged(mlflow_server.uri, latest.metadata["mlflow_run_id"])
    assert sorted(steps) == list(range(1, max(steps) + 1))  # no step twice, none skipped, across the runs


def test_jobs_list_logs_and_delete_of_a_slurm_job(jobs_repo: Path, slurm_cluster: SlurmCluster) -> None:
    workdir = slurm_cluster.work_dir / "cancel"
    checked = cajajejo(
        "jobs", "training", "submit-job", "--path-to-config", "train.yml", "--backend", "slurm", "--workdir",
        str(workdir), "--dry-run", cwd=jobs_repo,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "checked by Slurm on localhost (sbatch --test-only; nothing written, nothing queued)" in checked.stdout
    assert not workdir.exists()
    job_id = submit("train.yml", jobs_repo, workdir, step_delay=2.0)
    wait_until(slurm_cluster, job_id, workdir, r"\[DDP\] world=1")
    listed = cajajejo("jobs", "list", "--backend", "slurm", cwd=jobs_repo)
    assert listed.returncode == 0, listed.stderr
    assert any(line.startswith(f"{job_id} ") and "RUNNING" in line for line in listed.stdout.splitlines())
    logs = cajajejo("logs", job_id, "--backend", "slurm", cwd=jobs_repo)
    assert logs.returncode == 0, logs.stderr
    assert "[DDP] world=1" in logs.stdout
    assert logs.stderr.startswith(f"{workdir}/logs/")
    deleted = cajajejo("jobs", "delete", job_id, "--backend", "slurm", "--yes", cwd=jobs_repo)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.startswith(f"cancelled slurm job {job_id} (train-")
    assert slurm_cluster.wait_for(job_id, "CANCELLED", timeout=30) == "CANCELLED"
    again = cajajejo("jobs", "delete", job_id, "--backend", "slurm", "--yes", cwd=jobs_repo)
    assert again.stdout.strip() == f"slurm job {job_id} had ended already: nothing to cancel"
    followed = cajajejo("logs", job_id, "--backend", "slurm", "--follow", cwd=jobs_repo)  # ends: the job has
    assert followed.returncode == 0
    assert "[DDP] world=1" in followed.stdout
    unknown = cajajejo("jobs", "status", "not-an-id", "--backend", "slurm", cwd=jobs_repo)
    assert unknown.returncode == 2
    assert "'not-an-id' is not a Slurm job id" in unknown.stderr


def test_an_evaluation_job_fetches_its_model_and_evaluates_it_on_slurm(
    jobs_repo: Path, slurm_cluster: SlurmCluster, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    from cajajejo.evaluation.tiny_model import build_tiny_model

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    run = client.create_run(client.create_experiment("slurm-models"), run_name="tiny")
    client.log_artifacts(run.info.run_id, str(build_tiny_model(tmp_path / "model")), "model")
    client.set_terminated(run.info.run_id)
    config = (REPO / EVAL_CONFIG).read_text().replace("http://127.0.0.1:5000", mlflow_server.uri)
    (jobs_repo / "eval.yml").write_text(config.replace("0" * 32, run.info.run_id))
    (jobs_repo / "run_specs.conf").write_text((REPO / RUN_SPECS).read_text())
    repo = git.Repo(jobs_repo)
    repo.index.add(["eval.yml", "run_specs.conf"])
    repo.index.commit("an evaluation")
    workdir = slurm_cluster.work_dir / "evaluation"
    result = cajajejo(
        "jobs", "evaluation", "submit-job", "--path-to-config", "eval.yml", "--path-to-helm-config", "run_specs.conf",
        "--backend", "slurm", "--workdir", str(workdir), cwd=jobs_repo,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    job_id = re.search(r"job (\d+)$", result.stdout.splitlines()[0])[1]  # type: ignore[index]
    assert slurm_cluster.wait_for(job_id, "COMPLETED", timeout=300) == "COMPLETED", the_log(workdir, job_id).read_text()
    experiment = client.get_experiment_by_name("debug")
    assert experiment is not None
    sha = repo.head.commit.hexsha
    evaluations = client.search_runs([experiment.experiment_id], filter_string=f"tags.config_git_sha = '{sha}'")
    assert len(evaluations) == 1
    assert evaluations[0].data.tags["config_path_git_repo"] == "eval.yml"
    assert any(name.startswith("simple_mcqa") for name in evaluations[0].data.metrics)


def test_workflows_cancel_ends_every_job_left(jobs_repo: Path, slurm_cluster: SlurmCluster) -> None:
    repo = git.Repo(jobs_repo)
    commit_configs(repo, "http://127.0.0.1:1")  # never reached: every job is cancelled before it trains
    workdir = slurm_cluster.work_dir / "cancelled-workflow"
    args = ["workflows", "train-eval", TRAIN_CONFIG, "--epochs", "2", "--epoch-steps", "4", "--steps-per-job-cap", "2"]
    submitted = cajajejo(*args, "--workdir", str(workdir), "--name", "gone", cwd=jobs_repo)
    assert submitted.returncode == 0, submitted.stderr
    cancelled = cajajejo("workflows", "cancel", str(workdir), cwd=jobs_repo)
    assert cancelled.returncode == 0, cancelled.stderr
    names = {f"gone-e{e}-{job}" for e in (0, 1) for job in ("s0", "s1", "eval")}
    assert cancelled.stdout.startswith("cancelled 6 job(s): ")
    assert set(cancelled.stdout.strip().split(": ", 1)[1].split(", ")) == names
    ids = json.loads((workdir / "workflow.json").read_text())["slurm_job_ids"]
    assert {slurm_cluster.wait_for(job_id, "CANCELLED", timeout=30) for job_id in ids.values()} == {"CANCELLED"}
    status = cajajejo("workflows", "status", str(workdir), cwd=jobs_repo)
    assert status.stdout.splitlines()[0].startswith(f"workflow gone in {workdir}: 0/6 jobs finished, 0/8 steps")
    rows = status.stdout.splitlines()
    assert sum(line.startswith("  gone-") and line.endswith("CANCELLED") for line in rows) == 6
    assert rows[-1].startswith("  did not complete: gone-e0-s0 CANCELLED, ")
    again = cajajejo("workflows", "cancel", str(workdir), cwd=jobs_repo)
    assert again.stdout.strip() == "cancelled 0 job(s)"
    # A folder holds one workflow: a second would share its checkpoints and overwrite its inputs.
    before = (workdir / "workflow.json").read_text()
    twice = cajajejo(*args, "--workdir", str(workdir), "--name", "gone", cwd=jobs_repo)
    assert twice.returncode == 2
    assert (
        twice.stderr.strip()
        == f"error: {workdir}: holds a workflow already: give another --workdir (or --name), or delete the folder"
    )
    assert (workdir / "workflow.json").read_text() == before
