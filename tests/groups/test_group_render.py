"""Rendering job groups: one Job per task, one headless Service, the volumes; names, variables and stamps."""

from __future__ import annotations

import copy
import os
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cajajejo import kube
from cajajejo.config.group_loader import load_group
from cajajejo.errors import UserInputError
from cajajejo.names import dns1035_label_problem
from cajajejo.render.group import GroupPlan, render_group_plan
from cajajejo.render.plan import RenderOptions
from cajajejo.render.training import COMPLETION_INDEX
from tests.groups.support import (
    DEBUG,
    RL,
    SHA,
    TRAIN_EVAL,
    command,
    container,
    env_of,
    header,
    objects,
    pod_spec,
    render,
    write_group,
)
from tests.kubelet import expand
from tests.support import REPO, run_cli
from tests.test_training_render import free_text
from tests.yaml_readers import retyped_scalars

GOLDEN = REPO / "tests" / "golden" / "groups"
UPDATE_GOLDEN = os.environ.get("CAJAJEJO_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize("path", [TRAIN_EVAL, DEBUG, RL], ids=lambda p: p.name)
def test_examples_match_their_golden_files(path: Path) -> None:
    text = render(path).to_yaml()
    golden = GOLDEN / path.name.replace(".group.yml", ".yaml")
    if UPDATE_GOLDEN:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), "run with CAJAJEJO_UPDATE_GOLDEN=1 and review the diff"


def test_train_eval_is_two_jobs_named_under_one_headless_service_sharing_a_volume() -> None:
    plan = render(TRAIN_EVAL)
    assert [(d["kind"], d["metadata"]["name"]) for d in plan.documents] == [
        ("Job", "train-eval-trainer"),
        ("ConfigMap", "train-eval-trainer"),
        ("Job", "train-eval-evaluator"),
        ("ConfigMap", "train-eval-evaluator"),
        ("Service", "train-eval"),
        ("PersistentVolumeClaim", "train-eval-ckpts"),
    ]
    assert plan.namespace == "ml-train"
    jobs, service = objects(plan, "Job"), objects(plan, "Service")["train-eval"]
    trainer, evaluator = jobs["train-eval-trainer"], jobs["train-eval-evaluator"]
    assert service["spec"] == {
        "clusterIP": "None",
        "publishNotReadyAddresses": True,
        "selector": {"app.kubernetes.io/managed-by": "cajajejo", "cajajejo/group": "train-eval"},
    }
    for job in (trainer, evaluator):
        assert pod_spec(job)["subdomain"] == "train-eval"
        pod_labels = job["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
    assert trainer["spec"]["completionMode"] == "Indexed"
    assert "completionMode" not in evaluator["spec"]
    assert pod_spec(evaluator)["hostname"] == "train-eval-evaluator-0"  # one pod, named as an Indexed Job's pod 0
    # The evaluator evaluates checkpoints as they appear: no model to fetch, its config and run specs as files.
    assert "initContainers" not in pod_spec(evaluator)
    assert container(evaluator)["command"] == [
        "cajajejo",
        "--trace",
        "evaluate",
        "--watch",
        "/checkpoints",
        "--role",
        "evaluator",
    ]
    configmaps = objects(plan, "ConfigMap")
    assert set(configmaps["train-eval-evaluator"]["data"]) == {"eval_config.yml", "run_specs.conf"}
    assert (
        configmaps["train-eval-evaluator"]["data"]["run_specs.conf"]
        == (REPO / "jobs/evaluation/app/run_specs.conf").read_text()
    )
    loaded_inline = yaml.safe_load(configmaps["train-eval-trainer"]["data"]["train_config.yml"])
    assert loaded_inline["training"]["checkpoints"]["directory"] == "/checkpoints"
    # Both mount the group's volume at /checkpoints; the trainer also the dataset claim made beforehand.
    for job, claims in (
        (trainer, {"/checkpoints": "train-eval-ckpts", "/data": "datasets-pvc"}),
        (evaluator, {"/checkpoints": "train-eval-ckpts"}),
    ):
        volumes = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod_spec(job)["volumes"]
            if "persistentVolumeClaim" in v
        }
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container(job)["volumeMounts"] if m["name"] in volumes}
        assert mounts == claims
    volume = objects(plan, "PersistentVolumeClaim")["train-eval-ckpts"]
    assert volume["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": "standard-rwx",
        "resources": {"requests": {"storage": "10Gi"}},
    }
    # torchrun's rendezvous is the trainer's own pod 0, named under the group's Service.
    assert env_of(trainer)["MASTER_ADDR"] == "train-eval-trainer-0.train-eval.ml-train.svc"


