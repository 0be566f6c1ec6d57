"""Inputs from a hostile trial of the evaluation tool: each is refused in one line (exit 2) or written safely."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from cajajejo.config.loader import load_evaluation_config
from cajajejo.config.run_specs import load_run_specs
from cajajejo.render.evaluation import render_evaluation_plan
from cajajejo.render.plan import Provenance, RenderOptions
from tests.support import DEBUG_EXAMPLE, DEBUG_RUN_SPECS, GCS_EXAMPLE, run_cli
from tests.yaml_readers import retyped_scalars

VALIDATE = ("jobs", "evaluation", "validate-config")
PARSE_JOB = ("jobs", "evaluation", "parse-job")


def _config(tmp_path: Path, change: dict[str, Any], base: Path = GCS_EXAMPLE) -> Path:
    data = yaml.safe_load(base.read_text())
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path = tmp_path / "job.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def _refused(path: Path) -> list[str]:
    result = run_cli(*VALIDATE, path)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert all(line.startswith("error: ") and len(line) <= 300 for line in lines), lines
    return lines


# --- YAML 1.1 readers (kubectl) see the same types -------------------------------------------------------

LOOKALIKE_VALUES = ["y", "n", "Y", "N", "yes", "Off", "1e3", "1E3", "0o17", "0x1F", "12:30", "0.1.0", "~", "null"]


def test_strings_that_other_yaml_readers_would_retype_are_quoted(tmp_path: Path) -> None:
    env = {f"V{i}": value for i, value in enumerate(LOOKALIKE_VALUES)}
    path = _config(
        tmp_path,
        {
            "kubernetes_config.env": env,
            "kubernetes_config.service_account": "1e-400",
            "kubernetes_config.namespace": "1e3",
        },
    )
    loaded = load_evaluation_config(path)
    # Commit SHAs and input hashes whose 12-character label prefix reads as a float (~1 commit in 800).
    provenance = Provenance("123456789e12" + "0" * 28, "jobs/x.yml", "jobs/r.conf")
    plan = render_evaluation_plan(loaded, load_run_specs(DEBUG_RUN_SPECS), provenance, RenderOptions(job_name="e"))
    written = plan.to_yaml()
    assert retyped_scalars(written) == []
    job = yaml.safe_load_all(written).__next__()
    assert job["metadata"]["labels"]["cajajejo/config-version"] == "123456789e12"
    container_env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {k: container_env[k] for k in env} == env


# --- Anchors, aliases and nesting: bounded, one line, constant memory ------------------------------------


def _alias_bomb(levels: int) -> str:
    text = "version: v4\na: &a [x,x,x,x,x,x,x,x,x,x]\n"
    names = "abcdefghij"
    for previous, name in itertools.pairwise(names[:levels]):
        text += f"{name}: &{name} [{','.join(['*' + previous] * 10)}]\n"
    return text


def test_an_alias_bomb_is_refused_at_once_in_little_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yml"
    path.write_text(_alias_bomb(9))  # fully expanded: 10^9 items
    # Python's own allocations in the child, measured from before the command runs (RSS would also count
    # the pages a forked child shares with this test process).
    probe = (
        "import sys, tracemalloc; from cajajejo.cli import main\n"
        "tracemalloc.start()\n"
        "try:\n    main(sys.argv[1:])\n"
        "finally:\n    print(tracemalloc.get_traced_memory()[1] // 1024, file=sys.stderr)"
    )
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", probe, *VALIDATE, str(path)], capture_output=True, text=True, check=False, timeout=60
    )
    assert time.monotonic() - start < 10
    *errors, peak_kib = result.stderr.splitlines()
    assert result.returncode == 2
    assert errors == [
        f"error: {path}:2: this anchor (&name) is used again through an alias (*name); "
        "aliases are not supported, write the value out"
    ]
    assert int(peak_kib) < 64 * 1024  # cajajejo's imports and the parse; nothing was expanded


@pytest.mark.parametrize("depth", [40, 988, 100_000])
def test_deep_nesting_is_refused_in_one_line(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "deep.yml"
    path.write_text("version: v4\nimage: " + "[" * depth + "]" * depth + "\n")
    (line,) = _refused(path)
    assert "nested more than 32 levels deep" in line or "exceeded maximum nesting depth" in line


def test_a_job_spec_with_aliases_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yml"
    spec.write_text(_alias_bomb(6).replace("version: v4\n", "kind: Job\n"))
    result = run_cli("jobs", "evaluation", "submit-job", "--job-spec-path", spec, "--dry-run")
    assert result.exit_code == 2
    assert "aliases are not supported" in result.stderr


# --- What the API server checks is checked in the config -------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"kubernetes_config.tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]},
            "value must be empty when operator is Exists",
        ),
        ({"kubernetes_config.tolerations": [{}]}, "a toleration without key tolerates every taint only with"),
        (
            {"kubernetes_config.tolerations": [{"key": "k", "value": "v", "toleration_seconds": 5}]},
            "toleration_seconds needs effect: NoExecute",
        ),
        ({"kubernetes_config.ttl_seconds_after_finished": 2**31}, "less than or equal to 2147483647"),
        ({"kubernetes_config.active_deadline_seconds": 2**63}, "less than or equal to 9223372036854775807"),
        (
            {"compute_config.accelerator": "my gpu!", "compute_config.allow_custom_accelerator": True},
            "accelerator 'my gpu!' is not a node label value",
        ),
    ],
)
def test_what_the_api_server_refuses_is_refused_in_the_config(
    tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    (line,) = _refused(_config(tmp_path, change))
    assert expected in line


def test_tolerations_the_api_server_accepts_still_pass(tmp_path: Path) -> None:
    ok = [
        {"operator": "Exists"},
        {"key": "k", "operator": "Exists", "effect": "NoExecute", "toleration_seconds": 30},
        {"key": "k", "value": "v", "effect": "NoSchedule"},
    ]
    assert run_cli(*VALIDATE, _config(tmp_path, {"kubernetes_config.tolerations": ok})).exit_code == 0


@pytest.mark.parametrize("memory", ["1Ei", "2E", "1e3", "5E2", "1.5Pi", "+1Gi", ".5Ti"])
def test_every_kubernetes_quantity_form_parses(tmp_path: Path, memory: str) -> None:
    path = _config(tmp_path, {"compute_config.memory": memory})
    result = run_cli(*PARSE_JOB, path, DEBUG_RUN_SPECS, tmp_path / "out.yml")
    assert result.exit_code == 0, result.stderr
    spec = run_cli("jobs", "evaluation", "submit-job", "--job-spec-path", tmp_path / "out.yml", "--dry-run")
    assert "internal error" not in spec.stderr


def test_inputs_too_large_for_a_configmap_are_the_users_to_fix(tmp_path: Path) -> None:
    path = _config(tmp_path, {"tracking_config.description": "x" * 600_000}, base=DEBUG_EXAMPLE)
    big_specs = tmp_path / "r.conf"
    big_specs.write_text(DEBUG_RUN_SPECS.read_text() + "# " + "y" * 500_000 + "\n")
    result = run_cli(*PARSE_JOB, path, big_specs, tmp_path / "out.yml")
    assert result.exit_code == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert "the job's ConfigMap holds at most 1048576" in line
    assert not (tmp_path / "out.yml").exists()


# --- Error lines are ours, one each, short ---------------------------------------------------------------


def test_a_nul_byte_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "nul.yml"
    path.write_text("version: v4\nimage: a\x00b\n")
    assert _refused(path) == [f"error: {path}:2: not valid YAML: character U+0000 is not allowed in YAML; remove it"]


def test_a_key_cannot_forge_an_error_line(tmp_path: Path) -> None:
    path = _config(tmp_path, {"compute_config.x\nerror: fake.yml:1: version: spoofed line": 1})
    lines = _refused(path)
    assert len(lines) == 1
    assert "\\nerror: fake" in lines[0]


def test_huge_values_are_echoed_short(tmp_path: Path) -> None:
    path = _config(tmp_path, {"image": "A" * 100_000, "compute_config.memory": "9" * 100_000 + "X"})
    lines = _refused(path)
    assert len(lines) == 2
    assert any("(100000 characters)" in line for line in lines)


def test_an_unknown_key_in_a_list_item_lists_the_fields(tmp_path: Path) -> None:
    path = _config(tmp_path, {"kubernetes_config.tolerations": [{"kee": "k", "operator": "Exists"}]})
    (line,) = _refused(path)
    assert line.endswith("kubernetes_config.tolerations[0].kee: unknown field; did you mean 'key'?")
    path = _config(tmp_path, {"kubernetes_config.secret_env": {"HF": {"secret": "s", "key": "k", "zzz": 1}}})
    (line,) = _refused(path)
    assert line.endswith("kubernetes_config.secret_env.HF.zzz: unknown field; expected one of: secret, key")


# --- Credentials never reach a manifest, a ConfigMap or MLflow, and are never echoed -------------------

SECRET = "s3cr3t-Pa55w0rd-value"
HF_TOKEN_BODY = "Ab12" * 8


@pytest.mark.parametrize(
    "name",
    [
        "OPENAI_API_KEY",
        "WANDB_API_KEY",
        "AWS_ACCESS_KEY_ID",
        "DB_PASS",
        "MLFLOW_TRACKING_PWD",
        "HFTOKEN",
        "hfToken",
        "GITHUB_PAT",
        "HF_AUTH",
    ],
)
def test_credential_names_in_env_are_refused(tmp_path: Path, name: str) -> None:
    (line,) = _refused(_config(tmp_path, {"kubernetes_config.env": {name: SECRET}}))
    assert f"{name} looks like a credential; move it to secret_env" in line
    assert SECRET not in line


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kubernetes_config.env": {"DATABASE": f"postgres://u:{SECRET}@h/db"}}, "kubernetes_config.env.DATABASE"),
        ({"kubernetes_config.env": {"HEADER": f"Bearer {SECRET}"}}, "kubernetes_config.env.HEADER"),
        ({"mlflow_config.tracking_uri": f"https://mlflow.example.com/?token={SECRET}"}, "mlflow_config.tracking_uri"),
        ({"mlflow_config.tracking_uri": f"https://mlflow.example.com/#{SECRET}"}, "mlflow_config.tracking_uri"),
        ({"mlflow_config.tracking_uri": f"http://user:{SECRET}@[::1"}, "mlflow_config.tracking_uri"),
        ({"helm.args": ["--auth", SECRET]}, "helm.args[0]"),
        ({"helm.args": ["--header", f"Authorization: Bearer {SECRET}"]}, "helm.args[1]"),
        ({"tracking_config.tags": {"password": SECRET}}, "tracking_config.tags.password"),
        ({"tracking_config.tags": {"api_key": SECRET}}, "tracking_config.tags.api_key"),
        ({"tracking_config.tags": {"hf_token": SECRET}}, "tracking_config.tags.hf_token"),
        (
            {"tracking_config.tags": {"note": f"see https://x.example/?access_token={SECRET}"}},
            "tracking_config.tags.note",
        ),
        ({"tracking_config.description": f"Authorization: Basic {SECRET}"}, "tracking_config.description"),
    ],
)
def test_credential_values_are_refused_and_never_echoed(tmp_path: Path, change: dict[str, Any], field: str) -> None:
    lines = _refused(_config(tmp_path, change))
    assert any(f": {field}: " in line for line in lines), lines
    assert not any(SECRET in line for line in lines), lines
    assert any("secret_env" in line for line in lines), lines


def test_a_spec_too_large_for_client_side_apply_says_how_to_apply_it(tmp_path: Path) -> None:
    # kubectl's client-side apply copies the ConfigMap into a 256 KiB annotation: past that it fails.
    small = run_cli(*PARSE_JOB, DEBUG_EXAMPLE, DEBUG_RUN_SPECS, tmp_path / "small.yml")
    assert "warning" not in small.stderr
    path = _config(tmp_path, {"tracking_config.description": "x" * 300_000}, base=DEBUG_EXAMPLE)
    result = run_cli(*PARSE_JOB, path, DEBUG_RUN_SPECS, tmp_path / "big.yml")
    assert result.exit_code == 0, result.stderr
    (warning,) = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert "more than plain `kubectl apply -f` can record" in warning
    assert "kubectl apply --server-side -f" in warning


def test_the_readme_lists_the_known_accelerators() -> None:
    from cajajejo.config.common import KNOWN_GKE_ACCELERATORS
    from tests.support import REPO

    readme = (REPO / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in KNOWN_GKE_ACCELERATORS)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"image": f"https://user:{SECRET}@registry.example.com/x"}, "image"),
        ({"compute_config.memory": f"Bearer {SECRET}"}, "compute_config.memory"),
        ({"kubernetes_config.namespace": f"hf_{HF_TOKEN_BODY}"}, "kubernetes_config.namespace"),
    ],
)
def test_a_field_without_a_credential_rule_never_echoes_one(tmp_path: Path, change: dict[str, Any], field: str) -> None:
    (line,) = _refused(_config(tmp_path, change))
    assert f": {field}: (a value that looks like a credential, not shown)" in line
    assert SECRET not in line
    assert HF_TOKEN_BODY not in line


@pytest.mark.parametrize(
    "change",
    [
        {"model_config": {"gs_uri": "gs://bucket/model?token=" + "x" * 10}},
        {"model_config.mlflow_artifact.tokenizer_hf_repo": f"https://u:{SECRET}@hf.co/x"},
        {"tracking_config.tags": {"db": f"u:{SECRET}@db:5432/x"}},
        {"tracking_config.tags": {"jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl"}},
        {"kubernetes_config.env": {"OPENAI_KEY": "x"}},
        {"kubernetes_config.env": {"DB_PASSPHRASE": "x"}},
        {"kubernetes_config.env": {"STORAGE": f"DefaultEndpointsProtocol=https;AccountKey={SECRET};"}},
        {"helm.args": [f"--token:{SECRET}"]},
    ],
)
def test_credentials_in_any_field_are_refused_and_never_echoed(tmp_path: Path, change: dict[str, Any]) -> None:
    base = DEBUG_EXAMPLE if "model_config" not in change else GCS_EXAMPLE
    if "model_config.mlflow_artifact.tokenizer_hf_repo" in change:
        base = DEBUG_EXAMPLE
    lines = _refused(_config(tmp_path, change, base=base))
    assert not any(SECRET in line for line in lines), lines


def test_a_credential_in_a_comment_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "job.yml"
    path.write_text(DEBUG_EXAMPLE.read_text() + f"# HF_TOKEN: hf_{HF_TOKEN_BODY}\n")
    (line,) = _refused(path)
    assert f"{path}:{len(DEBUG_EXAMPLE.read_text().splitlines()) + 1}: looks like it holds a credential" in line
    assert HF_TOKEN_BODY not in line
    specs = tmp_path / "r.conf"
    specs.write_text(DEBUG_RUN_SPECS.read_text() + f"# Authorization: Bearer {SECRET}\n")
    result = run_cli(*PARSE_JOB, DEBUG_EXAMPLE, specs, tmp_path / "out.yml")
    assert result.exit_code == 2
    assert SECRET not in result.stderr


@pytest.mark.parametrize(
    "env",
    [
        {"TOKENIZERS_PARALLELISM": "false", "MAX_TOKENS": "512", "PAD_TOKEN": "<pad>", "TOKEN_LIMIT": "8"},
        {"PASS_THROUGH": "1", "AWS_S3_SIGNATURE_VERSION": "s3v4", "WANDB_PROJECT": "p", "HF_HOME": "/scratch/hf"},
        {"NCCL_DEBUG": "INFO", "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True", "KEYRING": "x"},
        {"GOOGLE_APPLICATION_CREDENTIALS": "/var/secrets/google/key.json", "SORT_KEY": "name"},
        {"REPO": "git+ssh://git@github.com/org/repo.git", "SEARCH": "https://example.com/search?key=value&code=py"},
    ],
)
def test_ordinary_ml_settings_are_not_mistaken_for_credentials(tmp_path: Path, env: dict[str, str]) -> None:
    tags = {"pass_at_1": 0.5, "token_count": 10, "private": True, "auth_method": "none"}
    path = _config(tmp_path, {"kubernetes_config.env": env, "tracking_config.tags": tags}, base=DEBUG_EXAMPLE)
    result = run_cli(*VALIDATE, path)
    assert result.exit_code == 0, result.stderr


def test_env_too_large_for_a_kubernetes_object_is_refused_in_the_config(tmp_path: Path) -> None:
    # Copied into both containers, 1 MB of env makes a 2 MB Job, which the API server cannot store.
    path = _config(tmp_path, {"kubernetes_config.env": {"A": "a" * 200_000, "B": "b" * 200_000}}, base=DEBUG_EXAMPLE)
    (line,) = _refused(path)
    assert "kubernetes_config: env holds 400002 bytes; at most 262144 fit" in line
