"""Group files: every rule is one line `file:line: field: message`, exit 2, and nothing is written."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cajajejo import names
from cajajejo.config.group_loader import load_group
from tests.groups.support import DEBUG, RL, TRAIN_EVAL, command, header, write_group
from tests.support import run_cli

Documents = list[dict[str, Any]]


def debug_documents() -> Documents:
    return list(yaml.safe_load_all(DEBUG.read_text()))


def _line(path: Path, needle: str, nth: int = 1) -> int:
    """The line of `path` where `needle` appears for the `nth` time."""
    found = [number for number, line in enumerate(path.read_text().splitlines(), start=1) if needle in line]
    assert len(found) >= nth, f"{needle!r} not {nth} times in {path}"
    return found[nth - 1]


def _refused(path: Path, count: int = 1) -> str:
    """The first error line of `cajajejo groups validate PATH`, which must exit 2 with `count` lines."""
    result = run_cli("groups", "validate", path)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == count, lines
    assert all(line.startswith("error: ") for line in lines)
    return lines[0]


def test_the_examples_are_valid() -> None:
    for path in (TRAIN_EVAL, DEBUG, RL):
        result = run_cli("groups", "validate", path)
        assert result.exit_code == 0, result.stderr
        assert result.stderr == ""  # no warning either: the images are pinned, the hostnames are variables
    result = run_cli("groups", "validate", RL)
    assert result.stdout.strip() == (
        f"{RL}: valid job group rlhf-training (5 tasks: data-server (command, 1 pod), rollout-server (command, "
        "2 pods), reward-server (command, 1 pod), replay-buffer (command, 1 pod), ppo-trainer (command, 2 pods))"
    )


# Seed 002's two examples as the seed writes them, with an image added to each task and nothing else.
SEEDS = Path(__file__).parent / "seeds"


def test_the_seeds_examples_are_accepted_with_an_image_added(tmp_path: Path) -> None:
    # The seed's volume is made beforehand (`sky volume apply`): here, a claim the group names as existing.
    text = (SEEDS / "train-eval.group.yml").read_text()
    train_eval = text.replace("SAME_INFRA\n", "SAME_INFRA\nexisting_volumes: [my-checkpoint-volume]\n", 1)
    path = tmp_path / "train-eval.yml"
    path.write_text(train_eval)
    result = run_cli("groups", "validate", path)
    assert result.exit_code == 0, result.stderr
    path = tmp_path / "rl.yml"
    path.write_text((SEEDS / "rl-post-training.group.yml").read_text())
    result = run_cli("groups", "validate", path)
    assert result.exit_code == 0, result.stderr
    # SkyPilot's hostnames do not resolve under cajajejo's names: a warning says which variable to use.
    warning = result.stderr.strip().splitlines()
    assert warning == [
        f"warning: {path}:{_line(path, 'python ppo_trainer.py') - 1}: run: 'data-server-0.${{SKYPILOT_JOBGROUP_NAME}}' "
        "does not resolve here (cajajejo's pods are <group>-<task>-<i>.<group>); use "
        "${SKYPILOT_JOBGROUP_HOST_DATA_SERVER} instead"
    ]


def test_the_seeds_volume_must_be_known(tmp_path: Path) -> None:
    path = tmp_path / "train-eval.yml"
    path.write_text((SEEDS / "train-eval.group.yml").read_text())
    line = _refused(path, count=2)  # one line for each task that mounts it
    assert line.startswith(f"error: {path}:{_line(path, '/checkpoints: my')}: volumes./checkpoints: volume ")
    assert "volume 'my-checkpoint-volume' is unknown; add it to the header's volumes or volume_files" in line


Change = Callable[[Documents], None]


def _set(index: int, **fields: Any) -> Change:
    def change(documents: Documents) -> None:
        documents[index].update(fields)

    return change


def _drop(index: int, key: str) -> Change:
    def change(documents: Documents) -> None:
        del documents[index][key]

    return change


def _inline(index: int, path: tuple[str, ...], value: Any) -> Change:
    def change(documents: Documents) -> None:
        target = documents[index]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "needle", "message"),
    [
        (_set(0, execution="serial"), "execution:", "execution: 'serial' is not allowed; use 'parallel'"),
        (_drop(0, "execution"), "name: train-eval-debug", "execution: required field is missing"),
        (_set(0, placement="ANY"), "placement:", "placement: 'ANY' is not allowed; use 'SAME_INFRA'"),
        (_set(0, volumez=[]), "volumez:", "volumez: unknown field; did you mean 'volumes'?"),
        (_set(0, name="2fast"), "name: 2fast", "name: '2fast' must be lower-case letters"),
        (_set(1, name="evaluator"), ("name: evaluator", 2), "name: task name 'evaluator' is taken by the task at"),
        (_set(1, name="Trainer"), "name: Trainer", "name: 'Trainer' must be lower-case letters"),
        (_set(2, watch="/elsewhere"), "watch:", "watch: /elsewhere is not on a volume of this task"),
        (_set(2, num_nodes=2), "num_nodes:", "num_nodes: an evaluation task runs in one pod"),
        (_set(1, num_nodes=3), "num_nodes:", "num_nodes: is 3 but the training config's training.nnodes is 1"),
        (
            _set(1, volumes={"/checkpoints": "train-eval-debug-ckpt"}),
            "/checkpoints: train-eval-debug-ckpt",
            "volume 'train-eval-debug-ckpt' is unknown; did you mean 'train-eval-debug-ckpts'? add it to the header",
        ),
        (_set(1, volumes={"/scratch/x": "train-eval-debug-ckpts"}), ("volumes:", 2), "overlaps cajajejo's own mount"),
        (_set(1, evaluation="../evaluation/debug.job_config.yml"), "name: trainer", "a task is one kind"),
        (_drop(2, "evaluation"), "name: evaluator", "a task needs one of training (training)"),
        (_set(2, helm_config="../evaluation/app/nope.conf"), "helm_config:", "helm_config: "),
        (_set(2, evaluation="../nope.yml"), "evaluation: ../nope.yml", "no such file; check the path"),
        (_set(2, evaluation="/abs.yml"), "evaluation: /abs.yml", "must be a path relative to the group file"),
        (_set(2, evaluation=7), "evaluation: 7", "expected a config file's path or the config itself"),
        (
            _inline(1, ("training", "compute_config", "memory"), "lots"),
            "memory: lots",
            "training.compute_config.memory: 'lots' is not a Kubernetes quantity",
        ),
        (
            _inline(1, ("training", "kind"), "evaluation"),
            "kind: evaluation",
            "training.kind: is an evaluation job config, not a training one; put it under `evaluation:` instead",
        ),
        (
            _inline(1, ("training", "kubernetes_config"), {"namespace": "other"}),
            "training:",
            "training: its config sets kubernetes_config.namespace 'other', but a group's tasks share",
        ),
        (
            _inline(1, ("training", "kubernetes_config"), {"env": {"SKYPILOT_JOBGROUP_NAME": "x"}}),
            "training:",
            "sets SKYPILOT_JOBGROUP_NAME, which cajajejo sets in every task of a group",
        ),
        (
            _inline(1, ("training", "training", "checkpoints", "directory"), "/out/checkpoints"),
            "training:",
            "training: set training.checkpoints.directory to /checkpoints, where task 'evaluator' watches for "
            "checkpoints (volume 'train-eval-debug-ckpts'); it is /out/checkpoints",
        ),
        (
            _set(1, volumes={"/other": "train-eval-debug-ckpts"}),
            "training:",
            "set training.checkpoints.directory to /other",
        ),
        (
            _set(0, volumes=[{"name": "train-eval-debug-ckpts", "size": "1Gi"}, {"name": "spare", "size": "1Gi"}]),
            "- name: train-eval-debug-ckpts",
            None,  # valid: an unused volume is no mistake
        ),
    ],
)
def test_each_rule_is_one_line_with_its_place(
    groups_dir: Path, change: Change, needle: str, message: str | None
) -> None:
    documents = debug_documents()
    change(documents)
    path = write_group(groups_dir, *documents)
    if message is None:
        assert run_cli("groups", "validate", path).exit_code == 0
        return
    line = _refused(path)
    text, nth = needle if isinstance(needle, tuple) else (needle, 1)
    assert line.startswith(f"error: {path}:{_line(path, text, nth)}: "), line
    assert message in line


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ((command("a"),), "the first document must be the group's header"),
        ((header(),), "has a header but no task"),
        ((header(), {"name": "a", "trainig": "x.yml"}), "a task needs one of training (training), evaluation "),
        ((header(), {"name": "a", "trainig": "x.yml"}), "did you mean 'training'?"),
        ((header(), command("a", imagee="x")), "imagee: unknown field; did you mean 'image'?"),
        ((header(), command("a", resources={"accelerators": "A1000:1"})), "did you mean 'A100'?"),
        ((header(), command("a", resources={"accelerators": "A100:0.5"})), "must be a whole number of GPUs"),
        ((header(), command("a", resources={"accelerators": {"A100": 1, "H100": 1}})), "name one accelerator"),
        ((header(), command("a", resources={"cpus": "four"})), "resources.cpus: 'four' is not a CPU count"),
        (
            (header(), command("a", resources={"memory": "lots+"})),
            "is not a number of gigabytes (32) or a Kubernetes quantity",
        ),
        ((header(), command("a", resources={"disk_size": 100})), "disk_size: unknown field"),
        ((header(), command("a", envs={"SKYPILOT_JOBGROUP_HOST_A": "x"})), "is set by cajajejo in every task"),
        ((header(), command("a", envs={"CONFIG_VERSION": "x"})), "CONFIG_VERSION is set by cajajejo"),
        ((header(), command("a", envs={"HF_TOKEN": "x"})), "looks like a credential; move it to secret_env"),
        ((header(), command("a", image="Bad Image")), "is not an image such as"),
        ((header(), command("a"), command("a")), "task name 'a' is taken"),
        ((header("x" * 50), command("a" * 12)), "hostname 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-aaaa"),
        ((header("x" * 50), command("a" * 10, num_nodes=11)), "the hostname"),  # with one pod it would fit
        ((header(kubernetes_config={"job_name_prefix": "p"}), command("a")), "job_name_prefix does not apply"),
        ((header(volumes=[{"name": "v", "size": "1Gi"}], existing_volumes=["v"]), command("a")), "more than once"),
        (
            (header(volumes=[{"name": "v", "size": "lots"}]), command("a")),
            "volumes[0].size: 'lots' is not a number of gigabytes",
        ),
        ((header(volume_files=["nope.volume.yml"]), command("a")), "volume_files[0]: "),
        ((header(volume_files=["a\x00b"]), command("a")), "volume_files[0]: 'a\\x00b' is not a file path"),
        (
            (header(), {"name": "e", "evaluation": {}, "helm_config": "a\x00b"}),
            "helm_config: 'a\\x00b' is not a file path: it holds a NUL character",
        ),
        (
            (
                header(volumes=[{"name": "one", "size": 1}, {"name": "two", "size": 1}]),
                command("a", volumes={"/data-x": "one", "/data/x": "two"}),
            ),
            "volumes: mount paths /data-x and /data/x would both be CAJAJEJO_VOLUME_DATA_X in a local run",
        ),
    ],
)
def test_header_and_command_rules(tmp_path: Path, documents: tuple[dict[str, Any], ...], message: str) -> None:
    path = write_group(tmp_path, *documents)
    line = _refused(path)
    assert line.startswith(f"error: {path}:")
    assert message in line, line


def test_a_problem_in_a_named_config_file_points_into_that_file(groups_dir: Path) -> None:
    config = groups_dir.parent / "evaluation" / "debug.job_config.yml"
    config.write_text(config.read_text().replace("memory: 4Gi", "memory: 4 GB"))
    line = _refused(groups_dir / DEBUG.name)
    assert line.startswith(f"error: {config}:{_line(config, 'memory: 4 GB')}: compute_config.memory: ")


def test_a_config_of_the_other_kind_is_refused_with_where_to_put_it(groups_dir: Path) -> None:
    documents = debug_documents()
    documents[2]["evaluation"] = "../training/debug.job_config.yml"
    line = _refused(write_group(groups_dir, *documents))
    assert "is a training job config, not an evaluation one; put it under `training:` instead" in line


@pytest.mark.parametrize(
    ("volume_file", "message"),
    [
        ("name: v\ntype: k8s-pvc\nsize: 1Gi\nconfig:\n  acess_mode: ReadWriteOnce\n", "did you mean 'access_mode'?"),
        ("name: v\ntype: gcs\nsize: 1Gi\n", "type: 'gcs' is not allowed; use 'k8s-pvc'"),
        ("name: v\ntype: k8s-pvc\n", "size is needed to make the volume"),
        ("name: v\ntype: k8s-pvc\ninfra: aws\nsize: 1Gi\n", "cajajejo makes volumes on Kubernetes only"),
    ],
)
def test_volume_file_mistakes_point_into_the_volume_file(tmp_path: Path, volume_file: str, message: str) -> None:
    (tmp_path / "v.volume.yml").write_text(volume_file)
    path = write_group(tmp_path, header(volume_files=["v.volume.yml"]), command("a", volumes={"/v": "v"}))
    line = _refused(path)
    assert line.startswith(f"error: {tmp_path / 'v.volume.yml'}:")
    assert message in line


def test_a_volume_file_makes_or_names_a_volume(tmp_path: Path) -> None:
    (tmp_path / "made.volume.yml").write_text("name: made\ntype: k8s-pvc\nsize: 5\n")
    (tmp_path / "kept.volume.yml").write_text("name: kept\ntype: k8s-pvc\ninfra: k8s/ctx\nuse_existing: true\n")
    path = write_group(
        tmp_path,
        header(volume_files=["made.volume.yml", "kept.volume.yml"]),
        command("a", volumes={"/made": "made", "/kept": "kept"}),
    )
    group = load_group(path)
    assert [(v.name, v.size, v.access_mode) for v in group.volumes] == [("made", "5G", "ReadWriteMany")]
    assert group.existing_volumes == ("kept",)
    assert list(group.files) == [str(path), str(tmp_path / "made.volume.yml"), str(tmp_path / "kept.volume.yml")]


def test_yaml_mistakes_and_credentials_are_lines_of_the_group_file(tmp_path: Path) -> None:
    path = write_group(tmp_path, header(), "name: a\nname: b\nimage: r/x:1\nrun: echo\n")
    assert "name: duplicate key (first at line" in _refused(path)
    path = write_group(tmp_path, header(), command("a", run="curl -H 'Authorization: Bearer abcdefghijklmnop123'"))
    assert "looks like it holds a credential" in _refused(path)
    path = tmp_path / "empty.yml"
    path.write_text("")
    assert _refused(path) == f"error: {path}: is empty; expected a group header, then one document per task " + (
        "(see jobs/groups/train-eval.group.yml)"
    )


def test_all_problems_of_a_file_are_reported_in_one_run(tmp_path: Path) -> None:
    path = write_group(tmp_path, header(execution="serial"), command("a", imagee="x"), command("b", num_nodes=0))
    result = run_cli("groups", "validate", path)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 3


def test_a_mutable_image_tag_is_a_warning(tmp_path: Path) -> None:
    path = write_group(tmp_path, header(), command("a", image="registry.example.com/team/task"))
    result = run_cli("groups", "validate", path)
    assert result.exit_code == 0
    assert "image: 'registry.example.com/team/task' has no tag (so 'latest')" in result.stderr


def _two_pairs(second_mount: str = "/checkpoints", second_watch: str = "/checkpoints/b") -> Documents:
    """The debug group with two trainers on its one volume, writing to a/ and b/, each with its evaluator."""
    head, trainer, evaluator = debug_documents()
    volume = head["volumes"][0]["name"]
    documents = [head]
    for pair, mount, watch in (("a", "/checkpoints", "/checkpoints/a"), ("b", second_mount, second_watch)):
        training = copy.deepcopy(trainer["training"])
        training["training"]["checkpoints"]["directory"] = f"{mount}/{pair}"
        documents.append({**trainer, "name": f"trainer-{pair}", "volumes": {mount: volume}, "training": training})
        documents.append({**evaluator, "name": f"eval-{pair}", "watch": watch})
    return documents


def test_two_trainers_on_one_volume_are_matched_on_the_folder_they_write_to(groups_dir: Path) -> None:
    # trainer-b mounts the volume elsewhere: /ckpts/b in its pods is /checkpoints/b in eval-b's.
    group = load_group(write_group(groups_dir, *_two_pairs(second_mount="/ckpts")))
    tasks = {task.name: task for task in group.tasks}
    assert group.evaluator_roles(tasks["trainer-a"]) == ["eval-a"]
    assert group.evaluator_roles(tasks["trainer-b"]) == ["eval-b"]


def test_an_evaluator_watching_where_no_trainer_writes_is_told_where_they_do(groups_dir: Path) -> None:
    path = write_group(groups_dir, *_two_pairs(second_watch="/checkpoints/c"))
    assert _refused(path) == (
        f"error: {path}:{_line(path, 'watch: /checkpoints/c')}: watch: no training task writes checkpoints to "
        "/checkpoints/c (volume 'train-eval-debug-ckpts'); they write: trainer-a to /checkpoints/a, trainer-b to "
        "/checkpoints/b (in their pods)"
    )


def test_names_say_that_jobs_of_two_groups_can_have_one_name() -> None:
    assert names.task_job_name("a", "b-c") == names.task_job_name("a-b", "c")
    assert names.__doc__ is not None
    assert "unique in the namespace" not in names.__doc__
    assert "both make the Job `a-b-c`" in names.__doc__
