"""The test cluster does what the Slurm backend will rely on: batch jobs and their output, two partitions
running side by side, afterok dependencies, USR1 to the batch script (on request and before a time limit),
requeue with SLURM_RESTART_COUNT, and how finished jobs ended (`sacct -c`)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.slurm.cluster import SlurmCluster

# The batch shell only runs a trap between commands, so scripts that wait for a signal sleep in the
# background and `wait`, which a trapped signal interrupts.
WAIT_LOOP = "while true; do sleep 1 & wait $!; done\n"


@pytest.fixture(scope="module", autouse=True)
def time_limited_job(slurm_cluster: SlurmCluster) -> tuple[str, float]:
    """A job with a 1-minute limit and a USR1 warning 50 s before it, submitted before this module's first
    test: 1 minute is the shortest limit and slurmctld checks limits every 30 s, so the other tests run
    while it waits. Its id and when it was submitted."""
    job = slurm_cluster.sbatch(
        f"#!/bin/bash\ntrap 'date +%s.%N > usr1-$SLURM_JOB_ID' USR1\n{WAIT_LOOP}",
        "--time=1",
        "--signal=B:USR1@50",
    )
    return job, time.time()


def wait_for_file(path: Path, timeout: float, cluster: SlurmCluster) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{path} was not written within {timeout} s\n{cluster.log_tails()}")


def test_batch_job_runs_and_its_output_file_has_what_it_printed(slurm_cluster: SlurmCluster) -> None:
    job = slurm_cluster.sbatch(
        '#!/bin/bash\necho "hello from $SLURM_JOB_ID on $SLURM_JOB_PARTITION"\necho oops >&2\n',
        "--output=out-%j.txt",
        "--error=err-%j.txt",
    )
    assert slurm_cluster.wait_for(job, "COMPLETED") == "COMPLETED"
    assert (slurm_cluster.work_dir / f"out-{job}.txt").read_text() == f"hello from {job} on train\n"
    assert (slurm_cluster.work_dir / f"err-{job}.txt").read_text() == "oops\n"


def test_two_partitions_run_jobs_side_by_side(slurm_cluster: SlurmCluster) -> None:
    # Each job waits for the other's file, so both finish only if both run at the same time.
    script = (
        "#!/bin/bash\ntouch started-$SLURM_JOB_PARTITION\n"
        "for _ in $(seq 100); do [ -e started-$OTHER ] && exit 0; sleep 0.1; done\nexit 1\n"
    )
    train = slurm_cluster.sbatch(script, "--partition=train", "--export=ALL,OTHER=eval")
    evaluation = slurm_cluster.sbatch(script, "--partition=eval", "--export=ALL,OTHER=train")
    assert slurm_cluster.wait_for(train, "COMPLETED") == "COMPLETED"
    assert slurm_cluster.wait_for(evaluation, "COMPLETED") == "COMPLETED"
    assert slurm_cluster.partitions == ("train", "eval")


def test_afterok_dependency_starts_only_after_the_first_job_ended(slurm_cluster: SlurmCluster) -> None:
    first = slurm_cluster.sbatch("#!/bin/bash\nsleep 2\ndate +%s.%N > first-ended\n")
    second = slurm_cluster.sbatch("#!/bin/bash\ndate +%s.%N > second-started\n", f"--dependency=afterok:{first}")
    slurm_cluster.wait_for(first, "RUNNING")
    reason = slurm_cluster.run("squeue", "--noheader", f"--jobs={second}", "--format=%T %r").stdout.split()
    assert reason == ["PENDING", "Dependency"]
    slurm_cluster.wait_for(second, "COMPLETED")
    work = slurm_cluster.work_dir
    assert float((work / "second-started").read_text()) >= float((work / "first-ended").read_text())


def test_a_failed_job_is_reported_by_sacct_and_its_dependents_are_cancelled(slurm_cluster: SlurmCluster) -> None:
    failing = slurm_cluster.sbatch("#!/bin/bash\nexit 3\n")
    dependent = slurm_cluster.sbatch("#!/bin/bash\ntouch must-not-exist\n", f"--dependency=afterok:{failing}")
    assert slurm_cluster.wait_for(failing, "FAILED") == "FAILED"
    # kill_invalid_depend: a dependency that can never be met cancels the job instead of leaving it pending.
    assert slurm_cluster.wait_for(dependent, "CANCELLED") == "CANCELLED"
    assert not (slurm_cluster.work_dir / "must-not-exist").exists()
    # The jobcomp file (what `sacct -c` reads) keeps how it ended after squeue has forgotten it.
    [run] = slurm_cluster.finished_runs(failing)
    assert (run.state, run.exit_code) == ("FAILED", "3:0")
    [record] = slurm_cluster.jobcomp_records(failing)
    assert record.fields["Partition"] == "train"


def test_usr1_reaches_the_batch_script(slurm_cluster: SlurmCluster) -> None:
    job = slurm_cluster.sbatch(f"#!/bin/bash\ntrap 'echo got-usr1 > usr1-$SLURM_JOB_ID; exit 0' USR1\n{WAIT_LOOP}")
    slurm_cluster.wait_for(job, "RUNNING")
    time.sleep(0.5)  # let bash install its trap
    slurm_cluster.run("scancel", "--signal=USR1", "--batch", job)
    assert wait_for_file(slurm_cluster.work_dir / f"usr1-{job}", 10, slurm_cluster) == "got-usr1\n"
    assert slurm_cluster.wait_for(job, "COMPLETED") == "COMPLETED"


def test_scontrol_requeue_runs_the_job_again_with_a_restart_count(slurm_cluster: SlurmCluster) -> None:
    job = slurm_cluster.sbatch(
        f"#!/bin/bash\necho $SLURM_RESTART_COUNT > run-$SLURM_JOB_ID-${{SLURM_RESTART_COUNT:-0}}\n{WAIT_LOOP}",
        "--requeue",
    )
    work = slurm_cluster.work_dir
    assert wait_for_file(work / f"run-{job}-0", 15, slurm_cluster) == "\n"  # unset on the first run
    slurm_cluster.run("scontrol", "requeue", job)
    # AuthInfo=cred_expire=5 bounds how long a requeued job must wait before it may start again.
    assert wait_for_file(work / f"run-{job}-1", 20, slurm_cluster) == "1\n"
    assert slurm_cluster.job_state(job) == "RUNNING"
    slurm_cluster.run("scancel", job)
    assert slurm_cluster.wait_for(job, "CANCELLED") == "CANCELLED"
    # One jobcomp line per run. Slurm 22.05 writes the requeued run's line after the job is pending
    # again, so its state there is PENDING, not REQUEUED: only the last line is how the job ended.
    runs = slurm_cluster.jobcomp_records(job)
    assert [run.state for run in runs][-1:] == ["CANCELLED"]
    assert len(runs) == 2
    assert runs[0].fields["StartTime"] < runs[1].fields["StartTime"]


def test_time_limit_sends_usr1_before_it_kills_the_job(
    slurm_cluster: SlurmCluster, time_limited_job: tuple[str, float]
) -> None:
    """Slow by nature (60-90 s after submission): see `time_limited_job`."""
    job, started = time_limited_job
    assert slurm_cluster.wait_for(job, "TIMEOUT", timeout=150) == "TIMEOUT"
    ended = time.time()
    got_usr1 = float((slurm_cluster.work_dir / f"usr1-{job}").read_text())
    assert started < got_usr1 < ended
    [run] = slurm_cluster.finished_runs(job)
    assert run.state == "TIMEOUT"
    # The warning came well before the kill (50 s before the limit, give or take the 30 s check interval);
    # jobcomp times are the machine's local time, to the second.
    [record] = slurm_cluster.jobcomp_records(job)
    killed = time.mktime(time.strptime(record.fields["EndTime"], "%Y-%m-%dT%H:%M:%S"))
    assert got_usr1 < killed - 5
