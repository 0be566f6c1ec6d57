"""Fixtures for job groups: the example group files committed in a real git repository."""

from __future__ import annotations

import shutil
from pathlib import Path

import git
import pytest

from tests.support import REPO

# What the example groups name, as the repository holds it.
EXAMPLE_FILES = (
    "jobs/groups",
    "jobs/evaluation/debug.job_config.yml",
    "jobs/evaluation/app/debug.conf",
    "jobs/evaluation/app/run_specs.conf",
)


@pytest.fixture
def groups_repo(in_repo: git.Repo) -> git.Repo:
    """The jobs repository (the working directory) with the example groups and the files they name committed."""
    root = Path(str(in_repo.working_tree_dir))
    for name in EXAMPLE_FILES:
        source, target = REPO / name, root / name
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    in_repo.index.add(["jobs"])
    in_repo.index.commit("job groups")
    return in_repo


@pytest.fixture
def groups_dir(tmp_path: Path) -> Path:
    """A copy of jobs/ (so the examples' relative paths resolve), returning its groups folder."""
    shutil.copytree(REPO / "jobs", tmp_path / "jobs")
    return tmp_path / "jobs" / "groups"
