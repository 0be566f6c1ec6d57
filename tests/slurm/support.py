"""What the Slurm tests share besides the cluster: running the command as a user does, committed configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import git

from tests.support import REPO

TRAIN_CONFIG = "jobs/training/slurm.debug.job_config.yml"
EVAL_CONFIG = "jobs/evaluation/debug.job_config.yml"
RUN_SPECS = "jobs/evaluation/app/debug.conf"


def cajajejo(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it: a fresh process, with this session's environment (SLURM_CONF of the
    test cluster) and `env` added."""
    return subprocess.run(
        [sys.executable, "-m", "cajajejo.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def new_repo(root: Path) -> git.Repo:
    repo = git.Repo.init(root)
    with repo.config_writer() as config:
        config.set_value("user", "name", "test").set_value("user", "email", "test@example.com")
    return repo


def commit_configs(repo: git.Repo, tracking_uri: str) -> Path:
    """The example configs, pointed at `tracking_uri`, committed (the git gate wants them so); the root."""
    root = Path(str(repo.working_tree_dir))
    for name in (TRAIN_CONFIG, EVAL_CONFIG, RUN_SPECS):
        text = (REPO / name).read_text().replace("http://127.0.0.1:5000", tracking_uri)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    repo.index.add([TRAIN_CONFIG, EVAL_CONFIG, RUN_SPECS])
    repo.index.commit("workflow configs")
    return root
