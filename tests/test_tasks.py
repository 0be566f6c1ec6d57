"""The invoke tasks, run as users run them, with stand-ins for the cluster and fake docker/gcloud on PATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import git
import pytest

from tests.standins.cloud_logging import CloudLoggingStandin, make_entry
from tests.standins.kubernetes_api import KubernetesApiStandin
from tests.support import REPO

FAKE_TOOL = """#!{python}
import json, os, sys
with open(os.environ["FAKE_TOOL_LOG"], "a") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\\n")
sys.exit(int(os.environ.get("FAKE_TOOL_EXIT", "0")))
"""


def invoke(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(REPO), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`docker` and `gcloud` that only record their arguments; returns the log file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("docker", "gcloud"):
        tool = bin_dir / name
        tool.write_text(FAKE_TOOL.format(python=sys.executable))
        tool.chmod(0o755)
    log = tmp_path / "tools.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TOOL_LOG", str(log))
    return log


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_submit_evaluation_job_task(jobs_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path) -> None:
    root = Path(jobs_repo.working_tree_dir or "")
    spec = tmp_path / "out" / "my-job.yml"
    result = invoke(
        "submit-evaluation-job",
        "jobs/evaluation/example.mlflow.job_config.yml",
        "jobs/evaluation/app/run_specs.conf",
        "--kubernetes-job-spec-output-path",
        str(spec),
        cwd=root,
    )
    assert result.returncode == 0, result.stderr
    name = result.stdout.split()[1]
    assert f"invoke get-job-logs {name}" in result.stdout
    assert f"name: {name}" in spec.read_text()
    assert ("Job", "default", name) in kube_standin.objects
    assert jobs_repo.head.commit.hexsha in spec.read_text()


def test_submit_task_refuses_a_dirty_tree_in_one_line(jobs_repo: git.Repo, kube_standin: KubernetesApiStandin) -> None:
    root = Path(jobs_repo.working_tree_dir or "")
    (root / "README.md").write_text("dirty\n")
    result = invoke(
        "submit-evaluation-job", "jobs/evaluation/debug.job_config.yml", "jobs/evaluation/app/debug.conf", cwd=root
    )
    assert result.returncode == 2  # the user's to fix: commit, or pass --allow-dirty-repo
    assert result.stderr.strip().startswith("error: refusing to submit from a dirty git tree")
    assert "Traceback" not in result.stderr
    assert kube_standin.requests == []


def test_bad_config_through_the_task_exits_2(jobs_repo: git.Repo, kube_standin: KubernetesApiStandin) -> None:
    root = Path(jobs_repo.working_tree_dir or "")
    config = root / "jobs/evaluation/debug.job_config.yml"
    config.write_text(config.read_text().replace("memory: 4Gi", "memory: lots"))
    jobs_repo.index.add(["jobs/evaluation/debug.job_config.yml"])
    jobs_repo.index.commit("bad memory")
    result = invoke(
        "submit-evaluation-job", "jobs/evaluation/debug.job_config.yml", "jobs/evaluation/app/debug.conf", cwd=root
    )
    assert result.returncode == 2
    assert "compute_config.memory" in result.stderr
    assert kube_standin.requests == []


def test_get_job_logs_task(logging_standin: CloudLoggingStandin, tmp_path: Path) -> None:
    start = datetime.now(UTC) - timedelta(days=2)
    logging_standin.add([make_entry(i, job="eval-amusing-sloth", start=start) for i in range(5)])
    output = tmp_path / ".tmp" / "logs.json"
    result = invoke(
        "get-job-logs",
        "eval-amusing-sloth",
        "--shift-unit",
        "days",
        "--shift-amount",
        "3",
        "--output-path",
        str(output),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(output.read_text())) == 5
    assert 'timestamp>="' in logging_standin.filters[0]


def test_build_and_push_tags_with_the_commit(
    jobs_repo: git.Repo, fake_tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(jobs_repo.working_tree_dir or "")
    (root / "evaluation.Dockerfile").write_text("FROM scratch\n")
    jobs_repo.index.add(["evaluation.Dockerfile"])
    jobs_repo.index.commit("image")
    sha = jobs_repo.head.commit.hexsha
    env = {"CAJAJEJO_REGISTRY": "europe-west4-docker.pkg.dev/team-project/jobs"}
    result = invoke("build-and-push-job-image", "evaluation", cwd=root / "jobs", env=env)
    assert result.returncode == 0, result.stderr
    image = f"europe-west4-docker.pkg.dev/team-project/jobs/evaluation:{sha[:12]}"
    assert _calls(fake_tools) == [
        [
            "docker",
            "build",
            "--file",
            str(root / "evaluation.Dockerfile"),
            "--tag",
            image,
            "--label",
            f"org.opencontainers.image.revision={sha}",
            str(root),
        ],
        ["docker", "push", image],
    ]
    assert f"image_tag: {sha[:12]}" in result.stdout


def test_build_and_push_refuses_a_dirty_tree_and_bad_tags(jobs_repo: git.Repo, fake_tools: Path) -> None:
    root = Path(jobs_repo.working_tree_dir or "")
    (root / "evaluation.Dockerfile").write_text("FROM scratch\n")
    env = {"CAJAJEJO_REGISTRY": "europe-west4-docker.pkg.dev/p/jobs"}
    dirty = invoke("build-and-push-job-image", "evaluation", cwd=root, env=env)
    assert dirty.returncode == 2
    assert "refusing to build an image from a dirty git tree" in dirty.stderr
    jobs_repo.index.add(["evaluation.Dockerfile"])
    jobs_repo.index.commit("image")
    hostile = invoke("build-and-push-job-image", "evaluation", "--tag", "x; rm -rf /", cwd=root, env=env)
    assert hostile.returncode == 2
    assert "is not an image tag" in hostile.stderr
    traversal = invoke("build-and-push-job-image", "../evaluation", cwd=root, env=env)
    assert traversal.returncode == 2
    assert _calls(fake_tools) == []


def test_a_failing_tool_is_one_line(jobs_repo: git.Repo, fake_tools: Path) -> None:
    root = Path(jobs_repo.working_tree_dir or "")
    (root / "evaluation.Dockerfile").write_text("FROM scratch\n")
    jobs_repo.index.add(["evaluation.Dockerfile"])
    jobs_repo.index.commit("image")
    env = {"CAJAJEJO_REGISTRY": "europe-west4-docker.pkg.dev/p/jobs", "FAKE_TOOL_EXIT": "3"}
    result = invoke("build-and-push-job-image", "evaluation", cwd=root, env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "error: `docker build --file ...` failed with exit code 3"
    assert len(_calls(fake_tools)) == 1  # no push after a failed build


def test_logins_use_the_settings(fake_tools: Path, tmp_path: Path) -> None:
    env = {
        "CAJAJEJO_REGISTRY": "europe-west4-docker.pkg.dev/team-project/jobs",
        "CAJAJEJO_GKE_CLUSTER": "eval-cluster",
        "CAJAJEJO_GCP_REGION": "europe-west4",
        "CAJAJEJO_GCP_PROJECT": "team-project",
    }
    assert invoke("docker-login", cwd=tmp_path, env=env).returncode == 0
    assert invoke("authenticate-kubectl", cwd=tmp_path, env=env).returncode == 0
    assert _calls(fake_tools) == [
        ["gcloud", "auth", "configure-docker", "europe-west4-docker.pkg.dev", "--quiet"],
        [
            "gcloud",
            "container",
            "clusters",
            "get-credentials",
            "eval-cluster",
            "--location",
            "europe-west4",
            "--project",
            "team-project",
        ],
    ]


def test_missing_or_odd_settings_are_named(fake_tools: Path, tmp_path: Path) -> None:
    missing = invoke("authenticate-kubectl", cwd=tmp_path)
    assert missing.returncode == 1
    assert "setting 'gke_cluster' is needed to authenticate kubectl" in missing.stderr
    odd = invoke(
        "authenticate-kubectl",
        cwd=tmp_path,
        env={"CAJAJEJO_GKE_CLUSTER": "--impersonate-service-account=x", "CAJAJEJO_GCP_REGION": "europe-west4"},
    )
    assert odd.returncode == 2
    assert "setting gke_cluster" in odd.stderr
    assert _calls(fake_tools) == []


def test_a_missing_tool_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"PATH": str(tmp_path), "CAJAJEJO_REGISTRY": "europe-west4-docker.pkg.dev/p/jobs"}
    result = invoke("docker-login", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "gcloud is not installed or not on PATH; install the Google Cloud CLI" in result.stderr


def test_the_trace_variable_adds_a_traceback_and_keeps_the_exit_code(
    jobs_repo: git.Repo, kube_standin: KubernetesApiStandin
) -> None:
    root = Path(jobs_repo.working_tree_dir or "")
    args = ("submit-evaluation-job", "jobs/evaluation/missing.yml", "jobs/evaluation/app/debug.conf")
    plain = invoke(*args, cwd=root)
    traced = invoke(*args, cwd=root, env={"CAJAJEJO_TRACE": "1"})
    assert plain.returncode == traced.returncode == 2, traced.stderr
    assert "Traceback (most recent call last)" in traced.stderr
    assert "Traceback" not in plain.stderr


def test_short_flags_are_unambiguous_and_leave_h_to_help() -> None:
    import tasks as task_module
    from invoke.tasks import Task

    tasks = [value for value in vars(task_module).values() if isinstance(value, Task)]
    assert len(tasks) == 7
    for task in tasks:
        names = [name for argument in task.get_arguments() for name in argument.names]
        short = [name for name in names if len(name) == 1]
        assert len(names) == len(set(names)), task.name
        assert "h" not in short, task.name
    help_text = invoke("--help", "submit-evaluation-job", cwd=REPO).stdout
    assert "-r STRING, --helm-config=STRING" in help_text
    logs_help = invoke("--help", "get-job-logs", cwd=REPO).stdout
    assert "-s INT, --shift-amount=INT" in logs_help
    assert "-u STRING, --shift-unit=STRING" in logs_help


def test_submit_training_job_task(jobs_repo: git.Repo, kube_standin: KubernetesApiStandin) -> None:
    root = Path(jobs_repo.working_tree_dir or "")
    target = root / "jobs" / "training" / "smoke.job_config.yml"
    target.parent.mkdir(parents=True)
    target.write_text((REPO / "jobs" / "training" / "smoke.job_config.yml").read_text())
    jobs_repo.index.add([str(target)])
    jobs_repo.index.commit("training")
    result = invoke("submit-training-job", "-c", "jobs/training/smoke.job_config.yml", "-n", "default", cwd=root)
    assert result.returncode == 0, result.stderr
    name = result.stdout.split()[1]
    assert name.startswith("train-")
    assert {kind for kind, _, obj in kube_standin.objects if obj == name} == {"Job", "Service", "ConfigMap"}
