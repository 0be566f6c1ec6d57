"""What an evaluation run reads: the two config files, the scratch folder and the provenance stamps.

In a job they come from the container contract (`runtime_contract`): files under /etc/configs, scratch
at /scratch, stamps in env vars. With `--local` the missing stamps are filled from the local git
repository and sensible defaults, so a laptop run is tagged as well as a cluster run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cajajejo import runtime_contract as contract
from cajajejo.errors import CajajejoError, Problem, UserInputError

LOCAL_SCRATCH = Path(".tmp") / "scratch"
LOCAL_JOB_NAME = "local"


@dataclass(frozen=True)
class RuntimeInputs:
    config_path: Path
    helm_config_path: Path
    scratch_dir: Path
    config_version: str
    config_path_in_repo: str
    helm_config_path_in_repo: str
    job_name: str


def resolve_inputs(
    *,
    local: bool,
    config: Path | None = None,
    helm_config: Path | None = None,
    scratch_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> RuntimeInputs:
    """The inputs of this run: explicit arguments first, then the environment, then (local) defaults."""
    env = os.environ if environ is None else environ
    config_dir = Path(env.get(contract.ENV_CONFIG_DIR) or contract.CONFIG_DIR)
    config = config or config_dir / contract.EVAL_CONFIG_FILE
    helm_config = helm_config or config_dir / contract.RUN_SPECS_FILE
    default_scratch = LOCAL_SCRATCH if local else Path(contract.SCRATCH_DIR)
    scratch = scratch_dir or Path(env.get(contract.ENV_SCRATCH_DIR) or default_scratch)
    stamps = {
        name: env.get(name, "").strip()
        for name in (
            contract.ENV_CONFIG_VERSION,
            contract.ENV_CONFIG_PATH,
            contract.ENV_HELM_CONFIG_PATH,
            contract.ENV_JOB_NAME,
        )
    }
    if local:
        stamps = {**_local_stamps(config, helm_config), **{k: v for k, v in stamps.items() if v}}
    missing = [name for name, value in stamps.items() if not value]
    if missing:
        raise CajajejoError(
            f"{', '.join(missing)} not set: the job manifest sets them; for a run outside a job use --local"
        )
    for path in (config, helm_config):
        if not path.is_file():
            where = "--config/--helm-config" if local else f"{contract.ENV_CONFIG_DIR} (default {contract.CONFIG_DIR})"
            raise UserInputError(Problem(str(path), f"no such file; check {where}"))
    return RuntimeInputs(
        config_path=config,
        helm_config_path=helm_config,
        scratch_dir=scratch,
        config_version=stamps[contract.ENV_CONFIG_VERSION],
        config_path_in_repo=stamps[contract.ENV_CONFIG_PATH],
        helm_config_path_in_repo=stamps[contract.ENV_HELM_CONFIG_PATH],
        job_name=stamps[contract.ENV_JOB_NAME],
    )


def _local_stamps(config: Path, helm_config: Path) -> dict[str, str]:
    """Stamps for a laptop run: the local commit (with -dirty) and repository paths, when there is a repo."""
    version, config_in_repo, helm_in_repo = "unversioned", str(config), str(helm_config)
    try:
        from cajajejo.provenance import provenance_for

        stamps = provenance_for(config, helm_config, allow_dirty=True)
        version, config_in_repo, helm_in_repo = stamps.config_version, stamps.config_path, stamps.helm_config_path
    except CajajejoError:
        pass  # not in a git repository (or no commits yet): the placeholders say so
    return {
        contract.ENV_CONFIG_VERSION: version,
        contract.ENV_CONFIG_PATH: config_in_repo,
        contract.ENV_HELM_CONFIG_PATH: helm_in_repo,
        contract.ENV_JOB_NAME: LOCAL_JOB_NAME,
    }
