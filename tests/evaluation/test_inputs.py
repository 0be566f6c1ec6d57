"""Where an evaluation's inputs come from: the job's contract, or the local repository with --local."""

from __future__ import annotations

from pathlib import Path

import git
import pytest

from cajajejo.errors import CajajejoError, UserInputError
from cajajejo.evaluation.inputs import LOCAL_SCRATCH, resolve_inputs

JOB_ENV = {
    "CONFIG_VERSION": "abc123",
    "CONFIG_PATH_GIT_REPO": "jobs/evaluation/x.yml",
    "HELM_CONFIG_PATH_GIT_REPO": "jobs/evaluation/app/x.conf",
    "JOB_NAME": "eval-x",
}


def _configs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "eval_config.yml").write_text("version: v4\n")
    (folder / "run_specs.conf").write_text("entries: []\n")
    return folder


def test_a_job_reads_the_container_contract(tmp_path: Path) -> None:
    configs = _configs(tmp_path / "configs")
    env = {**JOB_ENV, "CAJAJEJO_CONFIG_DIR": str(configs), "CAJAJEJO_SCRATCH_DIR": str(tmp_path / "s")}
    inputs = resolve_inputs(local=False, environ=env)
    assert inputs.config_path == configs / "eval_config.yml"
    assert inputs.helm_config_path == configs / "run_specs.conf"
    assert inputs.scratch_dir == tmp_path / "s"
    assert (inputs.config_version, inputs.job_name) == ("abc123", "eval-x")


def test_defaults_are_the_container_paths(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"/etc/configs/eval_config\.yml: no such file"):
        resolve_inputs(local=False, environ=JOB_ENV)


def test_a_job_without_its_variables_says_which(tmp_path: Path) -> None:
    configs = _configs(tmp_path / "configs")
    with pytest.raises(CajajejoError, match="CONFIG_VERSION, JOB_NAME not set"):
        resolve_inputs(
            local=False,
            environ={k: v for k, v in JOB_ENV.items() if k not in ("CONFIG_VERSION", "JOB_NAME")}
            | {"CAJAJEJO_CONFIG_DIR": str(configs)},
        )


def test_local_runs_are_stamped_from_the_repository(jobs_repo: git.Repo) -> None:
    root = Path(jobs_repo.working_tree_dir or "")
    config = root / "jobs/evaluation/debug.job_config.yml"
    specs = root / "jobs/evaluation/app/debug.conf"
    inputs = resolve_inputs(local=True, config=config, helm_config=specs, environ={})
    assert inputs.config_version == jobs_repo.head.commit.hexsha
    assert inputs.config_path_in_repo == "jobs/evaluation/debug.job_config.yml"
    assert inputs.helm_config_path_in_repo == "jobs/evaluation/app/debug.conf"
    assert inputs.job_name == "local"
    assert inputs.scratch_dir == LOCAL_SCRATCH
    (root / "README.md").write_text("dirty\n")
    dirty = resolve_inputs(local=True, config=config, helm_config=specs, environ={"JOB_NAME": "mine"})
    assert dirty.config_version == jobs_repo.head.commit.hexsha + "-dirty"
    assert dirty.job_name == "mine"  # what the environment says wins


def test_local_runs_outside_a_repository_say_so(tmp_path: Path) -> None:
    configs = _configs(tmp_path / "configs")
    inputs = resolve_inputs(
        local=True, config=configs / "eval_config.yml", helm_config=configs / "run_specs.conf", environ={}
    )
    assert inputs.config_version == "unversioned"
