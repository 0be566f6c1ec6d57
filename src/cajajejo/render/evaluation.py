"""An evaluation job's plan: a Job (model fetch, then HELM), its ConfigMap, a StorageClass when asked for."""

from __future__ import annotations

from typing import Any

from cajajejo import runtime_contract
from cajajejo.config.evaluation import EvaluationJobConfig
from cajajejo.config.loader import LoadedConfig, evaluation_inputs
from cajajejo.config.run_specs import RunSpecs
from cajajejo.render.plan import LABEL_PREFIX, JobInputs, Plan, Provenance, RenderOptions, render_plan

KIND = "evaluation"
ENTRY_TEMPLATE = f"{KIND}/plan.yaml.j2"


def render_evaluation_plan(
    loaded: LoadedConfig[EvaluationJobConfig],
    run_specs: RunSpecs,
    provenance: Provenance | None = None,
    options: RenderOptions | None = None,
) -> Plan:
    provenance = provenance or Provenance()
    inputs = JobInputs(
        KIND,
        loaded.config,
        evaluation_inputs(loaded, run_specs),
        input_paths={runtime_contract.ENV_HELM_CONFIG_PATH: provenance.helm_config_path},
        path_annotations={f"{LABEL_PREFIX}/helm-config-path": provenance.helm_config_path},
    )
    return render_plan(inputs, provenance, options or RenderOptions(), lambda job: evaluation_context())


def evaluation_context(*, watch: str | None = None, role: str | None = None) -> dict[str, Any]:
    """What the evaluation's containers run: fetch the config's model, then evaluate it; or, with `watch`,
    evaluate each checkpoint that appears in that folder (each one is the model: nothing to fetch)."""
    eval_config_path = f"{runtime_contract.CONFIG_DIR}/{runtime_contract.EVAL_CONFIG_FILE}"
    evaluate = ["cajajejo", "--trace", "evaluate"]
    if watch is not None:
        return {"commands": {"fetch_model": None, "evaluate": [*evaluate, "--watch", watch, "--role", str(role)]}}
    return {
        "commands": {
            "fetch_model": [
                "cajajejo",
                "models",
                "download",
                "--config",
                eval_config_path,
                "--scratch-dir",
                runtime_contract.SCRATCH_DIR,
            ],
            "evaluate": evaluate,
        },
    }