def test_every_object_carries_the_groups_labels_and_stamps() -> None:
    plan = render(TRAIN_EVAL)
    for document in plan.documents:
        metadata = document["metadata"]
        assert metadata["labels"]["cajajejo/group"] == "train-eval"
        assert metadata["labels"]["app.kubernetes.io/managed-by"] == "cajajejo"
        assert metadata["annotations"]["cajajejo/config-version"] == SHA
        assert metadata["annotations"]["cajajejo/group-path"] == "jobs/groups/train-eval.group.yml"
        if document["kind"] in ("Job", "ConfigMap"):  # a task's; the Service and volumes are the group's
            task = metadata["name"].removeprefix("train-eval-")
            assert metadata["labels"]["cajajejo/task"] == task
    hashes = {d["metadata"]["annotations"]["cajajejo/inputs-sha256"] for d in plan.documents}
    assert len(hashes) == 1  # one submission: the hash of every file the group was read from
    evaluator = objects(plan, "Job")["train-eval-evaluator"]
    annotations = evaluator["metadata"]["annotations"]
    assert annotations["cajajejo/config-path"] == "jobs/groups/train-eval.group.yml"  # its config is inline
    assert annotations["cajajejo/helm-config-path"] == "jobs/evaluation/app/run_specs.conf"
    assert evaluator["spec"]["template"]["metadata"]["labels"]["cajajejo/task"] == "evaluator"
    debug = objects(render(DEBUG), "Job")["train-eval-debug-evaluator"]
    env = env_of(debug)
    assert env["CONFIG_PATH_GIT_REPO"] == "jobs/evaluation/debug.job_config.yml"  # a file of its own
    assert env["HELM_CONFIG_PATH_GIT_REPO"] == "jobs/evaluation/app/debug.conf"
    assert env["JOB_NAME"] == "train-eval-debug-evaluator"


def _pod_dns_names(plan: GroupPlan) -> dict[str, str]:
    """Job name -> the DNS name its pod 0 really has: hostname (set, or an Indexed Job's) under its subdomain."""
    names = {}
    for name, job in objects(plan, "Job").items():
        spec = pod_spec(job)
        indexed = job["spec"].get("completionMode") == "Indexed"
        hostname = f"{name}-0" if indexed else spec.get("hostname")
        assert hostname is not None
        names[name] = f"{hostname}.{spec['subdomain']}.{plan.namespace}.svc"
        assert spec["subdomain"] in objects(plan, "Service")
    return names


