"""The train-eval workflow's plan (plain data) and the mistakes `workflows train-eval` refuses before it
touches a cluster: one line each, exit 2, nothing written."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cajajejo.workflows.plan import EVALUATE, TRAIN, plan_train_eval
from tests.slurm.support import EVAL_CONFIG, RUN_SPECS, TRAIN_CONFIG, cajajejo, commit_configs, new_repo


@given(epochs=st.integers(1, 6), epoch_steps=st.integers(1, 40), cap=st.integers(1, 50))
def test_segments_cover_every_step_once_and_each_job_waits_only_for_what_it_needs(
    epochs: int, epoch_steps: int, cap: int
) -> None:
    plan = plan_train_eval("wf", "/w", epochs=epochs, epoch_steps=epoch_steps, steps_per_job_cap=cap)
    training = plan.training()
    covered = [step for job in training for step in range(job.start_step, job.end_step)]
    assert covered == list(range(epochs * epoch_steps))  # in order, none twice, none missing
    assert all(0 < job.end_step - job.start_step <= cap for job in training)
    names = [job.name for job in plan.jobs]
    assert len(set(names)) == len(names)
    for i, job in enumerate(plan.jobs):
        assert all(names.index(before) < i for before in job.after)  # submittable in order
    for earlier, later in itertools.pairwise(training):
        assert later.after == (earlier.name,)  # training is one chain
    evaluations = plan.evaluations()
    assert [job.end_step for job in evaluations] == [epoch_steps * (e + 1) for e in range(epochs)]
    by_name = {job.name: job for job in plan.jobs}
    for evaluation in evaluations:
        (after,) = evaluation.after
        assert by_name[after].kind == TRAIN
        assert by_name[after].end_step == evaluation.end_step
        assert by_name[after].ends_epoch
        assert all(evaluation.name not in job.after for job in plan.jobs)  # nothing waits for an evaluation
    assert sum(job.ends_epoch for job in training) == epochs
    assert {job.kind for job in plan.jobs} == {TRAIN, EVALUATE}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    repository = new_repo(root)
    commit_configs(repository, "http://127.0.0.1:5000")
    script_config = root / "script.yml"
    text = (root / TRAIN_CONFIG).read_text()
    start = text.index("  trainer:\n")
    end = text.index("  checkpoints:\n")
    script_config.write_text(text[:start] + "  script: {path: /app/train.py}\n" + text[end:])
    repository.index.add(["script.yml"])
    repository.index.commit("a script config")
    return root


def _train_eval(root: Path, *extra: str) -> tuple[int, list[str], str]:
    args = ["workflows", "train-eval", TRAIN_CONFIG, "--epoch-steps", "10", "--steps-per-job-cap", "4"]
    result = cajajejo(*args, "--workdir", str(root / "wf"), "--eval-config", EVAL_CONFIG, "--helm-config", RUN_SPECS,
                      *extra, cwd=root)  # fmt: skip
    return result.returncode, result.stderr.strip().splitlines(), result.stdout


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--name", "has space"], "error: --name: 'has space' must be letters, digits, '_' and '-'"),
        (["--name", "my-packjob"], "error: --name: 'my-packjob' must be letters, digits, '_' and '-'"),
        (["--partition-train", "a b"], "error: --partition-train: 'a b' is not a Slurm partition name"),
        (["--workdir", "/shared/my jobs"], "error: --workdir: '/shared/my jobs' must be an absolute path"),
    ],
)
def test_bad_options_get_one_line_and_nothing_is_written(repo: Path, extra: list[str], expected: str) -> None:
    code, errors, _ = _train_eval(repo, "--dry-run", *extra)
    assert code == 2
    (line,) = errors
    assert line.startswith(expected), line
    assert not (repo / "wf").exists()


def test_a_config_with_a_script_or_half_an_evaluation_is_refused(repo: Path) -> None:
    result = cajajejo(
        "workflows", "train-eval", "script.yml", "--epoch-steps", "4", "--steps-per-job-cap", "2", "--dry-run",
        cwd=repo,
    )  # fmt: skip
    assert result.returncode == 2
    assert "script.yml: training.script: a train-eval workflow runs the built-in trainer" in result.stderr
    half = cajajejo(
        "workflows", "train-eval", TRAIN_CONFIG, "--epoch-steps", "4", "--steps-per-job-cap", "2",
        "--eval-config", EVAL_CONFIG, cwd=repo,
    )  # fmt: skip
    assert half.returncode == 2
    assert "give both --eval-config and --helm-config, or neither" in half.stderr


def test_a_dirty_input_is_refused_and_the_dry_run_writes_nothing(repo: Path) -> None:
    code, _, out = _train_eval(repo, "--dry-run")
    assert code == 0
    assert out.splitlines()[-1] == "dry run: nothing written, nothing submitted"
    assert not (repo / "wf").exists()
    (repo / TRAIN_CONFIG).write_text((repo / TRAIN_CONFIG).read_text() + "\n# changed\n")
    code, errors, _ = _train_eval(repo, "--dry-run")
    assert code == 2
    assert errors[0].startswith("error: refusing to submit from a dirty git tree")
