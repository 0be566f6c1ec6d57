"""Rendering: golden files for the examples, safety properties, template overrides, output validation."""

from __future__ import annotations

import os
import random
import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cajajejo.config.common import urlsplit_problem
from cajajejo.config.evaluation import looks_like_credential_option
from cajajejo.config.loader import load_evaluation_config
from cajajejo.config.run_specs import load_run_specs
from cajajejo.credentials import credential_in_url, credential_in_value, is_credential_name
from cajajejo.errors import RenderedManifestError, UserInputError
from cajajejo.render.evaluation import render_evaluation_plan
from cajajejo.render.plan import Plan, Provenance, RenderOptions
from cajajejo.runtime_contract import RESERVED_ENV
from tests.kubelet import expand
from tests.support import DEBUG_EXAMPLE, DEBUG_RUN_SPECS, GCS_EXAMPLE, MLFLOW_EXAMPLE, RUN_SPECS
from tests.yaml_readers import retyped_scalars

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("CAJAJEJO_UPDATE_GOLDEN") == "1"
PROVENANCE = Provenance(
    "10abfb1bf8a0fd1ff65751521daaa0cd76fbc85d", "jobs/evaluation/x.job_config.yml", "jobs/evaluation/app/x.conf"
)


def render(config: Path, run_specs: Path, **options: Any) -> Plan:
    options.setdefault("rng", random.Random(0))
    return render_evaluation_plan(
        load_evaluation_config(config), load_run_specs(run_specs), PROVENANCE, RenderOptions(**options)
    )


def by_kind(plan: Plan) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in plan.documents}


@pytest.mark.parametrize(
    ("config", "run_specs", "golden"),
    [
        (MLFLOW_EXAMPLE, RUN_SPECS, "example.mlflow.yaml"),
        (GCS_EXAMPLE, RUN_SPECS, "example.gcs.yaml"),
        (DEBUG_EXAMPLE, DEBUG_RUN_SPECS, "debug.yaml"),
    ],
)
def test_examples_match_their_golden_files(config: Path, run_specs: Path, golden: str) -> None:
    text = render(config, run_specs).to_yaml()
    if UPDATE_GOLDEN:
        (GOLDEN / golden).write_text(text)
    assert text == (GOLDEN / golden).read_text(), "run with CAJAJEJO_UPDATE_GOLDEN=1 and review the diff"