def test_the_rl_group_is_five_indexed_jobs_that_find_each_other() -> None:
    plan = render(RL, namespace="rl")
    jobs = objects(plan, "Job")
    assert list(jobs) == [f"rlhf-training-{task}" for task in plan.tasks]
    assert [jobs[name]["spec"]["completions"] for name in jobs] == [1, 2, 1, 1, 2]
    dns = _pod_dns_names(plan)
    for job in jobs.values():
        env = env_of(job)
        for task in plan.tasks:
            suffix = task.upper().replace("-", "_")
            assert env[f"CAJAJEJO_GROUP_HOST_{suffix}"] == env[f"SKYPILOT_JOBGROUP_HOST_{suffix}"]
            assert env[f"CAJAJEJO_GROUP_HOST_{suffix}"] == dns[f"rlhf-training-{task}"]
        assert env["CAJAJEJO_GROUP_NAME"] == env["SKYPILOT_JOBGROUP_NAME"] == "rlhf-training"
        rank = {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}
        assert env["SKYPILOT_NODE_RANK"] == env["CAJAJEJO_NODE_RANK"] == rank
    rollout = jobs["rlhf-training-rollout-server"]
    assert env_of(rollout)["SKYPILOT_NUM_NODES"] == "2"
    assert pod_spec(rollout)["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
    assert container(rollout)["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    assert container(jobs["rlhf-training-data-server"])["resources"] == {"requests": {"cpu": "4"}}
    # `memory: 32+` is at least 32 GB: a request, no limit.
    assert container(jobs["rlhf-training-replay-buffer"])["resources"] == {"requests": {"cpu": "4", "memory": "32G"}}
    ppo = container(jobs["rlhf-training-ppo-trainer"])
    assert ppo["command"][:2] == ["/bin/bash", "-c"]
    assert "--data-server $${SKYPILOT_JOBGROUP_HOST_DATA_SERVER}:8000" in ppo["command"][2]  # the kubelet's $$
    assert objects(plan, "ConfigMap") == {}  # commands carry no config file


def test_a_multi_node_training_task_meets_at_its_own_pod_0(groups_dir: Path) -> None:
    documents = list(yaml.safe_load_all(DEBUG.read_text()))
    documents[1]["training"]["training"]["nnodes"] = 3
    plan = render_group_plan(load_group(write_group(groups_dir, *documents)), options=RenderOptions(namespace="ns"))
    trainer = objects(plan, "Job")["train-eval-debug-trainer"]
    assert trainer["spec"]["completions"] == 3
    env = env_of(trainer)
    assert (
        env["MASTER_ADDR"] == env["CAJAJEJO_GROUP_HOST_TRAINER"] == "train-eval-debug-trainer-0.train-eval-debug.ns.svc"
    )
    assert "--rdzv-endpoint=$(MASTER_ADDR):29500" in container(trainer)["command"]
    assert "--rdzv-id=train-eval-debug-trainer" in container(trainer)["command"]


def test_the_group_name_can_be_chosen_and_is_checked(tmp_path: Path) -> None:
    plan = render(RL, group_name="rl-2")
    assert plan.job_names[0] == "rl-2-data-server"
    assert objects(plan, "Service").keys() == {"rl-2"}
    with pytest.raises(UserInputError, match="--group-name: '2rl'"):
        render(RL, group_name="2rl")
    with pytest.raises(UserInputError, match=r"--group-name: 'r+' .*hostname"):
        render(RL, group_name="r" * 50)


def test_parse_writes_the_manifests_and_stamps_paths_relative_to_the_group(tmp_path: Path) -> None:
    out = tmp_path / "spec.yaml"
    result = run_cli(
        "groups", "parse", DEBUG, out, "--config-version", "abc1234", "--group-path-in-repo", "ml/groups/d.yml"
    )
    assert result.exit_code == 0, result.stderr
    assert result.stderr.strip() == f"wrote {out}: group train-eval-debug in namespace default"
    documents = list(yaml.safe_load_all(out.read_text()))
    evaluator = next(d for d in documents if d["metadata"]["name"] == "train-eval-debug-evaluator")
    annotations = evaluator["metadata"]["annotations"]
    assert annotations["cajajejo/config-path"] == "ml/evaluation/debug.job_config.yml"
    assert annotations["cajajejo/group-path"] == "ml/groups/d.yml"
    assert annotations["cajajejo/config-version"] == "abc1234"
    printed = run_cli("groups", "parse", DEBUG, "-", "--namespace", "n1")
    assert printed.stdout.startswith("# Rendered by cajajejo ")
    assert {d["metadata"]["namespace"] for d in yaml.safe_load_all(printed.stdout) if d["kind"] != "StorageClass"} == {
        "n1"
    }


def test_a_scratch_class_asked_for_by_two_tasks_is_made_once(tmp_path: Path) -> None:
    (tmp_path / "debug.conf").write_text((REPO / "jobs/evaluation/app/debug.conf").read_text())
    evaluation = yaml.safe_load((REPO / "jobs/evaluation/example.mlflow.job_config.yml").read_text())
    del evaluation["kubernetes_config"]["job_name_prefix"]
    tasks = [
        {"name": name, "evaluation": copy.deepcopy(evaluation), "helm_config": "debug.conf"}
        for name in ("first", "second")
    ]
    plan = render_group_plan(load_group(write_group(tmp_path, header(), *tasks)))
    assert [d["kind"] for d in plan.documents].count("StorageClass") == 1
    first = objects(plan, "Job")["g-first"]
    assert [c["name"] for c in pod_spec(first)["initContainers"]] == ["fetch-model"]  # no watch: fetches its model
    tasks[1]["evaluation"]["compute_config"]["scratch"]["provision_storage_class"]["disk_type"] = "pd-ssd"
    with pytest.raises(UserInputError, match="StorageClass ssd with disk types pd-balanced and pd-ssd"):
        render_group_plan(load_group(write_group(tmp_path, header(), *tasks)))


# --- properties ------------------------------------------------------------------------------------------

_NAME_ALPHABET = string.ascii_letters + string.digits + "-_. /"
# Names of every shape, and many that are close to valid (lower case, digits, '-'), so that both the
# refusals and the renders of accepted names are explored; lengths around the limits (63 for a label).
names = st.one_of(
    st.text(_NAME_ALPHABET, min_size=1, max_size=70),
    st.from_regex(r"[a-z0-9][a-z0-9-]{0,62}", fullmatch=True),
    st.from_regex(r"[a-z][a-z0-9]{0,8}(-[a-z0-9]{1,8}){0,3}", fullmatch=True),
)


def _all_names_are_valid(plan: GroupPlan) -> None:
    for document in plan.documents:
        name = document["metadata"]["name"]
        rule = dns1035_label_problem if document["kind"] == "Service" else kube.dns1123_subdomain_problem
        assert rule(name) is None, name
        if document["kind"] == "Job":
            assert kube.dns1123_label_problem(name) is None
            spec = pod_spec(document)
            nodes = document["spec"].get("completions", 1)
            assert kube.dns1123_label_problem(spec.get("hostname") or f"{name}-{nodes - 1}") is None
            for variable in container(document)["env"]:
                assert kube.env_var_name_problem(variable["name"]) is None
            for volume in spec["volumes"]:
                assert kube.dns1123_label_problem(volume["name"]) is None


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(group=names, tasks=st.lists(names, min_size=1, max_size=3), volume=names, nodes=st.integers(1, 12))
def test_any_accepted_names_give_valid_objects_and_variables_that_resolve(
    group: str, tasks: list[str], volume: str, nodes: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("names")
    documents = [header(group, volumes=[{"name": volume, "size": "1Gi"}])]
    documents += [command(task, num_nodes=nodes, volumes={"/data": volume}) for task in tasks]
    path = write_group(folder, *documents)
    result = run_cli("groups", "validate", path)
    if result.exit_code != 0:  # refused the usual way: exit 2, one line per problem
        assert result.exit_code == 2
        assert all(line.startswith(f"error: {path}:") for line in result.stderr.strip().splitlines())
        return
    plan = render_group_plan(load_group(path))
    _all_names_are_valid(plan)
    dns = _pod_dns_names(plan)
    for job in objects(plan, "Job").values():
        env = env_of(job)
        for task in tasks:
            assert env["CAJAJEJO_GROUP_HOST_" + task.upper().replace("-", "_")] == dns[f"{group}-{task}"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(run=free_text.filter(lambda s: s.strip() != ""), values=st.lists(free_text, min_size=1, max_size=3))
def test_free_text_reaches_the_container_exactly_as_written(
    run: str, values: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("text")
    envs = {f"VALUE_{i}": value for i, value in enumerate(values)}
    path = write_group(folder, header(), command("task", run=run, envs=envs))
    try:
        loaded = load_group(path)
    except UserInputError:
        assume(False)  # e.g. text YAML reads back otherwise; the config tests cover refusals
        return
    written = render_group_plan(loaded).to_yaml()
    assert retyped_scalars(written) == []  # kubectl's YAML 1.1 reader sees the same types
    (job,) = [d for d in yaml.safe_load_all(written) if d["kind"] == "Job"]
    rendered = {e["name"]: e.get("value") for e in container(job)["env"]}
    defined = {name: value or "0" for name, value in rendered.items()}
    as_read = list(yaml.safe_load_all(path.read_text()))[1]
    # What the shell and the process receive is what the user wrote: the kubelet expands no $(VAR) of theirs.
    assert [expand(arg, defined) for arg in container(job)["command"]] == ["/bin/bash", "-c", as_read["run"]]
    assert {name: expand(rendered[name], defined) for name in envs} == as_read["envs"]


def test_hostile_task_names_never_reach_a_manifest(tmp_path: Path) -> None:
    for hostile in ('a"\nkind: Secret', "a: b", "{{ x }}", "ÄÖ"):
        path = write_group(tmp_path, header(), command(hostile))
        with pytest.raises(UserInputError):
            load_group(path)
    # And a name YAML would read as another type is text to the group, quoted where it is written.
    path = write_group(tmp_path, header("on"), command("y", envs={"N": "1e3"}))
    written = render_group_plan(load_group(path)).to_yaml()
    assert retyped_scalars(written) == []
    assert any(d["metadata"]["name"] == "on-y" for d in yaml.safe_load_all(written))
