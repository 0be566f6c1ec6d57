"""What a rendered manifest and the container runtime agree on: paths, file names, env variables, tags.

Both sides import these names, so the manifest and the code that reads it cannot drift apart.
"""

from __future__ import annotations

CONFIG_DIR = "/etc/configs"
SCRATCH_DIR = "/scratch"
EVAL_CONFIG_FILE = "eval_config.yml"
RUN_SPECS_FILE = "run_specs.conf"
TRAIN_CONFIG_FILE = "train_config.yml"


def config_dir() -> str:
    """Where the job's ConfigMap is mounted: $CAJAJEJO_CONFIG_DIR, else the manifest's path."""
    import os

    return os.environ.get(ENV_CONFIG_DIR) or CONFIG_DIR


# Environment variables the job's containers receive (names from the original tool's manifests).
ENV_CONFIG_VERSION = "CONFIG_VERSION"
ENV_CONFIG_PATH = "CONFIG_PATH_GIT_REPO"
ENV_HELM_CONFIG_PATH = "HELM_CONFIG_PATH_GIT_REPO"
ENV_JOB_NAME = "JOB_NAME"
ENV_CONFIG_DIR = "CAJAJEJO_CONFIG_DIR"
ENV_SCRATCH_DIR = "CAJAJEJO_SCRATCH_DIR"
ENV_MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"
# Comma-separated evaluator roles that watch a trainer's checkpoints (set by a job group): the trainer
# registers them before its first checkpoint, so pruning waits for evaluators that start after it.
ENV_CHECKPOINT_ROLES = "CAJAJEJO_CHECKPOINT_ROLES"

RESERVED_ENV = frozenset(
    {
        ENV_CONFIG_VERSION,
        ENV_CONFIG_PATH,
        ENV_HELM_CONFIG_PATH,
        ENV_JOB_NAME,
        ENV_CONFIG_DIR,
        ENV_SCRATCH_DIR,
        ENV_MLFLOW_TRACKING_URI,
        ENV_CHECKPOINT_ROLES,
    }
)

# What a training pod's torchrun world is told (the seed's names), and what torchrun itself sets for each
# worker: a user's env may set none of them, or the world would be told two different things.
ENV_NNODES = "NNODES"
ENV_NODE_RANK = "NODE_RANK"
ENV_RANK = "RANK"
ENV_NPROC_PER_NODE = "NPROC_PER_NODE"
ENV_WORLD_SIZE = "WORLD_SIZE"
ENV_MASTER_ADDR = "MASTER_ADDR"
ENV_MASTER_PORT = "MASTER_PORT"
TRAINING_ENV = frozenset(
    {
        ENV_NNODES,
        ENV_NODE_RANK,
        ENV_RANK,
        ENV_NPROC_PER_NODE,
        ENV_WORLD_SIZE,
        ENV_MASTER_ADDR,
        ENV_MASTER_PORT,
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "GROUP_RANK",
        "ROLE_RANK",
        "ROLE_WORLD_SIZE",
        "NCCL_DEBUG",
        "NCCL_SOCKET_IFNAME",
        "TORCH_NCCL_ASYNC_ERROR_HANDLING",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
    }
)

# MLflow tags the evaluation runtime sets on every run (the original tool's list); a user tag may not
# reuse one, or one of the two would silently win.
RESERVED_TAGS = frozenset(
    {
        "config_git_sha",
        "config_path_git_repo",
        "helm_config_path_git_repo",
        "image_build_cajajejo_version",
        "model_run_id",
        "model_artifact_path",
        "model_gs_uri",
        "accelerator",
        "cpu",
        "memory",
        "helm_args",
        "image",
        "image_tag",
        "job_name",
    }
)

# helm-run options the runtime sets itself from the config; repeating them in helm.args would conflict.
HELM_OPTIONS_SET_BY_RUNTIME = frozenset({"--suite", "--conf-paths", "--output-path", "-o", "--local-path"})