def test_the_mlflow_example_has_the_contract_of_the_original_manifest() -> None:
    plan = render(MLFLOW_EXAMPLE, RUN_SPECS)
    objects = by_kind(plan)
    assert list(objects) == ["Job", "ConfigMap", "StorageClass"]
    job = objects["Job"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (init,) = pod["initContainers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CONFIG_VERSION"] == PROVENANCE.config_version
    assert env["CONFIG_PATH_GIT_REPO"] == PROVENANCE.config_path
    assert env["HELM_CONFIG_PATH_GIT_REPO"] == PROVENANCE.helm_config_path
    assert env["JOB_NAME"] == plan.job_name == job["metadata"]["name"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert pod["restartPolicy"] == "Never"
    assert init["image"] == container["image"] == "registry.example.com/ml-platform/evaluation:10abfb1bf8a0"
    assert init["command"][:3] == ["cajajejo", "models", "download"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"configs": "/etc/configs", "scratch": "/scratch"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["configs"]["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    claim = volumes["scratch"]["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == "50Gi"
    assert claim["storageClassName"] == objects["StorageClass"]["metadata"]["name"] == "ssd"
    assert objects["ConfigMap"]["data"] == {
        "eval_config.yml": MLFLOW_EXAMPLE.read_text(),
        "run_specs.conf": RUN_SPECS.read_text(),
    }
    labels = job["metadata"]["labels"]
    assert labels["cajajejo/config-version"] == "10abfb1bf8a0"
    assert job["metadata"]["annotations"]["cajajejo/config-version"] == PROVENANCE.config_version


def test_a_cpu_only_job_asks_for_no_gpu() -> None:
    job = by_kind(render(DEBUG_EXAMPLE, DEBUG_RUN_SPECS))["Job"]
    pod = job["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
    assert "nodeSelector" not in pod


def test_secrets_are_referenced_never_inlined() -> None:
    job = by_kind(render(MLFLOW_EXAMPLE, RUN_SPECS))["Job"]
    (token,) = [
        e for e in job["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "MLFLOW_TRACKING_TOKEN"
    ]
    assert token == {
        "name": "MLFLOW_TRACKING_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "mlflow-auth", "key": "token"}},
    }


def test_each_job_gets_its_own_configmap() -> None:
    names = {render(DEBUG_EXAMPLE, DEBUG_RUN_SPECS, rng=random.Random(seed)).job_name for seed in range(20)}
    assert len(names) == 20
    plan = render(DEBUG_EXAMPLE, DEBUG_RUN_SPECS, rng=None)
    assert by_kind(plan)["ConfigMap"]["metadata"]["name"] == plan.job_name


def test_generated_names_are_readable_valid_labels() -> None:
    for seed in range(200):
        plan = render(MLFLOW_EXAMPLE, RUN_SPECS, rng=random.Random(seed))
        prefix, owner, *words = plan.job_name.split("-")
        assert (prefix, owner) == ("eval", "pythia")
        assert len(words) >= 2
        assert len(plan.job_name) <= 63


def test_explicit_job_name_and_namespace() -> None:
    plan = render(DEBUG_EXAMPLE, DEBUG_RUN_SPECS, job_name="eval-mine", namespace="team-a")
    assert plan.job_name == "eval-mine"
    assert {doc["metadata"]["namespace"] for doc in plan.documents} == {"team-a"}
    with pytest.raises(UserInputError, match="--job-name: 'Eval_Mine' must be lower-case"):
        render(DEBUG_EXAMPLE, DEBUG_RUN_SPECS, job_name="Eval_Mine")
    with pytest.raises(UserInputError, match="--namespace"):
        render(DEBUG_EXAMPLE, DEBUG_RUN_SPECS, namespace="a" * 64)


def test_kubernetes_versions() -> None:
    assert render(DEBUG_EXAMPLE, DEBUG_RUN_SPECS, kubernetes_version="v1.30.4").documents
    with pytest.raises(UserInputError, match=r"is not covered; supported: 1\.25 to"):
        render(DEBUG_EXAMPLE, DEBUG_RUN_SPECS, kubernetes_version="1.2")
    with pytest.raises(UserInputError, match="is not a version like"):
        render(DEBUG_EXAMPLE, DEBUG_RUN_SPECS, kubernetes_version="latest")


def test_bad_provenance_is_a_user_error() -> None:
    with pytest.raises(UserInputError, match="--config-version"):
        Provenance(config_version="not a sha\n")


# --- Templates -----------------------------------------------------------------------------------------


def _override(tmp_path: Path, name: str, text: str) -> Path:
    target = tmp_path / "evaluation" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return tmp_path


def test_a_user_template_overrides_one_file(tmp_path: Path) -> None:
    builtin = (Path(__file__).parents[1] / "src/cajajejo/templates/evaluation/job.yaml.j2").read_text()
    custom = builtin.replace("backoffLimit: {{ k8s.backoff_limit | yaml }}", "backoffLimit: 0")
    plan = render(DEBUG_EXAMPLE, DEBUG_RUN_SPECS, template_dir=_override(tmp_path, "job.yaml.j2", custom))
    assert by_kind(plan)["Job"]["spec"]["backoffLimit"] == 0
    assert by_kind(plan)["ConfigMap"]["data"]["eval_config.yml"] == DEBUG_EXAMPLE.read_text()


def test_a_template_value_without_the_filter_is_refused(tmp_path: Path) -> None:
    template_dir = _override(
        tmp_path,
        "configmap.yaml.j2",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ job.configmap_name }}\n",
    )
    with pytest.raises(RenderedManifestError, match="without the `yaml` filter"):
        render(DEBUG_EXAMPLE, DEBUG_RUN_SPECS, template_dir=template_dir)


@pytest.mark.parametrize(
    ("find", "replace", "expected"),
    [
        ("restartPolicy: Never", "restartPolicy: Always", "restartPolicy: a Job's pods need Never or OnFailure"),
        (
            "image: {{ job.image | yaml }}\n        command: {{ commands.evaluate",
            'image: ""\n        command: {{ commands.evaluate',
            "image: is empty",
        ),
        ("backoffLimit:", "backofLimit:", "Additional properties are not allowed ('backofLimit' was unexpected)"),
        (
            "limits:\n            memory:",
            'limits:\n            memory: "1Gi"\n            cpu:',
            "'16Gi' exceeds the limit '1Gi'",
        ),
        ("storage: {{ scratch.size | yaml }}", 'storage: "lots"', "'lots' is not a quantity"),
        ("nvidia.com/gpu: {{", 'nvidia.com/gpu: "0.5"\n            x: {{', "must be a whole number"),
        ("name: {{ job.configmap_name | yaml }}", 'name: "other"', "ConfigMap 'other' is not in the plan"),
        ("- name: scratch\n          mountPath", "- name: scratchy\n          mountPath", "'scratchy' is not a volume"),
    ],
)
def test_invalid_rendered_manifests_are_caught(tmp_path: Path, find: str, replace: str, expected: str) -> None:
    templates = Path(__file__).parents[1] / "src/cajajejo/templates"
    # The evaluation Job's template, or one of the pieces it includes, holds the text to break.
    name = next(
        path
        for path in ("evaluation/job.yaml.j2", "evaluation/mounts.yaml.j2", "common/scratch_volume.yaml.j2")
        if find in (templates / path).read_text()
    )
    target = tmp_path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text((templates / name).read_text().replace(find, replace, 1))
    with pytest.raises(RenderedManifestError) as caught:
        render(MLFLOW_EXAMPLE, RUN_SPECS, template_dir=tmp_path)
    assert expected in str(caught.value)
    assert "Job eval-" in str(caught.value)


def test_missing_template_dir_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="is not a folder of templates"):
        render(DEBUG_EXAMPLE, DEBUG_RUN_SPECS, template_dir=tmp_path / "nope")


# --- Properties: no user string can change the structure -------------------------------------------------

# Text the config accepts in free-text fields: anything but what looks like a credential (refused by design).
free_text = st.text(max_size=40).filter(lambda s: credential_in_value(s) is None)
non_blank = free_text.filter(lambda s: s.strip() != "")
env_names = st.text(string.ascii_uppercase + "_", min_size=1, max_size=12).filter(
    lambda n: n not in RESERVED_ENV and not is_credential_name(n)
)
# A comment line in the config file: any printable text that YAML does not treat as a line break.
comment_text = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\ufeff\ufffe\uffff\x85"),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    description=free_text,
    run_name=free_text,
    experiment=non_blank,
    tag_value=free_text,
    tag_list=st.lists(free_text, max_size=3),
    helm_arg=free_text.filter(
        lambda a: (
            a.split("=", 1)[0] not in {"--suite", "--conf-paths", "--output-path", "-o", "--local-path"}
            and not looks_like_credential_option(a.split("=", 1)[0])
        )
    ),
    tracking_uri=non_blank.filter(lambda u: credential_in_url(u) is None and "#" not in u and not urlsplit_problem(u)),
    env=st.dictionaries(env_names, free_text, max_size=3),
    comment=comment_text,
    provenance_path=free_text,
)
def test_free_text_round_trips_and_never_restructures(
    description: str,
    run_name: str,
    experiment: str,
    tag_value: str,
    tag_list: list[str],
    helm_arg: str,
    tracking_uri: str,
    env: dict[str, str],
    comment: str,
    provenance_path: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data = yaml.safe_load(MLFLOW_EXAMPLE.read_text())
    data["tracking_config"].update(
        description=description, run_name=run_name, experiment_name=experiment, tags={"t": tag_value, "l": tag_list}
    )
    data["helm"]["args"] = [helm_arg, "--max-eval-instances", "3"]
    data["mlflow_config"]["tracking_uri"] = tracking_uri
    data["kubernetes_config"]["env"] = env
    config_text = f"# {comment}\n" + yaml.safe_dump(data, allow_unicode=True)
    run_specs_text = f"# {comment}\n" + RUN_SPECS.read_text()
    folder = tmp_path_factory.mktemp("prop")
    (folder / "c.yml").write_text(config_text)
    (folder / "r.conf").write_text(run_specs_text)
    loaded = load_evaluation_config(folder / "c.yml")
    plan = render_evaluation_plan(
        loaded,
        load_run_specs(folder / "r.conf"),
        Provenance("abc123", provenance_path, provenance_path),
        RenderOptions(job_name="eval-prop"),
    )

    written = plan.to_yaml()
    assert retyped_scalars(written) == []  # kubectl's YAML 1.1 reader sees the same types
    documents = list(yaml.safe_load_all(written))
    assert [(d["kind"], d["metadata"]["name"]) for d in documents] == [
        ("Job", "eval-prop"),
        ("ConfigMap", "eval-prop"),
        ("StorageClass", "ssd"),
    ]
    configmap = documents[1]
    assert configmap["data"] == {"eval_config.yml": config_text, "run_specs.conf": run_specs_text}
    # PyYAML's dumper is lossy for a few characters (e.g. U+0085), so the expected values are what a YAML
    # reader sees in the file we wrote, not the generated strings themselves.
    as_read = yaml.safe_load(config_text)
    assert loaded.config.tracking_config.experiment_name == as_read["tracking_config"]["experiment_name"]
    container = documents[0]["spec"]["template"]["spec"]["containers"][0]
    rendered_env = {e["name"]: e.get("value") for e in container["env"]}
    defined = {name: value or "" for name, value in rendered_env.items()}
    # The kubelet would expand $(VAR) in a value; cajajejo escapes the user's values so it never does.
    assert {k: expand(rendered_env[k], defined) for k in env} == as_read["kubernetes_config"]["env"]
    assert rendered_env["MLFLOW_TRACKING_URI"] == as_read["mlflow_config"]["tracking_uri"]
    assert rendered_env["CONFIG_PATH_GIT_REPO"] == provenance_path
    assert documents[0]["metadata"]["annotations"]["cajajejo/config-path"] == provenance_path
    assert len(container["env"]) == 8 + len(env)
