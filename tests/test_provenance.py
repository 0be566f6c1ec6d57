"""The git gate, against real repositories: clean, modified, untracked, detached, from a subfolder."""

from __future__ import annotations

from pathlib import Path

import git
import pytest

from cajajejo.errors import EXIT_BAD_INPUT, UserInputError
from cajajejo.provenance import DirtyRepositoryError, provenance_for, require_clean_tree

CONFIG = Path("jobs/evaluation/example.mlflow.job_config.yml")
SPECS = Path("jobs/evaluation/app/run_specs.conf")


def _root(repo: git.Repo) -> Path:
    return Path(repo.working_tree_dir or "")


def test_clean_tree_stamps_head_and_repository_paths(jobs_repo: git.Repo) -> None:
    root = _root(jobs_repo)
    stamps = provenance_for(root / CONFIG, root / SPECS)
    assert stamps.config_version == jobs_repo.head.commit.hexsha
    assert len(stamps.config_version) == 40
    assert stamps.config_path == "jobs/evaluation/example.mlflow.job_config.yml"
    assert stamps.helm_config_path == "jobs/evaluation/app/run_specs.conf"


def test_paths_are_relative_to_the_root_whatever_the_working_directory(
    jobs_repo: git.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(_root(jobs_repo) / "jobs" / "evaluation" / "app")
    stamps = provenance_for(Path("../example.mlflow.job_config.yml"), Path("run_specs.conf"))
    assert stamps.config_path == "jobs/evaluation/example.mlflow.job_config.yml"
    assert stamps.helm_config_path == "jobs/evaluation/app/run_specs.conf"


def test_a_modified_tracked_file_is_refused_and_named(jobs_repo: git.Repo) -> None:
    root = _root(jobs_repo)
    (root / "README.md").write_text("changed\n")
    with pytest.raises(DirtyRepositoryError) as caught:
        provenance_for(root / CONFIG, root / SPECS)
    message = str(caught.value)
    assert "README.md" in message
    assert "--allow-dirty-repo" in message
    assert "\n" not in message
    assert caught.value.exit_code == EXIT_BAD_INPUT  # the user's to fix, like any input mistake


def test_a_staged_change_to_the_config_is_refused(jobs_repo: git.Repo) -> None:
    root = _root(jobs_repo)
    with (root / CONFIG).open("a") as handle:
        handle.write("# tweak\n")
    jobs_repo.index.add([str(CONFIG)])
    with pytest.raises(DirtyRepositoryError, match=r"example\.mlflow\.job_config\.yml"):
        provenance_for(root / CONFIG, root / SPECS)


def test_an_untracked_config_is_refused(jobs_repo: git.Repo) -> None:
    root = _root(jobs_repo)
    new_config = root / "jobs" / "evaluation" / "new.job_config.yml"
    new_config.write_text((root / CONFIG).read_text())
    with pytest.raises(DirtyRepositoryError, match=r"not committed: jobs/evaluation/new\.job_config\.yml"):
        provenance_for(new_config, root / SPECS)


def test_an_ignored_config_counts_as_untracked(jobs_repo: git.Repo) -> None:
    root = _root(jobs_repo)
    (root / ".gitignore").write_text("*.local.yml\n")
    jobs_repo.index.add([".gitignore"])
    jobs_repo.index.commit("ignore local configs")
    local = root / "jobs" / "evaluation" / "mine.local.yml"
    local.write_text((root / CONFIG).read_text())
    with pytest.raises(DirtyRepositoryError, match=r"mine\.local\.yml"):
        provenance_for(local, root / SPECS)


def test_untracked_files_elsewhere_do_not_block(jobs_repo: git.Repo) -> None:
    root = _root(jobs_repo)
    (root / "notes.txt").write_text("scratch\n")
    assert provenance_for(root / CONFIG, root / SPECS).config_version == jobs_repo.head.commit.hexsha


def test_allow_dirty_stamps_the_sha_as_dirty(jobs_repo: git.Repo) -> None:
    root = _root(jobs_repo)
    (root / "README.md").write_text("changed\n")
    stamps = provenance_for(root / CONFIG, root / SPECS, allow_dirty=True)
    assert stamps.config_version == jobs_repo.head.commit.hexsha + "-dirty"


def test_a_detached_head_is_fine(jobs_repo: git.Repo) -> None:
    root = _root(jobs_repo)
    first = jobs_repo.head.commit.hexsha
    (root / "README.md").write_text("second\n")
    jobs_repo.index.add(["README.md"])
    jobs_repo.index.commit("second")
    jobs_repo.git.checkout(first)
    assert jobs_repo.head.is_detached
    assert provenance_for(root / CONFIG, root / SPECS).config_version == first


def test_a_repository_without_commits_is_a_clear_error(tmp_path: Path) -> None:
    git.Repo.init(tmp_path)
    (tmp_path / "c.yml").write_text("x: 1\n")
    with pytest.raises(UserInputError, match="has no commits yet; commit the job files first"):
        provenance_for(tmp_path / "c.yml", tmp_path / "c.yml")


def test_files_outside_any_repository_are_refused(tmp_path: Path) -> None:
    (tmp_path / "c.yml").write_text("x: 1\n")
    with pytest.raises(UserInputError, match="is not inside a git repository"):
        provenance_for(tmp_path / "c.yml", tmp_path / "c.yml")


def test_a_helm_file_in_another_repository_is_refused(jobs_repo: git.Repo, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "r.conf").write_text("entries: []\n")
    with pytest.raises(UserInputError, match="is outside the git repository"):
        provenance_for(_root(jobs_repo) / CONFIG, other / "r.conf")


def test_paths_with_odd_characters_are_reported_verbatim(jobs_repo: git.Repo) -> None:
    root = _root(jobs_repo)
    odd = root / "jobs" / 'we"ird ñame.yml'
    odd.write_text("x\n")
    jobs_repo.index.add([str(odd.relative_to(root))])
    jobs_repo.index.commit("odd")
    odd.write_text("changed\n")
    with pytest.raises(DirtyRepositoryError) as caught:
        provenance_for(root / CONFIG, root / SPECS)
    assert 'jobs/we"ird ñame.yml' in str(caught.value)


def test_require_clean_tree_for_image_builds(jobs_repo: git.Repo) -> None:
    root = _root(jobs_repo)
    assert require_clean_tree(root, purpose="build an image") == jobs_repo.head.commit.hexsha
    (root / "README.md").write_text("changed\n")
    with pytest.raises(DirtyRepositoryError, match="refusing to build an image"):
        require_clean_tree(root, purpose="build an image")
    assert require_clean_tree(root, allow_dirty=True, purpose="build").endswith("-dirty")
