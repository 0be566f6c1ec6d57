"""Load a job group file: the header, each task, the job configs and volume files they name, and the rules
between them, with every problem as `file:line: field: message` (all of them in one run, as for jobs).

Paths inside a group file (task configs, HELM run specs, volume files) are relative to the group file.
"""

from __future__ import annotations

import difflib
import os
import posixpath
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import yaml

from cajajejo.config.common import JobConfigBase
from cajajejo.config.evaluation import EvaluationJobConfig
from cajajejo.config.group import (
    TASK_KINDS,
    TASK_RESERVED_MOUNT_PATHS,
    CommandTask,
    EvaluationTask,
    GroupHeader,
    GroupVolume,
    TaskBase,
    TrainingTask,
    VolumeFile,
)
from cajajejo.config.loader import (
    LoadedConfig,
    config_from_document,
    evaluation_inputs,
    load_config_of_kind,
    training_inputs,
    validate_document,
)
from cajajejo.config.run_specs import load_run_specs
from cajajejo.config.source import YamlDocument, parse_yaml, parse_yaml_documents, read_text_file
from cajajejo.config.training import TrainingJobConfig, mount_overlap_problem
from cajajejo.credentials import credential_lines
from cajajejo.errors import Problem, UserInputError, quoted
from cajajejo.names import hostname_problem, is_group_variable

C = TypeVar("C", bound=JobConfigBase)
T = TypeVar("T")
EXAMPLE = "jobs/groups/train-eval.group.yml"
_TASK_KEYS = ", ".join(f"{key} ({kind})" for key, (kind, _) in TASK_KINDS.items())


@dataclass(frozen=True)
class GroupTask:
    """One task of a group, validated, with the job config it runs (training and evaluation tasks)."""

    spec: TaskBase
    kind: str  # training, evaluation or command
    line: int | None  # where its document starts in the group file
    job: LoadedConfig[JobConfigBase] | None = None
    files: dict[str, str] | None = None  # what its ConfigMap carries (job tasks)
    config_file: str | None = None  # the file its config came from: its own file, or the group file (inline)
    helm_config_file: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def nodes(self) -> int:
        if isinstance(self.job, LoadedConfig) and isinstance(self.job.config, TrainingJobConfig):
            return self.job.config.training.nnodes
        return self.spec.nodes


@dataclass(frozen=True)
class LoadedGroup:
    """A validated group: its header, its tasks in file order, and every file it was read from."""

    path: str
    header: GroupHeader
    tasks: tuple[GroupTask, ...]
    volumes: tuple[GroupVolume, ...]  # the claims the group makes
    existing_volumes: tuple[str, ...]  # the claims it mounts and leaves alone
    files: dict[str, str]  # path -> text of the group file (first) and every file it names, in reading order
    warnings: tuple[Problem, ...]

    @property
    def name(self) -> str:
        return self.header.name

    def evaluator_roles(self, trainer: GroupTask) -> list[str]:
        """The evaluation tasks that watch the folder `trainer` writes its checkpoints to (its evaluator roles).

        The trainer is told them (runtime_contract.ENV_CHECKPOINT_ROLES), so that it keeps every
        checkpoint they have not evaluated, even one it pruned before they started watching.
        """
        held = checkpoint_place(trainer)
        if held is None:
            return []
        return [task.name for task in self.tasks if watched_place(task) == held]


class _Problems:
    """Problems collected across documents and files, so that one run reports them all."""

    def __init__(self) -> None:
        self.found: list[Problem] = []

    @contextmanager
    def collected(self) -> Iterator[None]:
        try:
            yield
        except UserInputError as exc:
            self.found += exc.problems

    def add(self, source: str, message: str, field: str | None = None, line: int | None = None) -> None:
        self.found.append(Problem(source, message, field, line))


