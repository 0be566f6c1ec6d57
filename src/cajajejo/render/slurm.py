"""A job config as a Slurm batch script: `#SBATCH` resources, the job's env, and the command it runs.

Training: one `srun` step with one task per node; each task runs the same torchrun command as a
Kubernetes pod (`cajajejo.torchrun`), with the node rank from `$SLURM_NODEID` and the c10d rendezvous
on the first node of the allocation (`scontrol show hostnames`). Evaluation: one task fetches the
model, then one runs `cajajejo evaluate`.

Jobs are submitted with `--requeue` and `--signal=B:USR1@<grace>`: that long before the time limit
(or on preemption) Slurm signals the batch shell, which forwards USR1 to the step; torchrun passes it
on to its workers (`--signals-to-handle`), the built-in trainer checkpoints and exits 0, and the
script requeues the job, whose next run resumes from the checkpoint. An evaluation gets SIGTERM and
ends; it has nothing to resume.

Nothing here touches the network. The config files the job reads are written next to the script by
the caller, which passes their paths.
"""

from __future__ import annotations

import math
import posixpath
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cajajejo import kube, runtime_contract
from cajajejo.config.common import JobConfigBase
from cajajejo.config.evaluation import EvaluationJobConfig
from cajajejo.config.slurm import SlurmSettings, has_component_word
from cajajejo.config.training import TrainingJobConfig
from cajajejo.errors import Problem, RenderedManifestError, UserInputError, quoted
from cajajejo.render.shell import expansion, no_nul, sh_command, shell_environment
from cajajejo.render.training import world_env
from cajajejo.torchrun import torchrun_command

