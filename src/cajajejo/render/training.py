"""A training job's plan: an Indexed Job of `nnodes` pods running one torchrun world, a headless Service
that gives every pod a stable DNS name, and the job's ConfigMap (the config, for the built-in trainer).

Pod `i` of the Indexed Job is torchrun node `i`: Kubernetes gives it the hostname `<job>-<i>` and, with
the Job's `subdomain` set to the Service, the DNS name `<job>-<i>.<job>.<namespace>.svc` from the moment
it has an address (`publishNotReadyAddresses`), before any readiness. Pod 0's name is the c10d
rendezvous endpoint. torchrun restarts the whole world when a worker fails (`max_restarts`); a pod that
fails for good is replaced by the Job (`backoffLimit`), and its replacement joins the next rendezvous.
"""

from __future__ import annotations

from typing import Any

from cajajejo import runtime_contract
from cajajejo.config.loader import LoadedConfig, check_inputs_fit_a_configmap
from cajajejo.config.training import TrainingJobConfig
from cajajejo.errors import Problem, UserInputError
from cajajejo.render.plan import JobInputs, Plan, Provenance, RenderOptions, kubelet_literal, render_plan
from cajajejo.torchrun import torchrun_command

KIND = "training"
ENTRY_TEMPLATE = f"{KIND}/plan.yaml.j2"
# The annotation the Job controller puts on each pod of an Indexed Job; its value is the pod's index.
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
TRAINER_CONTAINER = "trainer"


def training_inputs(loaded: LoadedConfig[TrainingJobConfig]) -> dict[str, str]:
    """The files a training job's ConfigMap carries (the config itself), checked to fit."""
    files = {runtime_contract.TRAIN_CONFIG_FILE: loaded.text}
    check_inputs_fit_a_configmap(files, loaded.path)
    return files


def render_training_plan(
    loaded: LoadedConfig[TrainingJobConfig],
    provenance: Provenance | None = None,
    options: RenderOptions | None = None,
) -> Plan:
    inputs = JobInputs(KIND, loaded.config, training_inputs(loaded))
    return render_plan(inputs, provenance or Provenance(), options or RenderOptions(), _context_for(loaded.config))


def pod_dns_name(job_name: str, namespace: str, index: int) -> str:
    """Pod `index`'s stable name: `<job>-<index>` in the Service `<job>` (resolvable from any pod)."""
    return f"{job_name}-{index}.{job_name}.{namespace}.svc"


def _context_for(config: TrainingJobConfig) -> Any:
    def context(job: dict[str, Any]) -> dict[str, Any]:
        training = config.training
        _check_hostnames_fit(job["name"], training.nnodes)
        master_addr = pod_dns_name(job["name"], job["namespace"], 0)
        port = training.rendezvous.port
        # Pod env first, so that the command's $(VAR) references are defined in the container.
        job["field_env"] = {
            runtime_contract.ENV_NODE_RANK: f"metadata.annotations['{COMPLETION_INDEX}']",
            runtime_contract.ENV_RANK: f"metadata.annotations['{COMPLETION_INDEX}']",
        }
        job["env"] = {**_world_env(config, master_addr, port), **job["env"]}
        return {
            "service": {"name": job["name"], "port": port},
            "trainer": {
                "container": TRAINER_CONTAINER,
                "command": torchrun_command(
                    config,
                    node_rank=f"$({runtime_contract.ENV_NODE_RANK})",
                    rendezvous_host=f"$({runtime_contract.ENV_MASTER_ADDR})",
                    run_id=job["name"],
                    config_path=f"{runtime_contract.CONFIG_DIR}/{runtime_contract.TRAIN_CONFIG_FILE}",
                    literal=kubelet_literal,
                ),
                "gpus": config.compute_config.gpu_count,
                "volumes": [
                    {"name": f"volume-{i}", **volume.model_dump()} for i, volume in enumerate(training.volumes)
                ],
            },
        }

    return context


def _world_env(config: TrainingJobConfig, master_addr: str, port: int) -> dict[str, str]:
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


def _check_hostnames_fit(job_name: str, nnodes: int) -> None:
    # Pod hostnames are `<job>-<index>` and must stay DNS labels (at most 63 characters).
    longest = f"{job_name}-{nnodes - 1}"
    if len(longest) > 63:
        raise UserInputError(
            Problem(
                "job name",
                f"{job_name!r} is too long for {nnodes} pods: hostname {longest!r} exceeds 63 characters; "
                "choose a shorter --job-name or kubernetes_config.job_name_prefix",
            )
        )
