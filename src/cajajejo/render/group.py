"""A job group's plan: one Job per task, one headless Service that names every task's pods, the volumes
the group makes, and each job task's ConfigMap.

A training task is the training job's Indexed Job and an evaluation task the evaluation job's Job, made
by the same code and templates as those jobs; a plain command is an Indexed Job of its own pods. What a
group adds to each: its pods are named under the group's Service (see `cajajejo.names`), they carry the
group's labels (`cajajejo/group`, `cajajejo/task`) and the discovery variables, and the group's volumes
are mounted where each task says. Every Job is stamped with the same inputs hash (of all the group's
files), so the whole group is one submission: resubmitting it changes nothing, and a group of the same
name made from other inputs is refused as a whole.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cajajejo import runtime_contract
from cajajejo.config.evaluation import EvaluationJobConfig
from cajajejo.config.group import CommandTask, EvaluationTask, GroupHeader
from cajajejo.config.group_loader import GroupTask, LoadedGroup
from cajajejo.config.training import TrainingJobConfig
from cajajejo.errors import Problem, UserInputError
from cajajejo.names import (
    NODE_RANK_ENV,
    NUM_NODES_ENV,
    SKYPILOT_NODE_RANK_ENV,
    SKYPILOT_NUM_NODES_ENV,
    TASK_NAME_ENV,
    discovery_env,
    dns1035_label_problem,
    hostname_problem,
    pod_hostname,
    task_job_name,
)
from cajajejo.render.evaluation import evaluation_context
from cajajejo.render.plan import (
    LABEL_GROUP,
    LABEL_MANAGED_BY,
    LABEL_PREFIX,
    LABEL_TASK,
    UNKNOWN_PATH,
    UNVERSIONED,
    JobInputs,
    Provenance,
    RenderOptions,
    check_documents,
    checked_default_service_account,
    inputs_sha256,
    job_context,
    job_labels,
    kubelet_literal,
    node_selector,
    plan_namespace,
    render_documents,
    rendered_header,
    stamped_identity,
    storage_class,
    user_env,
)
from cajajejo.render.training import claim_mounts, pod_resources, rank_env, training_context
from cajajejo.render.yaml_text import dump_documents

GROUP_PATH_ANNOTATION = f"{LABEL_PREFIX}/group-path"
COMMAND_KIND = "command"
COMMAND_CONTAINER = "run"
SHELL = ("/bin/bash", "-c")  # SkyPilot runs `run` with bash, and its scripts use bash's features


@dataclass(frozen=True)
class GroupProvenance:
    """The commit, and the repository path of each file the group was read from (keyed as the loader read it)."""

    config_version: str = UNVERSIONED
    repo_paths: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        Provenance(self.config_version)  # the same rule for the commit as a job's

    def of(self, path: str | None) -> str:
        return self.repo_paths.get(path, UNKNOWN_PATH) if path is not None else UNKNOWN_PATH

    @classmethod
    def from_group_path(cls, group: LoadedGroup, config_version: str, group_path_in_repo: str) -> GroupProvenance:
        """Stamps when only the group file's repository path is known: the files it names are relative to it."""
        if group_path_in_repo == UNKNOWN_PATH:
            return cls(config_version)
        folder, local = posixpath.dirname(group_path_in_repo), posixpath.dirname(Path(group.path).as_posix())
        paths = {
            path: posixpath.normpath(posixpath.join(folder, posixpath.relpath(Path(path).as_posix(), local or ".")))
            for path in group.files
        }
        return cls(config_version, {**paths, group.path: group_path_in_repo})


@dataclass(frozen=True)
class GroupPlan:
    """The objects of one group: each task's Job (and ConfigMap), then the Service, volumes and classes."""

    group_name: str
    namespace: str
    documents: tuple[dict[str, Any], ...]
    tasks: tuple[str, ...]

    @property
    def title(self) -> str:
        return f"group {self.group_name}"

    @property
    def job_names(self) -> tuple[str, ...]:
        return tuple(task_job_name(self.group_name, task) for task in self.tasks)

    def to_yaml(self) -> str:
        return dump_documents(self.documents, header=rendered_header(self.title, "group file"))