# A Slurm job name is also a path component here (checkpoints/<job>): a plain name, so nothing to quote.
_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
LOG_FILE = "logs/%x-%j.out"  # %x: the job name, %j: its id; requeued runs append to the same file
# torchrun's default list plus USR1, which it then forwards to its workers instead of dying of it.
TORCHRUN_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"
# A job's rendezvous port, unless the config pins one: FIRST_JOB_PORT + job id % JOB_PORTS. On a node
# shared by several jobs a fixed port would be taken by the first; ids of jobs alive at once rarely
# collide modulo 20000.
FIRST_JOB_PORT = 20_000
JOB_PORTS = 20_000
SHUTDOWN_MARGIN_SECONDS = 15  # of the grace: time left to requeue after the workers have stopped
# Variables the script sets for the job's processes; a config's env may not set them too.
SCRIPT_ENV = frozenset({"MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "RANK"})
# Slurm's own variables (the script reads SLURM_JOB_ID, SLURM_JOB_NODELIST, ...) and its commands' inputs.
SLURM_ENV_PREFIXES = ("SLURM_", "SRUN_", "SBATCH_", "SALLOC_")


def render_slurm_script(
    config: JobConfigBase,
    settings: SlurmSettings,
    *,
    job_name: str,
    config_path: str,
    provenance_env: Mapping[str, str],
    helm_config_path: str | None = None,
    extra_trainer_args: Sequence[str] = (),
    checkpoint_dir: str | None = None,
    checkpoint: CheckpointToEvaluate | None = None,
    after_steps: Sequence[Sequence[str]] = (),
    source: str = "job config",
    template_dir: Path | None = None,
) -> str:
    """The checked batch script that runs `config` as Slurm job `job_name`.

    `config_path` (and, for an evaluation, `helm_config_path`) are where the job finds its input
    files on the cluster; `provenance_env` are the stamps every job gets (CONFIG_VERSION, ...);
    `extra_trainer_args` go to the built-in trainer after its own, which trains in `checkpoint_dir`
    (default: `<workdir>/checkpoints/<job name>`, the job's own); an evaluation evaluates its config's
    model, or `checkpoint` when given; `after_steps` run (as one-task steps, in the job's container)
    once the job's work has succeeded (not when it stopped on a signal); `source` names the config file
    in errors. Problems with the inputs raise UserInputError, one line each.
    """
    _check_job_name(job_name)
    for value, what in ((config_path, "config path"), (checkpoint_dir or "", "checkpoint dir")):
        no_nul(value, what)
    for arg in extra_trainer_args:
        no_nul(arg, "trainer arguments")
    for arg in (a for argv in after_steps for a in argv):
        no_nul(arg, "script arguments")
    if isinstance(config, TrainingJobConfig):
        template, context = "slurm/train.sh.j2", _training_context(config, settings, job_name, config_path, source)
        checkpoints = checkpoint_dir or f"{settings.shared_dir}/checkpoints/{job_name}"
        context["step"] = _step(
            settings,
            context["nodes"],
            _trainer_argv(config, settings, checkpoints, config_path, extra_trainer_args, source),
            context,
        )
        context["after_steps"] = [_step(settings, 1, list(argv), context) for argv in after_steps]
    elif isinstance(config, EvaluationJobConfig):
        if helm_config_path is None:
            raise ValueError("an evaluation's batch script needs helm_config_path")
        no_nul(helm_config_path, "HELM config path")
        template, context = "slurm/evaluate.sh.j2", _evaluation_context(config, settings, source)
        # Per job name, not per run: a requeued evaluation finds the model it fetched before.
        scratch = f"{settings.shared_dir}/scratch/{job_name}"
        context["exports"].append((runtime_contract.ENV_SCRATCH_DIR, scratch))
        inputs = ["--config", config_path, "--helm-config", helm_config_path, "--scratch-dir", scratch]
        if checkpoint is None:  # the config's model: fetched first, as the Kubernetes job's init container does
            work = [["cajajejo", "models", "download", "--config", config_path, "--scratch-dir", scratch]]
            work.append(["cajajejo", "--trace", "evaluate", *inputs])
        else:  # the checkpoint is the model: nothing to fetch
            work = [["cajajejo", "--trace", "evaluate", *inputs, *checkpoint.arguments()]]
        context["steps"] = [
            ["mkdir", "-p", "--", scratch],
            *(_step(settings, 1, argv, context) for argv in [*work, *map(list, after_steps)]),
        ]
    else:
        raise TypeError(f"no Slurm batch script for a {type(config).__name__}")
    context["directives"] = _directives(settings, job_name, context)
    context["exports"] = _exports(config, job_name, config_path, provenance_env, context["exports"], source)
    context["secret_files"] = _secret_files(config, settings, source)
    text = shell_environment(template_dir).get_template(template).render(context)
    check_script(text, context["directives"])
    return text


@dataclass(frozen=True)
class CheckpointToEvaluate:
    """One published checkpoint an evaluation job evaluates as evaluator role `role` (`evaluate --watch
    --step`), writing its result to `metrics_file` as well."""

    directory: str
    step: int
    role: str
    metrics_file: str

    def arguments(self) -> list[str]:
        for value in (self.directory, self.role, self.metrics_file):
            no_nul(value, "checkpoint to evaluate")
        return [
            *("--watch", self.directory, "--role", self.role, "--step", str(self.step)),
            *("--metrics-file", self.metrics_file),
        ]


def _check_job_name(job_name: str) -> None:
    if not _JOB_NAME.fullmatch(job_name) or has_component_word(job_name):
        raise UserInputError(
            Problem(
                "--job-name",
                f"{quoted(job_name)} is not a Slurm job name here: letters, digits, '.', '_', '-', at most 128, "
                "starting with a letter or digit, without the words hetjob or packjob (sbatch's own)",
            )
        )


def _problem(source: str, field: str, message: str) -> UserInputError:
    return UserInputError(Problem(source, message, field=field))


def _resources(config: JobConfigBase, settings: SlurmSettings, nodes: int) -> dict[str, Any]:
    compute = config.compute_config
    cpus = settings.cpus_per_task
    if cpus is None:
        amount = kube.parse_quantity(compute.cpu)
        cpus = max(1, math.ceil(amount)) if amount is not None else 1
    memory = settings.memory
    if memory is None:
        amount = kube.parse_quantity(compute.memory)
        # Slurm's M is a mebibyte; round up so the job never gets less than the config asks for.
        memory = f"{max(1, math.ceil((amount or 0) / 2**20))}M"
    gpus = settings.gpus_per_node if settings.gpus_per_node is not None else compute.gpu_count
    return {
        "nodes": nodes,
        "cpus": cpus,
        "memory": memory,
        "gpus": 0 if settings.gres else gpus,  # --gpus-per-node; a gres line asks for them instead
        "wants_gpus": bool(gpus) or "gpu" in (settings.gres or ""),
    }


def _training_context(
    config: TrainingJobConfig, settings: SlurmSettings, job_name: str, config_path: str, source: str
) -> dict[str, Any]:
    nnodes = config.training.nnodes
    if settings.nodes is not None and settings.nodes != nnodes:
        raise _problem(
            source,
            "slurm.nodes",
            f"{settings.nodes} differs from training.nnodes ({nnodes}): the torchrun world has one node per "
            "Slurm node; remove slurm.nodes or change training.nnodes",
        )
    world = world_env(config, "", config.training.rendezvous.port)
    world.pop(runtime_contract.ENV_MASTER_ADDR)  # the first node's name: known only in the job (prepare block)
    if not port_is_pinned(config):  # jobs sharing a node must not share a port: the prepare block picks one
        world.pop(runtime_contract.ENV_MASTER_PORT)
    return {
        **_resources(config, settings, nnodes),
        "exports": list(world.items()),
        "port_from_job_id": not port_is_pinned(config),
        "first_port": FIRST_JOB_PORT,
        "ports": JOB_PORTS,
        "requeue": settings.requeue,
        "forward_signal": "USR1",
    }


def port_is_pinned(config: TrainingJobConfig) -> bool:
    """Whether the config chose the rendezvous port itself (else each Slurm job takes one from its id)."""
    return "port" in config.training.rendezvous.model_fields_set


def _evaluation_context(config: EvaluationJobConfig, settings: SlurmSettings, source: str) -> dict[str, Any]:
    if settings.nodes not in (None, 1):
        raise _problem(source, "slurm.nodes", f"{settings.nodes}: an evaluation runs on one node; remove it")
    return {**_resources(config, settings, 1), "exports": [], "forward_signal": "TERM"}


def _trainer_argv(
    config: TrainingJobConfig,
    settings: SlurmSettings,
    checkpoint_dir: str,
    config_path: str,
    extra_trainer_args: Sequence[str],
    source: str,
) -> list[str]:
    script = config.training.script
    if script is not None:
        no_nul(script.path, source, "training.script.path")
        for i, arg in enumerate(script.args):
            no_nul(arg, source, f"training.script.args[{i}]")
    # By default each job resumes only its own checkpoints, even when jobs share a workdir.
    checkpoint_args = ["--checkpoint-dir", checkpoint_dir]
    return torchrun_command(
        config,
        node_rank=expansion("SLURM_NODEID"),
        rendezvous_host=expansion("MASTER_ADDR"),
        rendezvous_port=None if port_is_pinned(config) else expansion("MASTER_PORT"),
        run_id=expansion("SLURM_JOB_ID"),
        config_path=config_path,
        launcher=(
            "torchrun",
            f"--signals-to-handle={TORCHRUN_SIGNALS}",
            f"--shutdown-timeout={settings.signal_grace_seconds - SHUTDOWN_MARGIN_SECONDS}",
        ),
        trainer_args=[*checkpoint_args, *extra_trainer_args] if config.training.trainer is not None else (),
    )


def _step(settings: SlurmSettings, nodes: int, argv: list[str], resources: dict[str, Any]) -> list[str]:
    """`srun` running `argv` once per node, in the job's container if it has one. The command is handed
    to a shell in each task, so that the task's own variables (`$SLURM_NODEID`) are expanded there, not
    in the batch shell on the first node. srun does not inherit sbatch's --cpus-per-task (Slurm 22.05
    and later): without it every task would get one CPU."""
    per_task = [
        "env",
        f"{runtime_contract.ENV_NODE_RANK}={expansion('SLURM_NODEID')}",
        f"{runtime_contract.ENV_RANK}={expansion('SLURM_NODEID')}",
        *argv,
    ]
    srun = [
        "srun",
        "--kill-on-bad-exit=1",
        f"--nodes={nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={resources['cpus']}",
    ]
    container = settings.container
    prefix: list[str] = []
    if container is not None and container.runtime == "enroot":
        srun += [
            f"--container-image={container.image}",
            f"--container-mounts={settings.shared_dir}:{settings.shared_dir}",
        ]
    elif container is not None:
        gpus = ["--nv"] if resources["wants_gpus"] else []
        prefix = ["apptainer", "exec", *gpus, "--bind", settings.shared_dir, container.image]
    return [*srun, *prefix, "bash", "-c", "exec " + sh_command(per_task)]


def _directives(settings: SlurmSettings, job_name: str, context: dict[str, Any]) -> list[tuple[str, str | None]]:
    log = f"{settings.shared_dir}/{LOG_FILE}"
    wanted: list[tuple[str, object]] = [
        ("--job-name", job_name),
        ("--partition", settings.partition),
        ("--account", settings.account),
        ("--qos", settings.qos),
        ("--time", settings.time_limit),
        ("--nodes", context["nodes"]),
        ("--ntasks-per-node", 1),
        ("--cpus-per-task", context["cpus"]),
        ("--mem", context["memory"]),
        ("--gres", settings.gres),
        ("--gpus-per-node", context["gpus"] or None),
        ("--constraint", settings.constraint),
        ("--output", log),
        ("--error", log),
        ("--open-mode", "append"),
        ("--requeue" if settings.requeue else "--no-requeue", True),
        ("--signal", f"B:USR1@{settings.signal_grace_seconds}"),
    ]
    directives = [(option, None if value is True else str(value)) for option, value in wanted if value is not None]
    for extra in settings.extra_sbatch:
        option, _, value = extra.partition("=")
        directives.append((option, value if "=" in extra else None))
    return directives


def _exports(
    config: JobConfigBase,
    job_name: str,
    config_path: str,
    provenance_env: Mapping[str, str],
    kind_env: list[tuple[str, str]],
    source: str,
) -> list[tuple[str, str]]:
    own = [
        *provenance_env.items(),
        (runtime_contract.ENV_JOB_NAME, job_name),
        (runtime_contract.ENV_CONFIG_DIR, posixpath.dirname(config_path) or "."),
        (runtime_contract.ENV_MLFLOW_TRACKING_URI, config.mlflow_config.tracking_uri),
        *kind_env,
    ]
    for name, value in own:
        if not _SHELL_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a shell variable name")
        no_nul(value, name)
    taken = {name for name, _ in own}
    if len(taken) != len(own):  # the caller's stamps repeat one of ours: one of the two would be lost
        raise ValueError(f"provenance_env repeats a variable the script sets: {sorted(provenance_env)}")
    taken |= SCRIPT_ENV
    user = list(config.kubernetes_config.env.items())
    for name, value in user:
        field = f"kubernetes_config.env.{name}"
        if not _SHELL_NAME.fullmatch(name):
            raise _problem(
                source, field, "is not a shell variable name (letters, digits, '_'), as a Slurm job's env must be"
            )
        if name in taken:
            raise _problem(source, field, f"{name} is set by cajajejo in the batch script; choose another name")
        if name.startswith(SLURM_ENV_PREFIXES) or name == "PATH":
            what = "finds srun, torchrun and cajajejo" if name == "PATH" else "is Slurm's own"
            raise _problem(source, field, f"{name} {what} (the script relies on it); choose another name")
        no_nul(value, source, field)
    return [*own, *user]


def _secret_files(config: JobConfigBase, settings: SlurmSettings, source: str) -> list[tuple[str, str]]:
    """Secrets on Slurm: read from a file on the cluster when the job starts, never written as values.

    Each Kubernetes Secret the config names (`kubernetes_config.secret_env`) must have a file in
    `slurm.secret_files`: a Secret does not exist on a Slurm cluster, and dropping the variable would
    fail the job later, far from its cause.
    """
    missing = sorted(set(config.kubernetes_config.secret_env) - set(settings.secret_files))
    if missing:
        name = missing[0]
        raise _problem(
            source,
            f"kubernetes_config.secret_env.{name}",
            f"has no source on Slurm; add slurm.secret_files.{name}: a file on the cluster that holds the value",
        )
    clash = sorted(set(settings.secret_files) & (set(config.kubernetes_config.env) | SCRIPT_ENV))
    if clash:
        raise _problem(source, f"slurm.secret_files.{clash[0]}", "is also set as a plain variable; keep one")
    return sorted(settings.secret_files.items())


def sbatch_directives(script: str) -> list[tuple[str, str | None]]:
    """The `#SBATCH` options sbatch reads from `script`: the lines before its first command."""
    directives: list[tuple[str, str | None]] = []
    for line in script.splitlines()[1:]:
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break  # sbatch stops reading directives at the first command
        if line.startswith("#SBATCH"):
            option, sep, value = line[len("#SBATCH") :].strip().partition("=")
            directives.append((option, value if sep else None))
    return directives


def check_script(script: str, directives: list[tuple[str, str | None]]) -> None:
    """Refuse a rendered script that bash cannot parse or whose `#SBATCH` lines are not `directives`."""
    found = sbatch_directives(script)
    if found != directives:
        raise RenderedManifestError(f"the batch script's #SBATCH lines are {found}, not {directives} ({_BLAME})")
    result = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, check=False)  # noqa: S607
    if result.returncode != 0:
        raise RenderedManifestError(f"the batch script is not valid bash ({_BLAME}): {result.stderr.strip()}")


_BLAME = "a bug in cajajejo, or in a template of --template-dir; please report it with the config"
