"""A training job's plan: an Indexed Job of `nnodes` pods running one torchrun world, a headless Service
that gives every pod a stable DNS name, and the job's ConfigMap (the config, for the built-in trainer).

Pod `i` of the Indexed Job is torchrun node `i`: Kubernetes gives it the hostname `<job>-<i>` and, with
the Job's `subdomain` set to the Service, the DNS name `<job>-<i>.<job>.<namespace>.svc` from the moment
it has an address (`publishNotReadyAddresses`), before any readiness. Pod 0's name is the c10d
rendezvous endpoint. torchrun restarts the whole world when a worker fails (`max_restarts`); a pod that
fails for good is replaced by the Job (`backoffLimit`), and its replacement joins the next rendezvous.
A training task of a group is the same Job, named under the group's Service instead (`render/group.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cajajejo import runtime_contract
from cajajejo.config.loader import LoadedConfig, training_inputs
from cajajejo.config.training import TrainingJobConfig
from cajajejo.errors import Problem, UserInputError
from cajajejo.names import dns1035_label_problem, pod_dns_name
from cajajejo.render.plan import JobInputs, Plan, Provenance, RenderOptions, kubelet_literal, render_plan
from cajajejo.torchrun import torchrun_command

KIND = "training"
ENTRY_TEMPLATE = f"{KIND}/plan.yaml.j2"
# The annotation the Job controller puts on each pod of an Indexed Job; its value is the pod's index.
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
TRAINER_CONTAINER = "trainer"
RENDEZVOUS = "rendezvous"


def render_training_plan(
    loaded: LoadedConfig[TrainingJobConfig],
    provenance: Provenance | None = None,
    options: RenderOptions | None = None,
) -> Plan:
    inputs = JobInputs(KIND, loaded.config, training_inputs(loaded))

    def context(job: dict[str, Any]) -> dict[str, Any]:
        _check_own_service_name(job["name"], loaded.config.training.nnodes)
        return training_context(loaded.config, job, service=job["name"])

    return render_plan(inputs, provenance or Provenance(), options or RenderOptions(), context)


def training_context(
    config: TrainingJobConfig, job: dict[str, Any], *, service: str, claims: Sequence[tuple[str, str]] = ()
) -> dict[str, Any]:
    """The torchrun world of `config` in the Job `job`, its pods named under the headless Service `service`.

    `claims` are further PersistentVolumeClaims (name, mount path) its pods mount: a group's volumes.
    """
    training = config.training
    port = training.rendezvous.port
    job["subdomain"] = service
    # Pod env first, so that the command's $(VAR) references are defined in the container.
    job["field_env"] = rank_env(runtime_contract.ENV_NODE_RANK, runtime_contract.ENV_RANK)
    master_addr = pod_dns_name(job["name"], service, job["namespace"], 0)
    job["env"] = {**world_env(config, master_addr, port), **job["env"]}
    gpus = config.compute_config.gpu_count
    own = [(volume.claim_name, volume.mount_path, volume.read_only) for volume in training.volumes]
    return {
        "service": {
            "name": service,
            "namespace": job["namespace"],
            "labels": job["labels"],
            "annotations": job["annotations"],
            "selector": job["pod_labels"],
            "ports": [{"name": RENDEZVOUS, "port": port, "targetPort": port}],
        },
        "pod": {
            "nodes": training.nnodes,
            "container": TRAINER_CONTAINER,
            "command": torchrun_command(
                config,
                node_rank=f"$({runtime_contract.ENV_NODE_RANK})",
                rendezvous_host=f"$({runtime_contract.ENV_MASTER_ADDR})",
                run_id=job["name"],
                config_path=f"{runtime_contract.CONFIG_DIR}/{runtime_contract.TRAIN_CONFIG_FILE}",
                literal=kubelet_literal,
            ),
            "ports": [{"name": RENDEZVOUS, "containerPort": port}],
            "resources": pod_resources(config.compute_config.cpu, config.compute_config.memory, gpus),
        },
        "claims": claim_mounts([*own, *((name, path, False) for name, path in claims)]),
    }


def rank_env(*names: str) -> dict[str, str]:
    """Variables that hold the pod's index in its Indexed Job (a node rank), read from the pod's annotation."""
    return dict.fromkeys(names, f"metadata.annotations['{COMPLETION_INDEX}']")


def pod_resources(cpu: str | None, memory: str | None, gpus: int, *, memory_limit: bool = True) -> dict[str, Any]:
    """A container's requests and limits: CPU and memory asked for, memory (unless a minimum) and GPUs capped.

    CPU is never limited: a CPU limit throttles a process that could use an idle core.
    """
    requests = {key: value for key, value in (("cpu", cpu), ("memory", memory)) if value is not None}
    limits: dict[str, str] = {"memory": memory} if memory is not None and memory_limit else {}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    return {key: value for key, value in (("requests", requests), ("limits", limits)) if value}


def claim_mounts(claims: list[tuple[str, str, bool]]) -> list[dict[str, Any]]:
    """PersistentVolumeClaims (claim, mount path, read only) as the pod templates mount them."""
    return [
        {"name": f"volume-{i}", "claim_name": claim, "mount_path": path, "read_only": read_only}
        for i, (claim, path, read_only) in enumerate(claims)
    ]


def world_env(config: TrainingJobConfig, master_addr: str, port: int) -> dict[str, str]:
    training = config.training
    env = {
        runtime_contract.ENV_NNODES: str(training.nnodes),
        runtime_contract.ENV_NPROC_PER_NODE: str(config.nproc_per_node),
        runtime_contract.ENV_WORLD_SIZE: str(config.world_size),
        runtime_contract.ENV_MASTER_ADDR: master_addr,
        runtime_contract.ENV_MASTER_PORT: str(port),
    }
    if training.nccl.debug is not None:
        env["NCCL_DEBUG"] = training.nccl.debug
    if training.nccl.socket_ifname is not None:
        env["NCCL_SOCKET_IFNAME"] = training.nccl.socket_ifname
    if training.nccl.async_error_handling:
        env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] = "1"
    model = training.trainer.model if training.trainer is not None else None
    if model is not None and model.type == "causal_lm" and model.local_files_only:
        env["HF_HUB_OFFLINE"] = "1"  # seed §4: offline training never reaches the hub
        env["TRANSFORMERS_OFFLINE"] = "1"
    return env


def _check_own_service_name(job_name: str, nnodes: int) -> None:
    # The job's Service has its name, and pod hostnames are `<job>-<index>` (DNS labels, at most 63 characters).
    problem = dns1035_label_problem(job_name)
    longest = f"{job_name}-{nnodes - 1}"
    if problem is not None:
        problem += " (it also names the job's Service)"
    elif len(longest) > 63:
        problem = (
            f"is too long for {nnodes} pods: hostname {longest!r} exceeds 63 characters; "
            "choose a shorter --job-name or kubernetes_config.job_name_prefix"
        )
    if problem:
        raise UserInputError(Problem("job name", f"{job_name!r} {problem}"))
