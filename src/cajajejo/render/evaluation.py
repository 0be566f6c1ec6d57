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
    config = loaded.config
    provenance = provenance or Provenance()
    inputs = JobInputs(
        KIND,
        config,
        evaluation_inputs(loaded, run_specs),
        input_paths={runtime_contract.ENV_HELM_CONFIG_PATH: provenance.helm_config_path},
        path_annotations={f"{LABEL_PREFIX}/helm-config-path": provenance.helm_config_path},
    )
    return render_plan(inputs, provenance, options or RenderOptions(), lambda job: _evaluation_context(config))


def _evaluation_context(config: EvaluationJobConfig) -> dict[str, Any]:
    eval_config_path = f"{runtime_contract.CONFIG_DIR}/{runtime_contract.EVAL_CONFIG_FILE}"
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
            "evaluate": ["cajajejo", "--trace", "evaluate"],
        },
    }
