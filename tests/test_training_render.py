"""Training jobs: config errors, the rendered Indexed Job + headless Service + ConfigMap, hostile strings."""

from __future__ import annotations

import os
import random
import shutil
import string
from pathlib import Path
from typing import Any

import git
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cajajejo.config.loader import load_training_config
from cajajejo.credentials import credential_in_value, is_credential_name
from cajajejo.errors import UserInputError
from cajajejo.render.plan import Plan, Provenance, RenderOptions
from cajajejo.render.training import COMPLETION_INDEX, render_training_plan
from cajajejo.runtime_contract import RESERVED_ENV, TRAINING_ENV
from tests.kubelet import expand
from tests.standins.kubernetes_api import KubernetesApiStandin
from tests.support import REPO, run_cli
from tests.yaml_readers import retyped_scalars

TRAINING = REPO / "jobs" / "training"
EXAMPLE, SMOKE, DEBUG = (TRAINING / f"{name}.job_config.yml" for name in ("example", "smoke", "debug"))
GOLDEN = Path(__file__).parent / "golden" / "training"
UPDATE_GOLDEN = os.environ.get("CAJAJEJO_UPDATE_GOLDEN") == "1"
PROVENANCE = Provenance("10abfb1bf8a0fd1ff65751521daaa0cd76fbc85d", "jobs/training/x.job_config.yml")


def render(config: Path, **options: Any) -> Plan:
    options.setdefault("rng", random.Random(0))
    return render_training_plan(load_training_config(config), PROVENANCE, RenderOptions(**options))


def objects(plan: Plan) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in plan.documents}


def trainer(plan: Plan) -> dict[str, Any]:
    (container,) = objects(plan)["Job"]["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def write_config(folder: Path, data: dict[str, Any], name: str = "t.yml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return path


@pytest.mark.parametrize("name", ["example", "smoke", "debug"])
def test_examples_match_their_golden_files(name: str) -> None:
    text = render(TRAINING / f"{name}.job_config.yml").to_yaml()
    golden = GOLDEN / f"{name}.yaml"
    if UPDATE_GOLDEN:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), "run with CAJAJEJO_UPDATE_GOLDEN=1 and review the diff"


def test_the_seed_example_is_an_indexed_job_with_a_headless_service_and_its_configmap() -> None:
    plan = render(EXAMPLE, job_name="llm", namespace="ml-train")
    found = objects(plan)
    assert [doc["kind"] for doc in plan.documents] == ["Job", "Service", "ConfigMap"]
    job, service, configmap = found["Job"], found["Service"], found["ConfigMap"]
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 4)
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"] == "llm"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == spec["template"]["metadata"]["labels"]
    assert service["spec"]["ports"] == [{"name": "rendezvous", "port": 29500, "targetPort": 29500}]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    container = trainer(plan)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = env_of(container)
    rank_ref = {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}
    assert env["NODE_RANK"] == env["RANK"] == rank_ref
    assert (env["NNODES"], env["NPROC_PER_NODE"], env["WORLD_SIZE"]) == ("4", "1", "4")
    assert env["MASTER_ADDR"] == "llm-0.llm.ml-train.svc"
    assert env["MASTER_PORT"] == "29500"
    assert (env["NCCL_DEBUG"], env["NCCL_SOCKET_IFNAME"], env["TORCH_NCCL_ASYNC_ERROR_HANDLING"]) == (
        "INFO",
        "eth0",
        "1",
    )
    # The Hugging Face token is a reference to the Secret, never a value.
    assert env["HUGGINGFACE_HUB_TOKEN"] == {"secretKeyRef": {"name": "hf-token", "key": "HUGGINGFACE_HUB_TOKEN"}}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/data"]["readOnly"] is True
    assert mounts["/out"]["readOnly"] is False
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v
    }
    assert {claims[mounts[path]["name"]] for path in ("/data", "/out", "/models")} == {
        "datasets-pvc",
        "outputs-pvc",
        "models-pvc",
    }
    assert configmap["data"] == {"train_config.yml": EXAMPLE.read_text()}
    command = container["command"]
    assert command[:9] == [
        "torchrun",
        "--nnodes=4",
        "--nproc-per-node=1",
        "--node-rank=$(NODE_RANK)",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=$(MASTER_ADDR):29500",
        "--rdzv-id=llm",
        "--rdzv-conf=join_timeout=900",
        "--max-restarts=3",
    ]
    assert command[9:12] == ["/app/src/train_framework.py", "--epochs", "2"]
    # The kubelet expands the rank and endpoint per pod: pod 2 of this job is node 2, pointed at pod 0.
    defined = {"NODE_RANK": "2", "MASTER_ADDR": env["MASTER_ADDR"]}
    assert [expand(arg, defined) for arg in command[3:6:2]] == [
        "--node-rank=2",
        "--rdzv-endpoint=llm-0.llm.ml-train.svc:29500",
    ]
    for document in plan.documents:  # every object carries the job's identity and stamps
        labels = document["metadata"]["labels"]
        assert labels["cajajejo/job-kind"] == "training"
        assert labels["cajajejo/job-name"] == "llm"
        assert document["metadata"]["annotations"]["cajajejo/config-version"] == PROVENANCE.config_version