def load_group(path: str | Path) -> LoadedGroup:
    """Read and check the group file at `path` and everything it names."""
    name = str(path)
    text = read_text_file(path)
    documents = parse_yaml_documents(text, name)
    if not documents or all(document.data is None for document in documents):
        raise UserInputError(
            Problem(name, f"is empty; expected a group header, then one document per task (see {EXAMPLE})")
        )
    problems = _Problems()
    reader = _Reader(Path(path).parent, name, problems)
    header = _header(documents[0], problems)
    read = [(task, document) for document in documents[1:] if (task := reader.task(document)) is not None]
    tasks = [task for task, _ in read]
    if len(documents) == 1 and not _task_keys(documents[0].data):
        problems.add(name, f"has a header but no task; add one document per task after it (see {EXAMPLE})", line=1)
    if header is not None:
        before = len(problems.found)
        volumes, existing = reader.volumes(header, documents[0])
        # A rule between documents is checked only where the documents it spans were read: a task or a
        # volume file that failed would otherwise show up again as, say, an unknown volume.
        known = _Known(tasks=len(tasks) == len(documents) - 1, volumes=len(problems.found) == before)
        _check_across_tasks(header, read, volumes, existing, problems, known)
    named = {problem.line for problem in problems.found if problem.source == name}
    problems.found += [p for p in credential_lines(text, name) if p.line not in named]
    if problems.found or header is None:
        raise UserInputError(problems.found)
    warnings = [w for task in tasks if task.job is not None for w in task.job.warnings]
    warnings += _command_warnings(header.name, read)
    return LoadedGroup(name, header, tuple(tasks), volumes, existing, {name: text, **reader.files}, tuple(warnings))


@dataclass(frozen=True)
class _Known:
    """Whether every task, and every volume, of the group was read without a problem."""

    tasks: bool
    volumes: bool


def _task_keys(data: Any) -> list[str]:
    return [key for key in TASK_KINDS if isinstance(data, dict) and key in data]


def _header(document: YamlDocument, problems: _Problems) -> GroupHeader | None:
    data = document.data
    found = _task_keys(data)
    if found and not (isinstance(data, dict) and "execution" in data):
        problems.add(
            document.name,
            f"the first document must be the group's header (name, execution: parallel, placement: SAME_INFRA); "
            f"this one is a task (it has {found[0]})",
            line=document.line_of(()) or 1,
        )
        return None
    with problems.collected():
        return validate_document(document, GroupHeader)
    return None


