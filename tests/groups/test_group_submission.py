"""Submitting, watching and deleting job groups, against the Kubernetes API stand-in with the real client."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import git

from tests.standins.http import Request
from tests.standins.kubernetes_api import JobStart, KubernetesApiStandin
from tests.support import run_cli

DEBUG = "jobs/groups/train-eval.debug.group.yml"
TRAIN_EVAL = "jobs/groups/train-eval.group.yml"
TRAINER, EVALUATOR = "train-eval-debug-trainer", "train-eval-debug-evaluator"
JOBS = "/apis/batch/v1/namespaces/default/jobs"
CORE = "/api/v1/namespaces/default"


def _writes(requests: list[Request]) -> list[str]:
    return [
        f"{r.method} {r.path}" + (" [dry run]" if r.query.get("dryRun") == "All" else "")
        for r in requests
        if r.method != "GET"
    ]


def _submit(*extra: str, group: str = DEBUG) -> Any:
    return run_cli("groups", "submit", group, *extra)


def _group_objects(standin: KubernetesApiStandin) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (kind, name): obj
        for (kind, _, name), obj in standin.objects.items()
        if (obj["metadata"].get("labels") or {}).get("cajajejo/group") == "train-eval-debug"
    }


def test_submit_makes_every_job_suspended_then_what_they_need_then_resumes_them(
    groups_repo: git.Repo, kube_standin: KubernetesApiStandin
) -> None:
    result = _submit()
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("group train-eval-debug submitted: namespace default at http://")
    assert "cajajejo groups status train-eval-debug --namespace default" in result.stdout
    made = [
        f"POST {JOBS}",
        f"POST {JOBS}",
        f"POST {CORE}/persistentvolumeclaims",
        f"POST {CORE}/configmaps",
        f"POST {CORE}/configmaps",
        f"POST {CORE}/services",
    ]
    assert _writes(kube_standin.requests) == [
        *(f"{write} [dry run]" for write in made),
        *made,
        f"PATCH {JOBS}/{TRAINER}",
        f"PATCH {JOBS}/{EVALUATOR}",
    ]
    for request in kube_standin.requests:
        if request.method == "POST" and request.path == JOBS:
            assert json.loads(request.body)["spec"]["suspend"] is True
    assert kube_standin.job_starts == [JobStart(name, "default", ()) for name in (TRAINER, EVALUATOR)]
    objects = _group_objects(kube_standin)
    uid = {name: objects[("Job", name)]["metadata"]["uid"] for name in (TRAINER, EVALUATOR)}

    def owners(kind: str, name: str) -> list[str]:
        return [ref["uid"] for ref in objects[(kind, name)]["metadata"].get("ownerReferences", [])]

    assert owners("ConfigMap", TRAINER) == [uid[TRAINER]]
    assert owners("ConfigMap", EVALUATOR) == [uid[EVALUATOR]]
    assert owners("Service", "train-eval-debug") == [uid[TRAINER], uid[EVALUATOR]]  # goes when the last Job goes
    assert owners("PersistentVolumeClaim", "train-eval-debug-ckpts") == []  # outlives the Jobs: checkpoints
    sha = groups_repo.head.commit.hexsha
    for obj in objects.values():
        assert obj["metadata"]["annotations"]["cajajejo/config-version"] == sha
        assert obj["metadata"]["annotations"]["cajajejo/group-path"] == DEBUG
    evaluator_env = {
        e["name"]: e.get("value")
        for e in objects[("Job", EVALUATOR)]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert evaluator_env["CONFIG_PATH_GIT_REPO"] == "jobs/evaluation/debug.job_config.yml"
    assert evaluator_env["CONFIG_VERSION"] == sha


def test_the_same_group_again_changes_nothing_and_another_of_its_name_is_refused(
    groups_repo: git.Repo, kube_standin: KubernetesApiStandin
) -> None:
    assert _submit().exit_code == 0
    before = copy.deepcopy(kube_standin.objects)
    again = _submit()
    assert again.exit_code == 0, again.stderr
    assert again.stdout.startswith("group train-eval-debug already submitted (same inputs and commit): nothing changed")
    assert kube_standin.objects == before
    root = Path(str(groups_repo.working_tree_dir))
    group = root / DEBUG
    text = group.read_text()
    assert "every_steps: 7" in text
    group.write_text(text.replace("every_steps: 7", "every_steps: 6"))
    groups_repo.index.add([DEBUG])
    groups_repo.index.commit("checkpoint more rarely")
    refused = _submit()
    assert refused.exit_code == 2
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: {DEBUG}: job {TRAINER} already exists in namespace default with ")
    assert "other inputs" in line
    assert line.endswith(
        "submit it under another name (--group-name), or delete group train-eval-debug first "
        "(cajajejo groups delete train-eval-debug)"
    )
    assert kube_standin.objects == before
    # Under another name it is another group, but its volume is the first one's: it is not shared silently.
    renamed = _submit("--group-name", "second")
    assert renamed.exit_code == 2
    assert "PersistentVolumeClaim train-eval-debug-ckpts already exists in namespace default" in renamed.stderr
    assert renamed.stderr.strip().endswith("or name it in existing_volumes to mount it as it is")


def test_a_refusal_midway_deletes_everything_this_submission_made(
    groups_repo: git.Repo, kube_standin: KubernetesApiStandin
) -> None:
    kube_standin.refuse("Service", "train-eval-debug", in_dry_run=False)  # a webhook that skips dry runs
    result = _submit()
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot create Service train-eval-debug in namespace default: a policy")
    assert line.endswith(
        "rolled back: deleted ConfigMap train-eval-debug-evaluator, ConfigMap train-eval-debug-trainer, "
        "PersistentVolumeClaim train-eval-debug-ckpts, Job train-eval-debug-evaluator, Job train-eval-debug-trainer"
    )
    assert kube_standin.objects == {}
    assert kube_standin.job_starts == []  # no pod started before the refusal


def test_a_dry_run_creates_nothing(groups_repo: git.Repo, kube_standin: KubernetesApiStandin) -> None:
    result = _submit("--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "validated by the cluster (dry run, nothing created)" in result.stdout
    assert kube_standin.objects == {}
    assert all(w.endswith("[dry run]") for w in _writes(kube_standin.requests))


def test_a_dirty_tree_or_an_uncommitted_named_file_is_refused(
    groups_repo: git.Repo, kube_standin: KubernetesApiStandin
) -> None:
    root = Path(str(groups_repo.working_tree_dir))
    config = root / "jobs/evaluation/debug.job_config.yml"
    config.write_text(config.read_text() + "# edited\n")
    result = _submit()
    assert result.exit_code == 2
    assert (
        "refusing to submit from a dirty git tree (uncommitted changes in: jobs/evaluation/debug.job_config.yml)"
        in (result.stderr)
    )
    assert kube_standin.requests == []
    allowed = _submit("--allow-dirty-repo")
    assert allowed.exit_code == 0, allowed.stderr
    job = kube_standin.objects[("Job", "default", TRAINER)]
    assert job["metadata"]["annotations"]["cajajejo/config-version"] == groups_repo.head.commit.hexsha + "-dirty"
    assert _submit("--config-version", "0" * 40).exit_code == 2


def test_an_existing_volume_must_be_there(groups_repo: git.Repo, kube_standin: KubernetesApiStandin) -> None:
    kube_standin.namespaces.add("ml-train")
    result = _submit(group=TRAIN_EVAL)
    assert result.exit_code == 2
    assert "existing volume datasets-pvc is not in namespace ml-train: make it first" in result.stderr
    assert _writes(kube_standin.requests) == []
    claim = {"name": "datasets-pvc", "namespace": "ml-train"}
    kube_standin.put({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": claim, "spec": {}})
    result = _submit(group=TRAIN_EVAL)
    assert result.exit_code == 0, result.stderr
    assert ("PersistentVolumeClaim", "ml-train", "train-eval-ckpts") in kube_standin.objects


def _pod(job: str, task: str, phase: str, index: int = 0, waiting: str | None = None) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/managed-by": "cajajejo",
        "cajajejo/group": "train-eval-debug",
        "cajajejo/task": task,
        "cajajejo/job-name": job,
        "batch.kubernetes.io/job-completion-index": str(index),
    }
    status: dict[str, Any] = {"phase": phase}
    if waiting:
        status["containerStatuses"] = [
            {
                "name": "eval",
                "ready": False,
                "restartCount": 0,
                "image": "x",
                "imageID": "",
                "state": {"waiting": {"reason": waiting}},
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{job}-{index}-abcde", "namespace": "default", "labels": labels},
        "status": status,
    }


def test_status_says_one_line_per_task(groups_repo: git.Repo, kube_standin: KubernetesApiStandin) -> None:
    assert _submit().exit_code == 0
    kube_standin.put(_pod(TRAINER, "trainer", "Running"))
    kube_standin.put(_pod(EVALUATOR, "evaluator", "Pending", waiting="ImagePullBackOff"))
    kube_standin.objects[("Job", "default", EVALUATOR)]["status"] = {}
    result = run_cli("groups", "status", "train-eval-debug")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "group train-eval-debug in default: running (2 tasks)",
        "  TASK                     KIND        PODS      STATE",
        f"  evaluator                evaluation  0/1       pending; {EVALUATOR}-0-abcde: eval: ImagePullBackOff",
        "  trainer                  training    1/1       running",
    ]
    missing = run_cli("groups", "status", "nope")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "error: no job of group nope in namespace default (made by cajajejo)"
    assert run_cli("groups", "status", "Bad_Name").exit_code == 2


def test_delete_removes_the_groups_objects_by_its_label_and_nothing_else(
    groups_repo: git.Repo, kube_standin: KubernetesApiStandin
) -> None:
    assert _submit().exit_code == 0
    assert _submit(group="jobs/groups/rl-post-training.group.yml").exit_code == 0
    foreign = {"name": "train-eval-debug-notes", "namespace": "default", "labels": {"cajajejo/group": "x"}}
    kube_standin.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": foreign, "data": {}})
    result = run_cli("groups", "delete", "train-eval-debug", "--yes", "--keep-volumes")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"deleted Job {EVALUATOR}",
        f"deleted Job {TRAINER}",
        f"deleted ConfigMap {EVALUATOR}",
        f"deleted ConfigMap {TRAINER}",
        "deleted Service train-eval-debug",
    ]
    assert list(_group_objects(kube_standin)) == [("PersistentVolumeClaim", "train-eval-debug-ckpts")]
    assert ("ConfigMap", "default", "train-eval-debug-notes") in kube_standin.objects
    assert ("Job", "default", "rlhf-training-ppo-trainer") in kube_standin.objects
    # Submitted again, the group mounts the volume it kept (its checkpoints): not made again, not owned.
    again = _submit()
    assert again.exit_code == 0, again.stderr
    assert "PersistentVolumeClaim train-eval-debug-ckpts" in again.stdout
    deleted = run_cli("groups", "delete", "train-eval-debug", "--yes")
    assert "deleted PersistentVolumeClaim train-eval-debug-ckpts" in deleted.stdout
    assert _group_objects(kube_standin) == {}
    assert run_cli("groups", "delete", "train-eval-debug", "--yes").exit_code == 1


def test_a_volume_of_that_name_made_otherwise_is_refused_and_kept(
    groups_repo: git.Repo, kube_standin: KubernetesApiStandin
) -> None:
    claim = {"name": "train-eval-debug-ckpts", "namespace": "default"}
    kube_standin.put({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": claim, "spec": {}})
    result = _submit()
    assert result.exit_code == 2
    assert (
        "PersistentVolumeClaim train-eval-debug-ckpts already exists in namespace default and is not made for this "
        "group" in result.stderr
    )
    assert list(kube_standin.objects) == [("PersistentVolumeClaim", "default", "train-eval-debug-ckpts")]


def test_an_interrupted_submission_is_finished_and_one_that_ran_is_not_repeated(
    groups_repo: git.Repo, kube_standin: KubernetesApiStandin
) -> None:
    assert _submit().exit_code == 0
    # As if SIGKILL came after the first Job was made: the second, the claims, ConfigMaps and Service not yet.
    for key in list(kube_standin.objects):
        if key != ("Job", "default", TRAINER):
            del kube_standin.objects[key]
    kube_standin.objects[("Job", "default", TRAINER)]["spec"]["suspend"] = True
    kube_standin.job_starts.clear()
    finished = _submit()
    assert finished.exit_code == 0, finished.stderr
    assert finished.stdout.startswith("finished an interrupted submission of group train-eval-debug")
    assert {key[0] for key in _group_objects(kube_standin)} == {"Job", "ConfigMap", "Service", "PersistentVolumeClaim"}
    assert [start.name for start in kube_standin.job_starts] == [TRAINER, EVALUATOR]
    # A group that ran, one of whose Jobs is gone since (finished and deleted): submitting it would run it twice.
    del kube_standin.objects[("Job", "default", EVALUATOR)]
    again = _submit()
    assert again.exit_code == 2
    assert f"job {EVALUATOR} of this same submission is gone from namespace default" in again.stderr
    assert "delete group train-eval-debug first" in again.stderr