def test_the_built_in_trainer_runs_as_a_module_with_the_configmap_config() -> None:
    container = trainer(render(SMOKE, job_name="smoke"))
    assert container["command"][-4:] == ["-m", "cajajejo.training", "--config", "/etc/configs/train_config.yml"]
    assert "HF_HUB_OFFLINE" not in env_of(container)  # the classifier loads nothing from the hub
    assert env_of(trainer(render(DEBUG)))["HF_HUB_OFFLINE"] == "1"  # a causal LM with local_files_only


def test_nproc_per_node_follows_the_gpus_and_scales_to_the_seeds_later_shape(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["training"]["nnodes"] = 64
    data["compute_config"]["accelerator"] = "nvidia-h100-80gb"
    data["compute_config"]["accelerator_count"] = 8
    plan = render(write_config(tmp_path, data), job_name="big")
    env = env_of(trainer(plan))
    assert (env["NNODES"], env["NPROC_PER_NODE"], env["WORLD_SIZE"]) == ("64", "8", "512")
    assert objects(plan)["Job"]["spec"]["completions"] == 64
    assert trainer(plan)["resources"]["limits"]["nvidia.com/gpu"] == "8"


def test_an_etcd_rendezvous_and_a_program_script(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["training"]["rendezvous"] = {"backend": "etcd", "endpoint": "etcd.infra:2379"}
    data["training"]["script"] = {"path": "/app/bin/train", "args": ["--x"], "python": False}
    command = trainer(render(write_config(tmp_path, data)))["command"]
    assert "--rdzv-backend=etcd-v2" in command
    assert "--rdzv-endpoint=etcd.infra:2379" in command
    assert command[-3:] == ["--no-python", "/app/bin/train", "--x"]


def test_a_name_too_long_for_the_pod_hostnames_is_refused() -> None:
    with pytest.raises(UserInputError, match="hostname"):
        render(EXAMPLE, job_name="x" * 62)  # pod 3's hostname would be x...x-3: 64 characters


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "trainng"}, "kind: unknown job kind 'trainng'; did you mean 'training'?"),
        ({"training": {"trainer": {"model": {"type": "classifier"}}, "script": {"path": "/a.py"}}}, "found both"),
        ({"training": {"nnodes": 2}}, "set exactly one of trainer"),
        ({"training": {"script": {"path": "/a.py"}, "rendezvous": {"backend": "etcd"}}}, "needs endpoint"),
        (
            {"training": {"script": {"path": "/a.py"}, "rendezvous": {"endpoint": "e:1"}}},
            "endpoint is for backend etcd",
        ),
        ({"training": {"script": {"path": "/a.py"}, "nnodes": 0}}, "training.nnodes: Input should be greater"),
        (
            {
                "training": {
                    "script": {"path": "/a.py"},
                    "volumes": [{"claim_name": "a", "mount_path": "/etc/configs/x"}],
                }
            },
            "overlaps cajajejo's own mount /etc/configs",
        ),
        (
            {"training": {"script": {"path": "/a.py"}, "volumes": [{"claim_name": "a", "mount_path": "data"}]}},
            "must be an absolute path",
        ),
        ({"kubernetes_config": {"env": {"WORLD_SIZE": "3"}}}, "sets WORLD_SIZE, which cajajejo sets for torchrun"),
        ({"training": {"script": {"path": "/a.py"}, "nproc_per_node": 1, "trainer": None}}, None),
        (
            {"training": {"script": {"path": "/a.py", "args": ["--token=hf_abcdefghijklmnopqrstuvwxyz0123"]}}},
            "credential",
        ),
        ({"training": {"script": {"path": "/a.py"}, "nccl": {"socket_ifname": "eth0; reboot"}}}, "interface names"),
    ],
)
def test_config_mistakes_get_one_line_each(tmp_path: Path, change: dict[str, Any], message: str | None) -> None:
    data = yaml.safe_load(DEBUG.read_text())
    for key, value in change.items():
        data[key] = value if not isinstance(value, dict) else {**data.get(key, {}), **value}
        if key == "training":
            data["training"] = {k: v for k, v in data["training"].items() if v is not None}
            if "script" in value and "trainer" not in value:
                data["training"].pop("trainer", None)
            if "trainer" not in value and "script" not in value:
                data["training"].pop("trainer", None)
    result = run_cli("jobs", "training", "validate-config", write_config(tmp_path, data))
    if message is None:
        assert result.exit_code == 0, result.stderr
        return
    assert result.exit_code == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {tmp_path / 't.yml'}:")
    assert message in lines[0]