class _Reader:
    """Reads the files a group names, relative to the group file, keeping their texts for the stamps."""

    def __init__(self, folder: Path, group_file: str, problems: _Problems) -> None:
        self.folder = folder
        self.group_file = group_file
        self.problems = problems
        self.files: dict[str, str] = {}

    def task(self, document: YamlDocument) -> GroupTask | None:
        data = document.data
        line = document.line_of(())
        if not isinstance(data, dict):
            with self.problems.collected():
                validate_document(document, TaskBase)  # says what is wrong with a document that is no mapping
            return None
        keys = _task_keys(data)
        if len(keys) != 1:
            self.problems.add(document.name, _which_kind(data, keys), line=line)
            return None
        kind, model = TASK_KINDS[keys[0]]
        spec = None
        with self.problems.collected():
            spec = validate_document(document, model)
        if spec is None:
            return None
        if isinstance(spec, CommandTask):
            return GroupTask(spec, kind, line)
        if isinstance(spec, TrainingTask):
            return self._training_task(spec, document, line)
        assert isinstance(spec, EvaluationTask)
        return self._evaluation_task(spec, document, line)

    def _training_task(self, spec: TrainingTask, document: YamlDocument, line: int | None) -> GroupTask | None:
        loaded = self._job_config(spec.training, "training", TrainingJobConfig, document)
        if loaded is None:
            return None
        if spec.num_nodes is not None and spec.num_nodes != loaded.config.training.nnodes:
            self.problems.add(
                document.name,
                f"is {spec.num_nodes} but the training config's training.nnodes is {loaded.config.training.nnodes}; "
                "leave num_nodes out (nnodes decides) or make them equal",
                field="num_nodes",
                line=document.line_of(("num_nodes",)),
            )
        with self.problems.collected():
            files = training_inputs(loaded)
            return self._job_task(spec, "training", line, loaded, files, spec.training)
        return None

    def _evaluation_task(self, spec: EvaluationTask, document: YamlDocument, line: int | None) -> GroupTask | None:
        loaded = self._job_config(spec.evaluation, "evaluation", EvaluationJobConfig, document)
        run_specs = self._file(spec.helm_config, "helm_config", document, load_run_specs)
        if loaded is None or run_specs is None:
            return None
        with self.problems.collected():
            files = evaluation_inputs(loaded, run_specs)
            return self._job_task(spec, "evaluation", line, loaded, files, spec.evaluation, run_specs.path)
        return None

    def _job_task(
        self,
        spec: TaskBase,
        kind: str,
        line: int | None,
        loaded: LoadedConfig[Any],
        files: dict[str, str],
        ref: Any,
        helm_config_file: str | None = None,
    ) -> GroupTask:
        config_file = self.group_file if isinstance(ref, dict) else loaded.path
        return GroupTask(spec, kind, line, loaded, files, config_file, helm_config_file)

    def _job_config(self, ref: Any, key: str, model: type[C], document: YamlDocument) -> LoadedConfig[C] | None:
        def advice(kind: str) -> str:
            return f"put it under `{kind}:` instead"

        if isinstance(ref, str):
            return self._file(ref, key, document, lambda path: load_config_of_kind(path, model, advice))
        data = ref if key != "training" or "kind" in ref else {"kind": "training", **ref}
        # What the job's ConfigMap carries; the group file it came from is stamped on the job (config-path).
        text = f"# The {key} config of task {document.data.get('name')}, written inline in its group file.\n"
        text += yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)
        with self.problems.collected():
            return config_from_document(document.part(key, data), model, advice, text=text)
        return None

    def _file(self, ref: str, key: str, document: YamlDocument, load: Callable[[Path], T]) -> T | None:
        """`load` the file `ref` names; problems of the file as a whole are told at the field naming it."""
        path = Path(os.path.normpath(self.folder / ref))
        try:
            loaded = load(path)
        except UserInputError as exc:
            for problem in exc.problems:
                if problem.source == str(path) and problem.line is None and problem.field is None:
                    where = f"{path} (from {ref!r}, relative to the group file)" if ref != str(path) else str(path)
                    self.problems.add(document.name, f"{where}: {problem.message}", key, document.line_of((key,)))
                else:
                    self.problems.found.append(problem)
            return None
        self.files.setdefault(str(path), read_text_file(path))
        return loaded

    def volumes(self, header: GroupHeader, document: YamlDocument) -> tuple[tuple[GroupVolume, ...], tuple[str, ...]]:
        """The claims the group makes and the ones it only mounts: the header's, then its volume files'."""
        made, existing = list(header.volumes), list(header.existing_volumes)
        for i, ref in enumerate(header.volume_files):
            volume = self._file(ref, f"volume_files[{i}]", document, load_volume_file)
            if volume is not None:
                if volume.name in [v.name for v in made] + existing:
                    self.problems.add(
                        document.name,
                        f"volume {volume.name} of {ref} is named in the header too; name it once",
                        f"volume_files[{i}]",
                        document.line_of(("volume_files", i)),
                    )
                elif volume.use_existing:
                    existing.append(volume.name)
                else:
                    made.append(volume.to_volume())
        return tuple(made), tuple(existing)


def load_volume_file(path: Path) -> VolumeFile:
    """A SkyPilot volume file, validated (one line per problem, as every config)."""
    name = str(path)
    document = parse_yaml(read_text_file(path), name)
    return validate_document(document, VolumeFile)


def _which_kind(data: dict[Any, Any], keys: list[str]) -> str:
    if keys:
        return f"a task is one kind: it has {' and '.join(keys)}; keep one of {_TASK_KEYS}"
    unknown = [str(key) for key in data if key not in {"name", "num_nodes", "volumes"}]
    close = [m for key in unknown for m in difflib.get_close_matches(key, list(TASK_KINDS), n=1)]
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"a task needs one of {_TASK_KEYS}; {hint}see {EXAMPLE}"


