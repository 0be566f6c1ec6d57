"""Shared fixtures: real git repositories, the HTTP stand-ins, one real `mlflow server`, and an environment
free of user settings."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import git
import pytest
from hypothesis import settings

from tests.standins.cloud_logging import CloudLoggingStandin
from tests.standins.kubernetes_api import KubernetesApiStandin
from tests.support import (
    DEBUG_EXAMPLE,
    DEBUG_RUN_SPECS,
    MLFLOW_EXAMPLE,
    RUN_SPECS,
    MlflowServer,
    require_tool,
)

# Property tests draw the same examples on every run, so a run passes or fails the same everywhere;
# `HYPOTHESIS_PROFILE=explore` draws new ones (run it when changing a parser or a renderer).
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(autouse=True)
def _no_user_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's own settings, kubeconfig or Google project."""

    for name in list(os.environ):
        if name.startswith("CAJAJEJO_") or name in ("KUBECONFIG", "GOOGLE_CLOUD_PROJECT", "LOGGING_EMULATOR_HOST"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", "/nonexistent-home-for-tests")


@pytest.fixture
def jobs_repo(tmp_path: Path) -> git.Repo:
    """A real git repository with the example job files committed under jobs/evaluation/."""
    root = tmp_path / "jobs-repo"
    folder = root / "jobs" / "evaluation"
    (folder / "app").mkdir(parents=True)
    for source, target in (
        (MLFLOW_EXAMPLE, folder / "example.mlflow.job_config.yml"),
        (DEBUG_EXAMPLE, folder / "debug.job_config.yml"),
        (RUN_SPECS, folder / "app" / "run_specs.conf"),
        (DEBUG_RUN_SPECS, folder / "app" / "debug.conf"),
    ):
        shutil.copyfile(source, target)
    (root / "README.md").write_text("jobs\n")
    repo = git.Repo.init(root)
    with repo.config_writer() as config:
        config.set_value("user", "name", "Test User")
        config.set_value("user", "email", "test@example.com")
        config.set_value("commit", "gpgsign", "false")
    repo.index.add(["README.md", "jobs"])
    repo.index.commit("jobs")
    return repo


@pytest.fixture
def kube_standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubernetesApiStandin]:
    """A Kubernetes API stand-in, with KUBECONFIG pointing at it."""
    standin = KubernetesApiStandin()
    monkeypatch.setenv("KUBECONFIG", str(standin.write_kubeconfig(tmp_path / "kubeconfig")))
    try:
        yield standin
    finally:
        standin.close()


@pytest.fixture
def logging_standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudLoggingStandin]:
    """A Cloud Logging stand-in, reached through LOGGING_EMULATOR_HOST, project `test-project`."""
    standin = CloudLoggingStandin()
    monkeypatch.setenv("LOGGING_EMULATOR_HOST", standin.host)
    monkeypatch.setenv("CAJAJEJO_GCP_PROJECT", "test-project")
    try:
        yield standin
    finally:
        standin.close()


@pytest.fixture
def in_repo(jobs_repo: git.Repo, monkeypatch: pytest.MonkeyPatch) -> git.Repo:
    """The jobs repository, as the working directory (where users run cajajejo from)."""
    monkeypatch.chdir(jobs_repo.working_tree_dir or ".")
    return jobs_repo


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One real `mlflow server` per session (sqlite backend, served artifacts) on a free port of 127.0.0.1."""
    from cajajejo.local_mlflow import serve_mlflow

    with serve_mlflow(tmp_path_factory.mktemp("mlflow-server"), require_tool("mlflow")) as uri:
        yield MlflowServer(uri)