def test_each_kind_refuses_the_other_kinds_config() -> None:
    evaluation = REPO / "jobs" / "evaluation" / "debug.job_config.yml"
    result = run_cli("jobs", "training", "parse-job", evaluation, "-")
    assert result.exit_code == 2
    assert "is an evaluation job config, not a training one; use `cajajejo jobs evaluation ...`" in result.stderr
    result = run_cli("jobs", "evaluation", "validate-config", DEBUG)
    assert result.exit_code == 2
    assert "is a training job config, not an evaluation one" in result.stderr


def test_parse_job_writes_the_manifests(tmp_path: Path) -> None:
    out = tmp_path / "spec.yaml"
    result = run_cli("jobs", "training", "parse-job", SMOKE, out, "--job-name", "smoke-1", "--namespace", "n1")
    assert result.exit_code == 0, result.stderr
    documents = list(yaml.safe_load_all(out.read_text()))
    assert [(d["kind"], d["metadata"]["name"], d["metadata"]["namespace"]) for d in documents] == [
        ("Job", "smoke-1", "n1"),
        ("Service", "smoke-1", "n1"),
        ("ConfigMap", "smoke-1", "n1"),
    ]
    assert "wrote" in result.stderr


# Strings a user could write that mean something to YAML, Jinja, a shell, torchrun or the kubelet.
_tricky = st.sampled_from(
    ["$(NODE_RANK)", "$$(X)", "$", "$(", "{{ x }}", "{% if %}", "\n- name: x\n", "'; rm -rf /", "--nnodes=9", '"', "#"]
)
free_text = (
    st.lists(st.one_of(st.text(max_size=12), _tricky), max_size=4)
    .map("".join)
    .filter(lambda s: credential_in_value(s) is None)
)
non_blank = free_text.filter(lambda s: s.strip() != "")
env_names = st.text(string.ascii_uppercase + "_", min_size=1, max_size=12).filter(
    lambda n: n not in RESERVED_ENV and n not in TRAINING_ENV and not is_credential_name(n)
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    script_path=non_blank,
    args=st.lists(free_text, max_size=4),
    env=st.dictionaries(env_names, free_text, max_size=3),
    run_name=free_text,
    description=free_text,
    tag=free_text,
    experiment=non_blank,
)
def test_free_text_in_a_training_config_round_trips_and_never_restructures(
    script_path: str,
    args: list[str],
    env: dict[str, str],
    run_name: str,
    description: str,
    tag: str,
    experiment: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["training"]["script"] = {"path": script_path, "args": args}
    data["kubernetes_config"]["env"] = env
    data["tracking_config"].update(run_name=run_name, description=description, experiment_name=experiment)
    data["tracking_config"]["tags"] = {"t": tag}
    config = write_config(tmp_path_factory.mktemp("prop"), data)
    plan = render_training_plan(load_training_config(config), PROVENANCE, RenderOptions(job_name="prop"))

    written = plan.to_yaml()
    assert retyped_scalars(written) == []  # kubectl's YAML 1.1 reader sees the same types
    documents = list(yaml.safe_load_all(written))
    assert [(d["kind"], d["metadata"]["name"]) for d in documents] == [
        ("Job", "prop"),
        ("Service", "prop"),
        ("ConfigMap", "prop"),
    ]
    assert documents[2]["data"] == {"train_config.yml": config.read_text()}
    as_read = yaml.safe_load(config.read_text())
    (container,) = documents[0]["spec"]["template"]["spec"]["containers"]
    rendered_env = {e["name"]: e.get("value") for e in container["env"]}
    defined = {name: value or "0" for name, value in rendered_env.items()}
    # What the processes receive is exactly what the user wrote: no $(VAR) of theirs is expanded.
    assert {name: expand(rendered_env[name], defined) for name in env} == as_read["kubernetes_config"]["env"]
    command = [expand(arg, defined) for arg in container["command"]]
    script = as_read["training"]["script"]
    assert command[9:] == [script["path"], *script["args"]]
    assert command[:9] == [
        "torchrun",
        "--nnodes=4",
        "--nproc-per-node=1",
        "--node-rank=0",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=prop-0.prop.ml-train.svc:29500",
        "--rdzv-id=prop",
        "--rdzv-conf=join_timeout=900",
        "--max-restarts=3",
    ]


def _commit_training_config(repo: git.Repo) -> str:
    target = Path(str(repo.working_tree_dir)) / "jobs" / "training" / "smoke.job_config.yml"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SMOKE, target)
    repo.index.add([str(target)])
    repo.index.commit("training config")
    return "jobs/training/smoke.job_config.yml"