@dataclass(frozen=True)
class _Group:
    """What every task of one rendering shares."""

    name: str
    namespace: str
    provenance: GroupProvenance
    group_path: str  # the group file's repository path
    inputs_hash: str
    options: RenderOptions
    env: dict[str, str]  # the discovery variables

    def labels(self, task: str | None = None) -> dict[str, str]:
        return {LABEL_GROUP: self.name, **({LABEL_TASK: task} if task is not None else {})}

    def task_provenance(self, task: GroupTask) -> Provenance:
        """A job task's stamps: its config's path (the group file's, for an inline config) and its run specs'."""
        version = self.provenance.config_version
        return Provenance(version, self.provenance.of(task.config_file), self.provenance.of(task.helm_config_file))


def render_group_plan(
    group: LoadedGroup,
    provenance: GroupProvenance | None = None,
    options: RenderOptions | None = None,
    *,
    group_name: str | None = None,
) -> GroupPlan:
    """The group's objects, checked like every plan; `group_name` replaces the header's name."""
    provenance = provenance or GroupProvenance()
    options = options or RenderOptions()
    header = group.header
    name = _checked_group_name(group, group_name)
    namespace = plan_namespace(options, header.kubernetes_config.namespace)
    tasks = [task.name for task in group.tasks]
    shared = _Group(
        name,
        namespace,
        provenance,
        provenance.of(group.path),
        inputs_sha256(*group.files.values()),
        options,
        discovery_env(name, namespace, tasks),
    )
    documents: list[Any] = []
    for task in group.tasks:
        documents += _task_documents(shared, group, task)
    documents += _group_documents(shared, group)
    job_names = [task_job_name(name, task) for task in tasks]
    check_documents(documents, job_names, namespace, options.kubernetes_version)
    return GroupPlan(name, namespace, tuple(documents), tuple(tasks))


def _checked_group_name(group: LoadedGroup, chosen: str | None) -> str:
    if chosen is None:
        return group.name
    problem = dns1035_label_problem(chosen)
    for task in group.tasks:
        problem = problem or hostname_problem(chosen, task.name, task.nodes)
    if problem:
        raise UserInputError(Problem("--group-name", f"{chosen!r} {problem}"))
    return chosen


def _task_documents(shared: _Group, group: LoadedGroup, task: GroupTask) -> list[Any]:
    if isinstance(task.spec, CommandTask):
        return _command_documents(shared, group.header, task.spec)
    # A job task has its config and its ConfigMap's files.
    assert task.job is not None
    assert task.files is not None
    job_name = task_job_name(shared.name, task.name)
    config = task.job.config
    provenance = shared.task_provenance(task)
    claims = [(volume, path) for path, volume in task.spec.volumes.items()]
    path_annotations = {GROUP_PATH_ANNOTATION: shared.group_path}
    input_paths = {}
    if isinstance(config, EvaluationJobConfig):
        path_annotations = {f"{LABEL_PREFIX}/helm-config-path": provenance.helm_config_path, **path_annotations}
        input_paths = {runtime_contract.ENV_HELM_CONFIG_PATH: provenance.helm_config_path}
    inputs = JobInputs(
        task.kind,
        config,
        task.files,
        input_paths=input_paths,
        path_annotations=path_annotations,
        group_labels=shared.labels(task.name),
        inputs_hash=shared.inputs_hash,
        group_env={**shared.env, TASK_NAME_ENV: task.name, **_checkpoint_roles_env(group, task)},
    )

    def kind_context(job: dict[str, Any]) -> dict[str, Any]:
        if isinstance(config, TrainingJobConfig):
            return training_context(config, job, service=shared.name, claims=claims)
        assert isinstance(task.spec, EvaluationTask)
        job.update(subdomain=shared.name, hostname=pod_hostname(job_name, 0))
        return {
            **evaluation_context(watch=task.spec.watch, role=task.name),
            "claims": claim_mounts([(volume, path, False) for volume, path in claims]),
        }

    context = job_context(inputs, job_name, shared.namespace, provenance, shared.options, kind_context)
    return render_documents(f"group/{task.kind}.yaml.j2", context, shared.options.template_dir)


def _checkpoint_roles_env(group: LoadedGroup, task: GroupTask) -> dict[str, str]:
    """A trainer whose checkpoints evaluators watch is told their roles, so it keeps what they still need."""
    roles = group.evaluator_roles(task)
    return {runtime_contract.ENV_CHECKPOINT_ROLES: ",".join(roles)} if roles else {}


