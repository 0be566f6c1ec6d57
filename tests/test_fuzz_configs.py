"""Bounded fuzzing of job configs: whatever a user writes, cajajejo answers with exit 0 or 2, never a bug.

Two properties:
- a config that passes validation renders manifests within every API server limit: anything too big
  or out of range is refused by validation (exit 2), never found at render time (a "bug", exit 1);
- mutations of the example configs (deleted, retyped, oversized, hostile or unknown fields; broken
  YAML) give exit 0 or 2, one prefixed line of at most 300 characters per problem, no output file
  (nor temporary file) unless the command succeeded, and bounded memory.
"""

from __future__ import annotations

import copy
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cajajejo.config.loader import evaluation_inputs, load_evaluation_config
from cajajejo.config.run_specs import load_run_specs
from cajajejo.errors import UserInputError
from cajajejo.render.evaluation import render_evaluation_plan
from cajajejo.render.plan import Provenance, RenderOptions
from tests.support import DEBUG_EXAMPLE, DEBUG_RUN_SPECS, GCS_EXAMPLE, MLFLOW_EXAMPLE, RUN_SPECS, run_cli

EXAMPLES = [(MLFLOW_EXAMPLE, RUN_SPECS), (GCS_EXAMPLE, RUN_SPECS), (DEBUG_EXAMPLE, DEBUG_RUN_SPECS)]
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))

# Values at and just past the limits the API server enforces.
BOUNDARY_INTS = [0, 1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, -1]
SIZES = [0, 63, 64, 253, 254, 130_000, 600_000, 1_048_000]


def _sized(char: str, size: int) -> str:
    return char * size


limit_changes = st.fixed_dictionaries(
    {},
    optional={
        "tracking_config.description": st.sampled_from(SIZES).map(lambda n: _sized("d", n)),
        "kubernetes_config.env": st.dictionaries(
            st.sampled_from(["A", "B", "C"]), st.sampled_from(SIZES).map(lambda n: _sized("e", n)), max_size=3
        ),
        "kubernetes_config.ttl_seconds_after_finished": st.sampled_from(BOUNDARY_INTS),
        "kubernetes_config.active_deadline_seconds": st.sampled_from(BOUNDARY_INTS),
        "kubernetes_config.backoff_limit": st.sampled_from(BOUNDARY_INTS),
        "kubernetes_config.job_name_prefix": st.sampled_from(SIZES[:4]).map(lambda n: _sized("p", n)),
        "kubernetes_config.namespace": st.sampled_from(SIZES[:4]).map(lambda n: _sized("n", n)),
        "kubernetes_config.service_account": st.sampled_from(SIZES[:6]).map(lambda n: _sized("s", n)),
        "kubernetes_config.node_selector": st.dictionaries(
            st.sampled_from(["a", "example.com/b", "x" * 70]), st.sampled_from(SIZES[:3]).map(lambda n: "v" * n)
        ),
        "kubernetes_config.tolerations": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "key": st.sampled_from(["k", "example.com/k"]),
                    "operator": st.sampled_from(["Exists", "Equal"]),
                    "value": st.sampled_from(["", "v"]),
                    "effect": st.sampled_from(["NoSchedule", "NoExecute"]),
                    "toleration_seconds": st.sampled_from(BOUNDARY_INTS),
                },
            ),
            max_size=2,
        ),
        "compute_config.accelerator": st.sampled_from(["nvidia-l4", "my gpu!", "x" * 64, "custom-gpu"]),
        "compute_config.allow_custom_accelerator": st.booleans(),
        "compute_config.accelerator_count": st.sampled_from([1, 8, 16, 17]),
        "compute_config.memory": st.sampled_from(["1Ei", "9Ei", "1e3", "0", "16Gi", "1e400"]),
        "compute_config.scratch.size": st.sampled_from(["1Ei", "5Gi", "1e18"]),
        "helm.suite": st.sampled_from(SIZES[:4]).map(lambda n: _sized("s", max(n, 1))),
    },
)


