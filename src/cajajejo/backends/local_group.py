"""Running a job group on this machine: every task at once as local processes, before anyone spends GPUs.

`cajajejo groups run GROUP --local` starts what each task's pods would run, here:
- a training task: its torchrun agents (`backends/local.py`, the same as `cajajejo train --local`);
- an evaluation task: `cajajejo evaluate --local` (with `--watch` when the task watches checkpoints);
- a command task: its `run` script with bash, `num_nodes` times, without its image.

Each volume of the group is a folder `<workdir>/volumes/<name>`; a job task's paths under one of its
mount paths (the trainer's checkpoint directory, the evaluator's watched directory) are translated to
that folder. A command script's paths are its own: it is told the folders in `CAJAJEJO_VOLUME_<PATH>`
variables (e.g. `CAJAJEJO_VOLUME_CHECKPOINTS` for `/checkpoints`). Every task sees the group's
discovery variables with 127.0.0.1 as every task's host. All tasks log to one local `mlflow server`
in the work folder (or `--tracking-uri`), so an evaluator's results land in the trainer's run.

Output lines are prefixed with the task (`[trainer]`, `[trainer-1]` for node 1 of a multi-node task)
and written, unprefixed, to a log file per process: `<workdir>/tasks/<task>/<label>.log`. The first
task to fail stops the others; Ctrl-C stops all of them (the trainer checkpoints first). The exit
status is the group's outcome (see `run_processes`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from cajajejo import names
from cajajejo import runtime_contract as contract
from cajajejo.backends.local import LocalProcess, local_training, run_processes
from cajajejo.config.group import CommandTask, EvaluationTask, TaskBase
from cajajejo.config.group_loader import GroupTask, LoadedGroup, load_group, on_volume
from cajajejo.config.training import TrainingJobConfig
from cajajejo.errors import CajajejoError
from cajajejo.local_mlflow import serve_mlflow

LOCAL_HOST = "127.0.0.1"


@dataclass(frozen=True)
class LocalGroupRun:
    """What a local group run used, for the summary printed after it."""

    workdir: Path
    tracking_uri: str
    volumes: Mapping[str, Path]
    returncode: int


def run_group_locally(group_file: Path, *, workdir: Path, tracking_uri: str | None = None) -> LocalGroupRun:
    """Run every task of GROUP_FILE here at once; returns when all have ended (or one failed)."""
    group = load_group(group_file)
    workdir = workdir.resolve()
    volumes = {name: workdir / "volumes" / name for name in _volume_names(group)}
    for folder in volumes.values():
        folder.mkdir(parents=True, exist_ok=True)
    with _mlflow(workdir, tracking_uri) as uri:
        processes = [process for task in group.tasks for process in _task_processes(group, task, workdir, volumes, uri)]
        returncode = run_processes(processes)
    return LocalGroupRun(workdir, uri, volumes, returncode)


@contextlib.contextmanager
def _mlflow(workdir: Path, tracking_uri: str | None) -> Iterator[str]:
    if tracking_uri:
        yield tracking_uri
        return
    with serve_mlflow(workdir / "mlflow") as uri:
        yield uri


def _volume_names(group: LoadedGroup) -> list[str]:
    return [volume.name for volume in group.volumes] + list(group.existing_volumes)


def local_path(spec: TaskBase, container_path: str, volumes: Mapping[str, Path]) -> Path | None:
    """Where `container_path` of the task `spec` lies on this machine, when it is on one of its volumes."""
    found = on_volume(spec, container_path)
    if found is None:
        return None
    volume, inside = found
    return volumes[volume].joinpath(*PurePosixPath(inside).parts)


def _task_processes(
    group: LoadedGroup, task: GroupTask, workdir: Path, volumes: Mapping[str, Path], tracking_uri: str
) -> list[LocalProcess]:
    """The task's processes, each logging to `<task folder>/<its label>.log` (`trainer-1.log`: node 1)."""
    task_dir = workdir / "tasks" / task.name
    task_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **_discovery_env(group, task), contract.ENV_MLFLOW_TRACKING_URI: tracking_uri}
    env.update(_volume_env(task.spec.volumes, volumes))
    if isinstance(task.spec, CommandTask):
        processes = _command_processes(group, task, task.spec, env, task_dir)
    elif task.kind == "training":
        processes = _training_processes(group, task, env, task_dir, volumes, tracking_uri)
    else:
        processes = [_evaluation_process(group, task, env, task_dir, volumes)]
    return [replace(process, log=task_dir / f"{process.label}.log") for process in processes]


def _discovery_env(group: LoadedGroup, task: GroupTask) -> dict[str, str]:
    tasks = [t.name for t in group.tasks]
    env = names.discovery_env(group.header.name, "local", tasks)
    for name in env:
        if name.startswith(names.GROUP_ENV_PREFIXES):
            env[name] = LOCAL_HOST
    env[names.TASK_NAME_ENV] = task.name
    return env


