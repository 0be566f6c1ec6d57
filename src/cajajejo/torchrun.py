"""The torchrun command line of a training job: one function, used by every backend.

A Kubernetes pod, a Slurm node and `cajajejo train --local` run the same torchrun invocation; only the
node rank, the rendezvous host and the config's path differ, and those come in as arguments. Nothing
here imports torch: rendering a job must stay fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cajajejo.config.training import TrainingJobConfig

# torchrun's name for the etcd rendezvous that runs on etcd's v2 API (the `python-etcd` client).
ETCD_BACKEND = "etcd-v2"
TRAINER_MODULE = "cajajejo.training"


def _unchanged(value: str) -> str:
    return value


def torchrun_command(
    config: TrainingJobConfig,
    *,
    node_rank: str,
    rendezvous_host: str,
    run_id: str,
    config_path: str,
    nnodes: int | None = None,
    nproc_per_node: int | None = None,
    rendezvous_port: int | str | None = None,  # a str: the backend's expansion of a variable
    launcher: Sequence[str] = ("torchrun",),
    trainer_args: Sequence[str] = (),
    literal: Callable[[str], str] = _unchanged,
) -> list[str]:
    """The argv that starts node `node_rank` of the job's world.

    `rendezvous_host` is where c10d's store lives (pod 0's name on Kubernetes); an etcd rendezvous uses
    the config's endpoint instead. `literal` protects the user's own strings (script path and args)
    from the backend's expansion (the kubelet's `$(VAR)`); cajajejo's own `$(...)` references in
    `node_rank` and `rendezvous_host` are meant to be expanded and are left alone.
    """
    training = config.training
    rendezvous = training.rendezvous
    if rendezvous.backend == "etcd":
        backend, endpoint = ETCD_BACKEND, literal(str(rendezvous.endpoint))
    else:
        backend, endpoint = "c10d", f"{rendezvous_host}:{rendezvous_port or rendezvous.port}"
    argv = [
        *launcher,
        f"--nnodes={nnodes or training.nnodes}",
        f"--nproc-per-node={nproc_per_node or config.nproc_per_node}",
        f"--node-rank={node_rank}",
        f"--rdzv-backend={backend}",
        f"--rdzv-endpoint={endpoint}",
        f"--rdzv-id={run_id}",
        f"--rdzv-conf=join_timeout={rendezvous.join_timeout_seconds}",
        f"--max-restarts={training.max_restarts}",
    ]
    if training.trainer is not None:
        return [*argv, "-m", TRAINER_MODULE, "--config", config_path, *trainer_args]
    script = training.script
    assert script is not None  # the config has exactly one of trainer and script
    no_python = [] if script.python else ["--no-python"]
    return [*argv, *no_python, literal(script.path), *(literal(arg) for arg in script.args)]
