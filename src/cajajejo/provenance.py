"""The git gate of submission: a job is submitted from committed files, and says which commit.

`provenance_for(config, helm_config)` finds the repository holding both files, refuses when it is
dirty (tracked files changed, or either input untracked or different from HEAD) and returns the
stamps: the HEAD SHA and the files' paths relative to the repository root, whatever the working
directory; `repository_stamps(paths)` does the same for any number of files (a group's).
`allow_dirty=True` goes on anyway and stamps `<sha>-dirty` so the job never claims a commit it does
not match.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cajajejo.errors import EXIT_BAD_INPUT, CajajejoError, Problem, UserInputError
from cajajejo.render.plan import Provenance

if TYPE_CHECKING:
    import git

DIRTY_SUFFIX = "-dirty"
_LISTED_AT_MOST = 10


class DirtyRepositoryError(CajajejoError):
    """The tree has changes that the job would not be able to name by a commit.

    The user's to fix (commit, or pass --allow-dirty-repo), so it exits 2 like any other input mistake.
    """

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True)
class TreeState:
    head_sha: str
    changed_tracked: tuple[str, ...]  # repository-relative paths with staged or unstaged changes
    untracked_inputs: tuple[str, ...]  # inputs (or, for image builds, any files) that git does not track

    @property
    def dirty(self) -> bool:
        return bool(self.changed_tracked or self.untracked_inputs)


def open_repository(path: Path) -> git.Repo:
    """The git repository that holds `path` (a file or folder), searching upwards."""
    import git

    start = path if path.is_dir() else path.parent
    try:
        return git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise UserInputError(
            Problem(str(path), "is not inside a git repository; submit from a clone of your jobs repository")
        ) from None
    except git.GitCommandNotFound:
        raise CajajejoError("git is not installed or not on PATH; install git to submit jobs") from None


def repository_path(repo: git.Repo, path: Path) -> str:
    """`path` relative to the repository root, in POSIX form, e.g. jobs/evaluation/x.yml."""
    root = Path(repo.working_tree_dir or ".").resolve()
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        raise UserInputError(Problem(str(path), f"is outside the git repository at {root}")) from None


def head_sha(repo: git.Repo) -> str:
    try:
        return repo.head.commit.hexsha
    except ValueError:  # an unborn branch: `git init` without a commit; as for a dirty tree, the user's to fix
        raise UserInputError(
            Problem(str(repo.working_tree_dir), "the repository has no commits yet; commit the job files first")
        ) from None


def tree_state(repo: git.Repo, inputs: list[str], *, all_untracked: bool = False) -> TreeState:
    """What is uncommitted: tracked changes anywhere, and which `inputs` are not tracked at all.

    With `all_untracked`, every untracked file that git does not ignore counts too (an image build
    copies them into the image).
    """
    # -z: paths are NUL-separated and never quoted, whatever characters they hold.
    untracked_mode = "--untracked-files=all" if all_untracked else "--untracked-files=no"
    status = repo.git.status("--porcelain=v1", "-z", untracked_mode)
    changed: list[str] = []
    untracked: list[str] = []
    records = iter(status.split("\0"))
    for record in records:
        if not record:
            continue
        code, path = record[:2], record[3:]
        (untracked if code == "??" else changed).append(path)
        if "R" in code or "C" in code:
            next(records, None)  # a rename or copy is followed by its source path
    tracked = set(repo.git.ls_files("-z", "--", *inputs).split("\0")) if inputs else set()
    untracked += [p for p in inputs if p not in tracked and p not in untracked]
    return TreeState(head_sha(repo), tuple(changed), tuple(untracked))


def provenance_for(config: Path, helm_config: Path | None = None, *, allow_dirty: bool = False) -> Provenance:
    """Stamps for a job rendered from `config` (and an evaluation's `helm_config`); refuses a dirty tree
    unless allowed."""
    version, repo_paths = repository_stamps(
        [config] if helm_config is None else [config, helm_config], allow_dirty=allow_dirty
    )
    return Provenance(version, *repo_paths.values())


def repository_stamps(paths: list[Path], *, allow_dirty: bool = False) -> tuple[str, dict[Path, str]]:
    """The commit of the repository holding all `paths` (`<sha>-dirty` when allowed and dirty), and each
    path's repository path (in the order given). Refuses a dirty tree unless `allow_dirty`: tracked files
    changed anywhere, or any of `paths` untracked or different from HEAD."""
    for path in paths:
        if not path.is_file():
            raise UserInputError(Problem(str(path), "no such file"))
    repo = open_repository(paths[0])
    inputs = {path: repository_path(repo, path) for path in paths}
    state = tree_state(repo, list(dict.fromkeys(inputs.values())))
    if state.dirty and not allow_dirty:
        raise DirtyRepositoryError(_dirty_message(state))
    return state.head_sha + (DIRTY_SUFFIX if state.dirty else ""), inputs


def require_clean_tree(path: Path, *, allow_dirty: bool = False, purpose: str) -> str:
    """The HEAD SHA of the repository holding `path` (with -dirty when allowed and dirty).

    Stricter than submission: untracked files count, because an image build would copy them in.
    """
    repo = open_repository(path)
    state = tree_state(repo, [], all_untracked=True)
    if state.dirty and not allow_dirty:
        raise DirtyRepositoryError(_dirty_message(state, purpose))
    return state.head_sha + (DIRTY_SUFFIX if state.dirty else "")


def _dirty_message(state: TreeState, purpose: str = "submit") -> str:
    parts = []
    if state.untracked_inputs:
        parts.append("not committed: " + ", ".join(state.untracked_inputs))
    if state.changed_tracked:
        shown = list(state.changed_tracked[:_LISTED_AT_MOST])
        more = len(state.changed_tracked) - len(shown)
        parts.append("uncommitted changes in: " + ", ".join(shown) + (f" and {more} more" if more else ""))
    return (
        f"refusing to {purpose} from a dirty git tree ({'; '.join(parts)}); "
        "commit them, or pass --allow-dirty-repo to stamp the commit as '<sha>-dirty'"
    )
