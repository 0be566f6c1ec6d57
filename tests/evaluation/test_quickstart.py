"""The README's first command, `cajajejo quickstart`, and the README's `evaluate --local` example,
run as users run them: fresh processes, from a folder that is not the repository."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import git
import pytest

from cajajejo.evaluation.debug_model import DEBUG_MODEL_RUN_ID, MODEL_EXPERIMENT, log_tiny_model
from cajajejo.evaluation.quickstart import local_tracking_uri
from tests.support import DEBUG_EXAMPLE, DEBUG_RUN_SPECS, REPO

HIDE_MODULES = """
import sys
class Hidden:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {hidden!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
sys.meta_path.insert(0, Hidden())
from cajajejo.cli import main
main(sys.argv[1:])
"""


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def _cajajejo(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cajajejo.cli", *args],
        cwd=cwd,
        env=env or _clean_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


def _repo_is_clean() -> bool:
    return not git.Repo(REPO).git.status("--porcelain", "--untracked-files=no")


def test_quickstart_from_any_folder_shows_its_steps_and_ends_with_the_result(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    result = _cajajejo("quickstart", cwd=tmp_path)  # not the repository root
    assert result.returncode == 0, result.stderr[-3000:]

    workdir = tmp_path / ".tmp/quickstart"
    uri = f"sqlite:///{workdir.resolve() / 'mlflow.db'}"
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout[-3000:]  # HELM's own logging went to its log file
    assert lines[0].startswith("MLflow run ")
    assert f" at {uri} (device: " in lines[0]
    log = Path(".tmp/quickstart/scratch/helm/output/helm-debug.log")
    assert lines[1] == f"HELM results: {log.parent / 'runs/debug'} (log: {log})"
    assert (tmp_path / log).stat().st_size > 1000
    ui = shlex.split(lines[2].removeprefix("look at them: "))
    assert ui[1:] == ["ui", "--backend-store-uri", uri]
    assert Path(ui[0]).is_absolute()
    assert os.access(ui[0], os.X_OK)  # works as shown, without activating the virtual environment

    steps = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert [step[:5] for step in steps] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert "run spec simple_mcqa:model=huggingface_model" in result.stderr
    assert "summarizing" in result.stderr
    assert "\r" not in result.stderr  # no progress bars

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(lines[0].split()[2])
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["job_name"] == "local"
    # The committed files themselves are evaluated: a clean clone gives a clean stamp.
    assert tags["config_path_git_repo"] == "jobs/evaluation/debug.job_config.yml"
    assert tags["helm_config_path_git_repo"] == "jobs/evaluation/app/debug.conf"
    head = git.Repo(REPO).head.commit.hexsha
    assert tags["config_git_sha"] == (head if _repo_is_clean() else f"{head}-dirty")
    assert tags["model_run_id"] != DEBUG_MODEL_RUN_ID
    assert any(name.startswith("simple_short_answer_qa/") for name in run.data.metrics)
    assert not (tmp_path / "mlruns").exists()  # artifacts stay under the workdir

    # The tiny model is made and logged once per MLflow, then reused.
    assert log_tiny_model(workdir / "scratch", local_tracking_uri(workdir)) == tags["model_run_id"]
    experiment = client.get_experiment_by_name(MODEL_EXPERIMENT)
    assert experiment is not None
    assert len(client.search_runs([experiment.experiment_id])) == 1


def test_the_readme_container_example_runs_as_written(tmp_path: Path) -> None:
    """`docker run ... evaluate --local` with the debug files mounted at /etc/configs (here a folder)."""
    from mlflow.tracking import MlflowClient

    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "eval_config.yml").write_text(DEBUG_EXAMPLE.read_text())
    (configs / "run_specs.conf").write_text(DEBUG_RUN_SPECS.read_text())
    env = {
        **_clean_env(),
        "CAJAJEJO_CONFIG_DIR": str(configs),
        "CONFIG_VERSION": "debug",
        "JOB_NAME": "debug",
        "HELM_CONFIG_PATH_GIT_REPO": "jobs/evaluation/app/debug.conf",
        "CONFIG_PATH_GIT_REPO": "jobs/evaluation/debug.job_config.yml",
    }
    result = _cajajejo("evaluate", "--local", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(result.stdout.splitlines()[0].split()[2])
    assert run.data.tags["config_git_sha"] == "debug"
    assert run.data.tags["job_name"] == "debug"
    assert run.data.tags["model_run_id"] != DEBUG_MODEL_RUN_ID
    # The config is logged as written: the debug model's id is resolved, never written into it.
    config_artifact = client.download_artifacts(run.info.run_id, "configs/eval_config.yml", str(tmp_path))
    assert Path(config_artifact).read_text() == DEBUG_EXAMPLE.read_text()


@pytest.mark.parametrize(
    "args",
    [("quickstart",), ("evaluate", "--local"), ("models", "download", "--config", "c.yml", "--scratch-dir", "s")],
)
def test_a_light_install_says_which_extra_to_install(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", HIDE_MODULES.format(hidden={"mlflow", "helm"}), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: cajajejo {' '.join(args[:2]) if args[0] == 'models' else args[0]}: needs the ")
    assert "mlflow, helm are not installed; install it with: bash scripts/install.sh" in line
    assert "pip install 'cajajejo[evaluation]'" in line
    assert list(tmp_path.iterdir()) == []  # nothing made


def test_quickstart_with_a_bad_config_makes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("version: v4\n")
    result = _cajajejo("quickstart", "--config", str(bad), "--workdir", str(tmp_path / "work"), cwd=tmp_path)
    assert result.returncode == 2
    assert not (tmp_path / "work").exists()
