"""`invoke submit-job-group` and `invoke get-job-logs` for a group, run as users run them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import git

from tests.standins.cloud_logging import CloudLoggingStandin, make_entry
from tests.standins.kubernetes_api import KubernetesApiStandin
from tests.test_tasks import invoke

GROUP = "jobs/groups/train-eval.debug.group.yml"


def test_submit_job_group_task(groups_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path) -> None:
    root = Path(str(groups_repo.working_tree_dir))
    dry = invoke("submit-job-group", "--group", GROUP, "--group-name", "other", "-d", cwd=root)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("group other validated by the cluster (dry run, nothing created)")
    assert kube_standin.objects == {}
    spec = tmp_path / "out" / "group.yaml"
    result = invoke("submit-job-group", GROUP, "-o", str(spec), "-n", "default", cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("group train-eval-debug submitted: namespace default")
    assert ("Job", "default", "train-eval-debug-trainer") in kube_standin.objects
    assert groups_repo.head.commit.hexsha in spec.read_text()


def test_submit_job_group_task_refuses_a_dirty_tree_in_one_line(
    groups_repo: git.Repo, kube_standin: KubernetesApiStandin
) -> None:
    root = Path(str(groups_repo.working_tree_dir))
    (root / GROUP).write_text((root / GROUP).read_text() + "# edited\n")
    result = invoke("submit-job-group", GROUP, cwd=root)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: refusing to submit from a dirty git tree")
    assert kube_standin.requests == []


def test_get_job_logs_task_reads_one_task_of_a_group(logging_standin: CloudLoggingStandin, tmp_path: Path) -> None:
    start = datetime.now(UTC) - timedelta(minutes=5)
    logging_standin.add(
        [make_entry(i, job=f"g-{t}", start=start, group="g", task=t) for i, t in enumerate(["a", "b", "a"])]
    )
    result = invoke("get-job-logs", "g", "--task", "a", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "2 entries"
    every = invoke("get-job-logs", "g", cwd=tmp_path)
    assert every.stdout.splitlines()[-1] == (
        "Hint: this group has 2 tasks (a, b). Use 'invoke get-job-logs g --task TASK' to view one."
    )
