"""What the Slurm backend asks of Slurm's commands, and how it reads their answers, with a recording host
(the real cluster's tests are beside this file; these are the cases it cannot stage cheaply)."""

from __future__ import annotations

import errno
import fcntl
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from cajajejo.backends.hosts import CommandResult
from cajajejo.backends.jobs import SlurmJobs
from cajajejo.backends.slurm import SlurmCluster
from cajajejo.workflows import state
from cajajejo.workflows.follow import Workflow, cancel_workflow, status_lines
from cajajejo.workflows.plan import plan_train_eval


class RecordingHost:
    """Answers each command with the canned output for its program; records argv and input."""

    name = "recorded"

    def __init__(self, outputs: Mapping[str, str]) -> None:
        self.outputs = dict(outputs)
        self.calls: list[tuple[tuple[str, ...], str | None]] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        timeout: float = 60,
    ) -> CommandResult:
        self.calls.append((tuple(argv), input))
        return CommandResult(tuple(argv), 0, self.outputs.get(argv[0], ""), "")

    def write_file(self, path: str, text: str, *, mode: int = 0o644) -> None:
        raise AssertionError("nothing is written here")

    def read_file(self, path: str) -> str | None:
        return None

    def read_bytes_from(self, path: str, offset: int) -> bytes | None:
        return None

    def make_dirs(self, path: str) -> None:
        raise AssertionError("nothing is made here")

    def close(self) -> None:
        pass


def test_a_dependent_job_is_cancelled_when_its_dependency_fails_and_checks_write_nothing() -> None:
    host = RecordingHost({"sbatch": "17\n"})
    cluster = SlurmCluster(host)
    cluster.check("#!/bin/bash\necho hi\n", what="job x")
    assert cluster.submit("/w/jobs/b/job.sbatch", workdir="/w", after_ok=["12", "13"]) == "17"
    (check, script), (submit, _) = host.calls
    assert (check, script) == (("sbatch", "--test-only"), "#!/bin/bash\necho hi\n")  # on stdin: no file
    # Without --kill-on-invalid-dep, Slurm leaves a dependent of a failed job pending forever.
    assert submit == (
        "sbatch",
        "--parsable",
        "--chdir=/w",
        "--dependency=afterok:12:13",
        "--kill-on-invalid-dep=yes",
        "/w/jobs/b/job.sbatch",
    )
    with pytest.raises(ValueError, match="is not a Slurm job id"):
        cluster.submit("/s", workdir="/w", after_ok=["1;rm -rf /"])


def test_jobs_list_takes_array_and_heterogeneous_job_ids() -> None:
    rows = [
        "5001_[1-4]|arr|PENDING|Priority|N/A|N/A",
        "123+0|het|RUNNING|None|2026-11-27T03:00:00|N/A",
        "99|x|COMPLETED|None|a|b",
    ]
    lines = SlurmJobs(SlurmCluster(RecordingHost({"squeue": "\n".join(rows) + "\n"}))).list_jobs()
    assert [line.split()[0] for line in lines[1:]] == ["5001_[1-4]", "123+0", "99"]


def test_state_json_is_rebuilt_where_the_filesystem_has_no_locks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_train_eval("wf", str(tmp_path), epochs=1, epoch_steps=2, steps_per_job_cap=2)
    (tmp_path / state.WORKFLOW_FILE).write_text(json.dumps(plan.to_dict()))

    def no_locks(handle: Any, operation: int) -> None:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    recorded = state.record_finished(tmp_path, "wf-e0-s0")
    assert [job["finished"] is not None for job in recorded["jobs"]] == [True, False]
    assert json.loads((tmp_path / state.STATE_FILE).read_text())["jobs"][0]["finished"]["job"] == "wf-e0-s0"
    assert "no lock (Function not implemented)" in capsys.readouterr().err


def test_status_names_what_did_not_complete_and_cancel_releases_the_evaluations_holds() -> None:
    plan = plan_train_eval("wf", "/w", epochs=1, epoch_steps=2, steps_per_job_cap=2)
    record = {**plan.to_dict(), "slurm_job_ids": {"wf-e0-s0": "7", "wf-e0-eval": "8"}}
    squeue = "7|wf-e0-s0|FAILED|NonZeroExitCode|t1|t2\n8|wf-e0-eval|PENDING|DependencyNeverSatisfied|N/A|N/A\n"
    host = RecordingHost({"squeue": squeue})
    workflow = Workflow("/w", record, {}, 1)
    lines = status_lines(workflow, SlurmCluster(host))
    assert lines[-2].endswith("PENDING (DependencyNeverSatisfied)")  # the whole reason, not cut
    assert lines[-1].startswith("  did not complete: wf-e0-s0 FAILED (their logs: /w/logs/<job>-<id>.out)")
    assert cancel_workflow(workflow, SlurmCluster(host)) == ["wf-e0-eval"]
    assert ("scancel", "8") in [argv for argv, _ in host.calls]
    assert ("rm", "-rf", "--", "/w/checkpoints/holds/epoch-eval") in [argv for argv, _ in host.calls]