def _volume_env(mounts: Mapping[str, str], volumes: Mapping[str, Path]) -> dict[str, str]:
    """`/checkpoints` -> CAJAJEJO_VOLUME_CHECKPOINTS=<its folder here>, for scripts that run outside a container."""
    return {names.local_volume_variable(mount): str(volumes[volume]) for mount, volume in mounts.items()}


def _config_files(task: GroupTask, task_dir: Path) -> Path:
    """The task's ConfigMap files, written here as a pod would see them in /etc/configs; returns the folder."""
    folder = task_dir / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (task.files or {}).items():
        (folder / name).write_text(text)
    return folder


def _stamped_as(group: LoadedGroup, task: GroupTask) -> Path:
    return Path(task.config_file or group.path)


def _training_processes(
    group: LoadedGroup,
    task: GroupTask,
    env: dict[str, str],
    task_dir: Path,
    volumes: Mapping[str, Path],
    tracking_uri: str,
) -> list[LocalProcess]:
    assert task.job is not None
    config = task.job.config
    assert isinstance(config, TrainingJobConfig)
    checkpoint_dir = local_path(task.spec, config.training.checkpoints.directory, volumes)
    env = {**env, contract.ENV_CHECKPOINT_ROLES: ",".join(group.evaluator_roles(task))}
    launch = local_training(
        _config_files(task, task_dir) / contract.TRAIN_CONFIG_FILE,
        workdir=task_dir,
        tracking_uri=tracking_uri,
        checkpoint_dir=checkpoint_dir,
        job_name=names.task_job_name(group.header.name, task.name),
        environ=env,
        label=task.name,
        stamped_as=_stamped_as(group, task),
    )
    return launch.processes


def _evaluation_process(
    group: LoadedGroup, task: GroupTask, env: dict[str, str], task_dir: Path, volumes: Mapping[str, Path]
) -> LocalProcess:
    spec = task.spec
    assert isinstance(spec, EvaluationTask)
    configs = _config_files(task, task_dir)
    argv = [
        sys.executable,
        "-m",
        "cajajejo.cli",
        "evaluate",
        "--local",
        "--config",
        str(configs / contract.EVAL_CONFIG_FILE),
        "--helm-config",
        str(configs / contract.RUN_SPECS_FILE),
        "--scratch-dir",
        str(task_dir / "scratch"),
    ]
    if spec.watch is not None:
        watched = local_path(spec, spec.watch, volumes)
        if watched is None:  # the group file's checks refuse this; said again in case they change
            raise CajajejoError(f"task {task.name}: watch {spec.watch} is not on one of its volumes")
        argv += ["--watch", str(watched), "--role", task.name, "--worker", f"{task.name}-local"]
    env = {**env, **_evaluation_stamps(group, task)}
    return LocalProcess(argv, env, task.name, cwd=task_dir)


def _evaluation_stamps(group: LoadedGroup, task: GroupTask) -> dict[str, str]:
    """The stamps of a pod (commit, repository paths, job name), from the group's files in git."""
    from cajajejo.provenance import provenance_for

    stamps = {contract.ENV_JOB_NAME: names.task_job_name(group.header.name, task.name)}
    helm = Path(task.helm_config_file) if task.helm_config_file else None
    try:
        provenance = provenance_for(_stamped_as(group, task), helm, allow_dirty=True)
    except CajajejoError:
        return stamps  # not in a git repository: `evaluate --local` fills in its placeholders
    stamps[contract.ENV_CONFIG_VERSION] = provenance.config_version
    stamps[contract.ENV_CONFIG_PATH] = provenance.config_path
    if provenance.helm_config_path:
        stamps[contract.ENV_HELM_CONFIG_PATH] = provenance.helm_config_path
    return stamps


def _command_processes(
    group: LoadedGroup, task: GroupTask, spec: CommandTask, env: dict[str, str], task_dir: Path
) -> list[LocalProcess]:
    nodes = spec.num_nodes or 1
    processes = []
    for rank in range(nodes):
        node_env = {
            **env,
            # As in the rendered Job: the header's pod settings are the commands', their own envs win.
            **group.header.kubernetes_config.env,
            **spec.envs,
            names.NODE_RANK_ENV: str(rank),
            names.NUM_NODES_ENV: str(nodes),
            names.SKYPILOT_NODE_RANK_ENV: str(rank),
            names.SKYPILOT_NUM_NODES_ENV: str(nodes),
        }
        label = f"{task.name}-{rank}" if nodes > 1 else task.name
        processes.append(LocalProcess(["bash", "-c", spec.run], node_env, label, cwd=task_dir))
    return processes