def test_submit_makes_the_job_then_its_service_and_configmap_owned_by_it(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin
) -> None:
    config = _commit_training_config(in_repo)
    result = run_cli("jobs", "training", "submit-job", "--path-to-config", config, "--namespace", "default")
    assert result.exit_code == 0, result.stderr
    name = result.stdout.split()[1]
    assert name.startswith("train-")
    base = "/namespaces/default"
    writes = [f"{r.method} {r.path}" for r in kube_standin.requests if r.method != "GET"]
    assert writes == [
        f"POST /apis/batch/v1{base}/jobs",
        f"POST /api/v1{base}/configmaps",
        f"POST /api/v1{base}/services",
        f"POST /apis/batch/v1{base}/jobs",
        f"POST /api/v1{base}/configmaps",
        f"POST /api/v1{base}/services",
        f"PATCH /apis/batch/v1{base}/jobs/{name}",
    ]
    job = kube_standin.objects[("Job", "default", name)]
    owner = [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job["metadata"]["uid"]}]
    for kind in ("Service", "ConfigMap"):
        assert kube_standin.objects[(kind, "default", name)]["metadata"]["ownerReferences"] == owner
    assert job["metadata"]["annotations"]["cajajejo/config-path"] == config
    assert job["metadata"]["annotations"]["cajajejo/config-version"] == in_repo.head.commit.hexsha
    assert "cajajejo/helm-config-path" not in job["metadata"]["annotations"]

    for rank in (0, 1):
        labels = {"cajajejo/job-name": name, "batch.kubernetes.io/job-completion-index": str(rank)}
        pod = {"name": f"{name}-{rank}-abcde", "namespace": "default", "labels": labels}
        kube_standin.put({"apiVersion": "v1", "kind": "Pod", "metadata": pod, "status": {"phase": "Running"}})
    status = run_cli("jobs", "status", name)
    assert status.exit_code == 0, status.stderr
    assert f"training job {name} in default: running; 4 pods" in status.stdout
    assert f"pod {name}-1-abcde (rank 1): Running" in status.stdout
    listed = run_cli("jobs", "list")
    assert listed.stdout.splitlines()[1].split()[:2] == [name, "training"]

    again = run_cli("jobs", "training", "submit-job", "--path-to-config", config, "--namespace", "default")
    assert again.exit_code == 0  # a new generated name: another run of the same job
    deleted = run_cli("jobs", "delete", name, "--yes")
    assert deleted.exit_code == 0, deleted.stderr
    assert deleted.stdout.splitlines() == [
        f"deleted Job {name}",
        f"deleted ConfigMap {name}",
        f"deleted Service {name}",
    ]
    assert ("Service", "default", name) not in kube_standin.objects


def test_a_dirty_tree_is_refused_for_training_jobs_too(in_repo: git.Repo, kube_standin: KubernetesApiStandin) -> None:
    config = _commit_training_config(in_repo)
    (Path(str(in_repo.working_tree_dir)) / config).write_text(SMOKE.read_text() + "# edited\n")
    result = run_cli("jobs", "training", "submit-job", "--path-to-config", config)
    assert result.exit_code == 2
    assert "refusing to submit from a dirty git tree" in result.stderr
    assert [r for r in kube_standin.requests if r.method != "GET"] == []