def _check_across_tasks(
    header: GroupHeader,
    read: list[tuple[GroupTask, YamlDocument]],
    made: tuple[GroupVolume, ...],
    existing: tuple[str, ...],
    problems: _Problems,
    known: _Known,
) -> None:
    """The rules between documents: names, namespaces, volumes and what evaluators watch."""
    names = [volume.name for volume in made] + list(existing)
    before = len(problems.found)
    first_line: dict[str, int | None] = {}
    for task, document in read:
        source = document.name
        name_line = document.line_of(("name",))
        if task.name in first_line:
            problems.add(
                source,
                f"task name {task.name!r} is taken by the task at line {first_line[task.name]}; give each task its own",
                "name",
                name_line,
            )
        first_line.setdefault(task.name, name_line)
        problem = hostname_problem(header.name, task.name, task.nodes)
        if problem:
            problems.add(source, problem, "name", name_line)
        for path, volume in task.spec.volumes.items():
            if known.volumes and volume not in names:
                close = difflib.get_close_matches(volume, names, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                problems.add(
                    source,
                    f"volume {volume!r} is unknown; {hint}add it to the header's volumes or volume_files (to make "
                    "it), or existing_volumes (to mount one made beforehand)",
                    f"volumes.{path}",
                    document.line_of(("volumes", path)),
                )
        if task.job is not None:
            _check_job_config(header, task, document, problems)
    # Which task writes what an evaluator watches is known once every task and every mount is.
    for task, document in read if known.tasks and len(problems.found) == before else []:
        if isinstance(task.spec, EvaluationTask) and task.spec.watch is not None:
            _check_watched(task, document, task.spec.watch, read, problems)


def _check_job_config(header: GroupHeader, task: GroupTask, document: YamlDocument, problems: _Problems) -> None:
    assert task.job is not None
    key = task.kind
    config = task.job.config
    k8s = config.kubernetes_config
    group_namespace = header.kubernetes_config.namespace
    if k8s.namespace is not None and k8s.namespace != group_namespace:
        problems.add(
            document.name,
            f"its config sets kubernetes_config.namespace {k8s.namespace!r}, but a group's tasks share the "
            "group's namespace: set it in the header's kubernetes_config (or leave both out)",
            key,
            document.line_of((key,)),
        )
    taken = sorted(name for name in (*k8s.env, *k8s.secret_env) if is_group_variable(name))
    if taken:
        problems.add(
            document.name,
            f"its config's kubernetes_config env sets {', '.join(taken)}, which cajajejo sets in every task of a group",
            key,
            document.line_of((key,)),
        )
    overlap = _mount_overlap(task)
    if overlap:
        problems.add(document.name, f"{overlap}; choose another mount path", "volumes", document.line_of(("volumes",)))


def _mount_overlap(task: GroupTask) -> str | None:
    """A training config's own claims and the task's group volumes are mounted in the same pods."""
    assert task.job is not None
    own = task.job.config.training.volumes if isinstance(task.job.config, TrainingJobConfig) else []
    mounts = [(v.claim_name, v.mount_path) for v in own] + [(v, p) for p, v in task.spec.volumes.items()]
    return mount_overlap_problem(mounts, TASK_RESERVED_MOUNT_PATHS)


def on_volume(spec: TaskBase, path: str) -> tuple[str, str] | None:
    """(volume, path inside it) for a path in the pod of `spec`, or None when it is on no volume."""
    for mount, volume in sorted(spec.volumes.items(), key=lambda item: -len(item[0])):
        if path == mount or path.startswith(mount + "/"):
            return volume, path[len(mount) :].lstrip("/")
    return None


# A folder on a volume, as any task sees it whatever its mount path: (volume, path parts inside it).
Place = tuple[str, tuple[str, ...]]


def _place(spec: TaskBase, path: str) -> Place | None:
    found = on_volume(spec, path)
    return None if found is None else (found[0], PurePosixPath(found[1]).parts)


def _checkpoint_directory(task: GroupTask) -> str | None:
    """Where a built-in trainer's task writes its checkpoints, in its pods; None for any other task."""
    config = task.job.config if task.job is not None else None
    if not isinstance(config, TrainingJobConfig) or config.training.trainer is None:
        return None
    return config.training.checkpoints.directory


def checkpoint_place(task: GroupTask) -> Place | None:
    """Where a built-in trainer's task writes its checkpoints; None for any other task, or off its volumes."""
    directory = _checkpoint_directory(task)
    return None if directory is None else _place(task.spec, directory)


def watched_place(task: GroupTask) -> Place | None:
    """Where an evaluation task watches for checkpoints; None when it does not."""
    if not isinstance(task.spec, EvaluationTask) or task.spec.watch is None:
        return None
    return _place(task.spec, task.spec.watch)


def _check_watched(
    evaluator: GroupTask,
    document: YamlDocument,
    watch: str,
    read: list[tuple[GroupTask, YamlDocument]],
    problems: _Problems,
) -> None:
    """Checkpoints an evaluator watches must be where one of the group's trainers writes them.

    Tasks with the volume at other mount paths are matched on the folder inside it. A script or a
    command writes where it likes, so a volume only they write to is taken on trust; once a built-in
    trainer writes to the volume, one of them must write to the watched folder.
    """
    place = watched_place(evaluator)
    assert place is not None  # EvaluationTask checks that watch is on a mount
    volume = place[0]
    writers = [(t, d) for t, d in read if t.kind != "evaluation" and volume in t.spec.volumes.values()]
    trainers = [(t, d) for t, d in writers if _checkpoint_directory(t) is not None]
    if not writers:
        problems.add(
            document.name,
            f"mount volume {volume!r} in the training task too and point its training.checkpoints.directory "
            "there: no other task of the group writes to it",
            "watch",
            document.line_of(("watch",)),
        )
    elif len(trainers) == 1:
        _check_trainer_writes_there(evaluator, place, *trainers[0], problems)
    elif trainers and all(checkpoint_place(t) != place for t, _ in trainers):
        written = ", ".join(f"{t.name} to {_checkpoint_directory(t)}" for t, _ in trainers)
        problems.add(
            document.name,
            f"no training task writes checkpoints to {watch} (volume {volume!r}); they write: {written} "
            "(in their pods)",
            "watch",
            document.line_of(("watch",)),
        )


def _check_trainer_writes_there(
    evaluator: GroupTask, place: Place, trainer: GroupTask, document: YamlDocument, problems: _Problems
) -> None:
    """The one trainer on the watched volume: it is told where to write (the evaluator's folder, in its pods)."""
    if checkpoint_place(trainer) == place:
        return
    volume, inside = place
    mount = next(path for path, name in trainer.spec.volumes.items() if name == volume)
    problems.add(
        document.name,
        f"set training.checkpoints.directory to {posixpath.join(mount, *inside)}, where task {evaluator.name!r} "
        f"watches for checkpoints (volume {volume!r}); it is {_checkpoint_directory(trainer)}",
        "training",
        document.line_of(("training",)),
    )


def _command_warnings(group: str, read: list[tuple[GroupTask, YamlDocument]]) -> list[Problem]:
    """Valid but doubtful: a mutable image tag, and SkyPilot hostnames that do not resolve under cajajejo."""
    warnings = []
    names = [task.name for task, _ in read]
    seed_host = re.compile(
        r"\b("
        + "|".join(map(re.escape, names))
        + r")-\d+\.(?:\$\{?SKYPILOT_JOBGROUP_NAME\}?|"
        + re.escape(group)
        + r")"
    )
    for task, document in read:
        if not isinstance(task.spec, CommandTask):
            continue
        name = document.name
        image = task.spec.image
        tag = image.split("@", 1)[0].rpartition("/")[2].partition(":")[2]
        if "@" not in image and tag in ("", "latest"):
            what = "has no tag (so 'latest')" if not tag else "is tagged 'latest'"
            warnings.append(
                Problem(
                    name,
                    f"{quoted(image)} {what}: a mutable tag; pin the image to a commit tag",
                    "image",
                    document.line_of(("image",)),
                )
            )
        match = seed_host.search(task.spec.run)
        if match:
            variable = "SKYPILOT_JOBGROUP_HOST_" + match[1].upper().replace("-", "_")
            warnings.append(
                Problem(
                    name,
                    f"{match[0]!r} does not resolve here (cajajejo's pods are <group>-<task>-<i>.<group>); "
                    f"use ${{{variable}}} instead",
                    "run",
                    document.line_of(("run",)),
                )
            )
    return warnings