def _command_documents(shared: _Group, header: GroupHeader, spec: CommandTask) -> list[Any]:
    """A plain command's Indexed Job: the group's pod settings (header kubernetes_config), the task's own rest."""
    job_name = task_job_name(shared.name, spec.name)
    k8s = header.kubernetes_config.model_copy(
        update={"secret_env": {**header.kubernetes_config.secret_env, **spec.secret_env}}
    )
    provenance = Provenance(shared.provenance.config_version, shared.group_path)
    identity = {**job_labels(COMMAND_KIND, job_name), **shared.labels(spec.name)}
    job = stamped_identity(
        identity, job_name, shared.namespace, provenance, shared.inputs_hash, {GROUP_PATH_ANNOTATION: shared.group_path}
    )
    resources = spec.resources
    accelerator = resources.accelerators
    job.update(
        image=spec.image,
        subdomain=shared.name,
        node_selector=node_selector(k8s.node_selector, accelerator.gke_name if accelerator else None),
        service_account=k8s.service_account or checked_default_service_account(shared.options),
        field_env=rank_env(NODE_RANK_ENV, SKYPILOT_NODE_RANK_ENV),
        env={
            runtime_contract.ENV_CONFIG_VERSION: provenance.config_version,
            runtime_contract.ENV_CONFIG_PATH: provenance.config_path,
            runtime_contract.ENV_JOB_NAME: job_name,
            **shared.env,
            TASK_NAME_ENV: spec.name,
            NUM_NODES_ENV: str(spec.nodes),
            SKYPILOT_NUM_NODES_ENV: str(spec.nodes),
            **user_env(k8s.env),
            **user_env(spec.envs),
        },
    )
    memory = resources.memory
    context = {
        "config": {"kubernetes_config": k8s},
        "job": job,
        "files": {},
        "paths": {},
        "scratch": None,
        "claims": claim_mounts([(volume, path, False) for path, volume in spec.volumes.items()]),
        "pod": {
            "nodes": spec.nodes,
            "container": COMMAND_CONTAINER,
            "command": [*SHELL, kubelet_literal(spec.run)],
            "ports": [],
            "resources": pod_resources(
                resources.cpus.amount if resources.cpus else None,
                memory.amount if memory else None,
                accelerator.count if accelerator else 0,
                memory_limit=memory is not None and not memory.at_least,
            ),
        },
    }
    return render_documents("group/command.yaml.j2", context, shared.options.template_dir)


def _group_documents(shared: _Group, group: LoadedGroup) -> list[Any]:
    """What belongs to the group as a whole: its Service, the volumes it makes, the scratch classes asked for."""
    identity = {LABEL_MANAGED_BY: LABEL_PREFIX, **shared.labels()}
    provenance = Provenance(shared.provenance.config_version, shared.group_path)
    stamped = stamped_identity(
        identity,
        shared.name,
        shared.namespace,
        provenance,
        shared.inputs_hash,
        {GROUP_PATH_ANNOTATION: shared.group_path},
    )
    template_dir = shared.options.template_dir
    service = {
        "name": shared.name,
        "namespace": shared.namespace,
        "labels": stamped["labels"],
        "annotations": stamped["annotations"],
        "selector": identity,  # every task's pods
        "ports": [],  # headless: pods are found by name, whatever ports they listen on
    }
    documents = render_documents("group/service.yaml.j2", {"service": service}, template_dir)
    for volume in group.volumes:
        documents += render_documents("common/volume.yaml.j2", {"stamped": stamped, "volume": volume}, template_dir)
    for wanted in _storage_classes(group):
        documents += render_documents("common/storageclass.yaml.j2", {"storage_class": wanted}, template_dir)
    return documents


def _storage_classes(group: LoadedGroup) -> list[dict[str, Any]]:
    """The scratch StorageClasses the tasks' configs ask for, each once; two asks for one name must agree."""
    wanted: dict[str, dict[str, Any]] = {}
    for task in group.tasks:
        made = storage_class(task.job.config) if task.job is not None else None
        if made is None:
            continue
        other = wanted.setdefault(made["name"], made)
        if other["disk_type"] != made["disk_type"]:
            raise UserInputError(
                Problem(
                    group.path,
                    f"tasks ask for StorageClass {made['name']} with disk types {other['disk_type']} and "
                    f"{made['disk_type']}; a class has one: use one disk type, or another storage_class name",
                )
            )
    return list(wanted.values())