def _apply(data: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return data


@FUZZ
@given(example=st.sampled_from(EXAMPLES), changes=limit_changes)
def test_what_validation_accepts_renders_within_every_api_server_limit(
    example: tuple[Path, Path], changes: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    config_path, specs_path = example
    folder = tmp_path_factory.mktemp("limits")
    path = folder / "job.yml"
    path.write_text(yaml.safe_dump(_apply(yaml.safe_load(config_path.read_text()), changes), sort_keys=False))
    try:
        loaded = load_evaluation_config(path)
        run_specs = load_run_specs(specs_path)
        evaluation_inputs(loaded, run_specs)
    except UserInputError:
        return  # refused at validation: what the property wants for anything out of bounds
    # Accepted: rendering must not find a problem (RenderedManifestError would be raised here).
    plan = render_evaluation_plan(loaded, run_specs, Provenance("a" * 40, "j.yml", "r.conf"), RenderOptions())
    assert [d["kind"] for d in plan.documents][:2] == ["Job", "ConfigMap"]


# --- Mutation fuzzing through the command line ---------------------------------------------------------

hostile_text = st.sampled_from(
    [
        "",
        "y",
        "1e3",
        "\x00",
        "a\nerror: forged line",
        "\t",
        "&anchor",
        "*alias",
        "{{ x }}",
        "x" * 200_000,
        "ü" * 50,
        "[" * 50,
        "postgres://u:pw@h/db",
        "Bearer abc.def.123456789",
    ]
)
scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30) | hostile_text
mutation = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 200)),
    st.tuples(st.just("set"), st.integers(0, 200), scalar),
    st.tuples(st.just("set"), st.integers(0, 200), st.lists(scalar, max_size=3)),
    st.tuples(st.just("set"), st.integers(0, 200), st.dictionaries(st.text(max_size=8), scalar, max_size=3)),
    st.tuples(st.just("add"), st.integers(0, 200), st.text(max_size=12) | hostile_text, scalar),
)


def _mappings(node: Any, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            _mappings(value, found)
    elif isinstance(node, list):
        for value in node:
            _mappings(value, found)
    return found


def _mutate(data: dict[str, Any], mutations: list[tuple[Any, ...]]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for kind, index, *rest in mutations:
        mappings = _mappings(data, [])
        target = mappings[index % len(mappings)]
        keys = list(target)
        if kind == "add":
            target[rest[0]] = rest[1]
        elif keys and kind == "delete":
            del target[keys[index % len(keys)]]
        elif keys:
            target[keys[index % len(keys)]] = rest[0]
    return data


text_edit = st.one_of(
    st.none(),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("insert"), st.floats(0, 1), hostile_text | st.sampled_from(["\t", ":", "- ", "&a ", "*a", '"'])),
)


def _edit_text(text: str, edit: tuple[Any, ...] | None) -> str:
    if edit is None:
        return text
    position = int(edit[1] * len(text))
    return text[:position] if edit[0] == "truncate" else text[:position] + edit[2] + text[position:]


def _check_output(result: Any, out_dir: Path, produced: Path | None) -> None:
    assert result.exit_code in (0, 2), (result.exit_code, result.stderr[-2000:])
    assert "internal error" not in result.stderr
    for line in result.stderr.splitlines():
        assert line.startswith(("error: ", "warning: ", "wrote ")), line[:300]
        assert len(line) <= 300, line[:300]
    left = sorted(p.name for p in out_dir.iterdir())
    if result.exit_code == 0 and produced is not None:
        assert left == [produced.name]
    else:
        assert left == [], left  # nothing half-written, no temporary file


@FUZZ
@given(
    example=st.sampled_from(EXAMPLES),
    mutations=st.lists(mutation, min_size=1, max_size=4),
    edit=text_edit,
)
def test_mutated_configs_exit_0_or_2_with_short_prefixed_lines_and_nothing_left_behind(
    example: tuple[Path, Path],
    mutations: list[tuple[Any, ...]],
    edit: tuple[Any, ...] | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    config_path, specs_path = example
    folder = tmp_path_factory.mktemp("fuzz")
    data = _mutate(yaml.safe_load(config_path.read_text()), mutations)
    text = _edit_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), edit)
    path = folder / "job.yml"
    path.write_text(text)
    out_dir = folder / "out"
    out_dir.mkdir()

    tracemalloc.start()
    try:
        validated = run_cli("jobs", "evaluation", "validate-config", path, "--helm-config", specs_path)
        _check_output(validated, out_dir, None)
        rendered = run_cli("jobs", "evaluation", "parse-job", path, specs_path, out_dir / "job.yaml")
        _check_output(rendered, out_dir, out_dir / "job.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (validated.exit_code == 0) == (rendered.exit_code == 0), (validated.stderr, rendered.stderr)
    assert peak < 200 * 1024 * 1024  # a config is at most 1 MiB; nothing may blow it up
