"""`cajajejo volumes apply|delete`: a volume made on its own, which groups mount and never delete (against the
Kubernetes API stand-in with the real client)."""

from __future__ import annotations

from pathlib import Path

import git

from tests.standins.kubernetes_api import KubernetesApiStandin
from tests.support import run_cli

VOLUME = "jobs/groups/checkpoints.volume.yml"
TRAIN_EVAL = "jobs/groups/train-eval.group.yml"
CLAIM = ("PersistentVolumeClaim", "ml-train", "train-eval-ckpts")


def _writes(standin: KubernetesApiStandin) -> list[str]:
    return [f"{r.method} {r.path}" for r in standin.requests if r.method != "GET"]


def test_apply_makes_the_claim_stamped_and_applying_again_changes_nothing(
    groups_repo: git.Repo, kube_standin: KubernetesApiStandin
) -> None:
    kube_standin.namespaces.add("ml-train")
    dry = run_cli("volumes", "apply", VOLUME, "--namespace", "ml-train", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert dry.stdout.startswith("volume train-eval-ckpts validated by the cluster (dry run, nothing created)")
    assert CLAIM not in kube_standin.objects
    made = run_cli("volumes", "apply", VOLUME, "--namespace", "ml-train")
    assert made.exit_code == 0, made.stderr
    assert made.stdout.startswith("volume train-eval-ckpts made: namespace ml-train at http://")
    claim = kube_standin.objects[CLAIM]
    assert claim["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": "standard-rwx",
        "resources": {"requests": {"storage": "10Gi"}},
    }
    metadata = claim["metadata"]
    assert metadata["labels"]["cajajejo/volume"] == "train-eval-ckpts"
    assert "cajajejo/group" not in metadata["labels"]
    assert metadata["annotations"]["cajajejo/config-version"] == groups_repo.head.commit.hexsha
    assert metadata["annotations"]["cajajejo/config-path"] == VOLUME
    assert not metadata.get("ownerReferences")
    again = run_cli("volumes", "apply", VOLUME, "--namespace", "ml-train")
    assert again.exit_code == 0, again.stderr
    assert again.stdout.splitlines() == [
        f"volume train-eval-ckpts exists already (made by volumes apply): nothing changed in namespace ml-train at "
        f"{again.stdout.split(' at ', 1)[1].splitlines()[0]}"
    ]
    assert kube_standin.objects[CLAIM] == claim


def test_a_group_naming_the_file_mounts_the_applied_claim_and_delete_keeps_it(
    groups_repo: git.Repo, kube_standin: KubernetesApiStandin
) -> None:
    kube_standin.namespaces.add("ml-train")
    claim = {"name": "datasets-pvc", "namespace": "ml-train"}  # the group's existing dataset claim
    kube_standin.put({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": claim, "spec": {}})
    assert run_cli("volumes", "apply", VOLUME, "--namespace", "ml-train").exit_code == 0
    applied = kube_standin.objects[CLAIM]
    submitted = run_cli("groups", "submit", TRAIN_EVAL)
    assert submitted.exit_code == 0, submitted.stderr
    assert kube_standin.objects[CLAIM] == applied  # mounted as it is, not taken over by the group
    deleted = run_cli("groups", "delete", "train-eval", "--namespace", "ml-train", "--yes")
    assert deleted.exit_code == 0, deleted.stderr
    assert "PersistentVolumeClaim" not in deleted.stdout
    assert CLAIM in kube_standin.objects  # it outlives the group
    gone = run_cli("volumes", "delete", "train-eval-ckpts", "--namespace", "ml-train", "--yes")
    assert gone.exit_code == 0, gone.stderr
    assert gone.stdout.strip() == "deleted PersistentVolumeClaim train-eval-ckpts in namespace ml-train"
    assert CLAIM not in kube_standin.objects


def test_claims_made_otherwise_are_neither_taken_over_nor_deleted(
    groups_repo: git.Repo, kube_standin: KubernetesApiStandin
) -> None:
    kube_standin.namespaces.add("ml-train")
    foreign = {"name": "train-eval-ckpts", "namespace": "ml-train", "labels": {"team": "data"}}
    kube_standin.put({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": foreign, "spec": {}})
    refused = run_cli("volumes", "apply", VOLUME, "--namespace", "ml-train")
    assert refused.exit_code == 1
    (line,) = refused.stderr.strip().splitlines()
    assert line == (
        "error: PersistentVolumeClaim train-eval-ckpts already exists in namespace ml-train and cajajejo did not "
        "make it; give the volume another name, or mount the claim as it is (use_existing: true)"
    )
    not_ours = run_cli("volumes", "delete", "train-eval-ckpts", "--namespace", "ml-train", "--yes")
    assert not_ours.exit_code == 1
    assert "a claim that `cajajejo volumes apply` did not make train-eval-ckpts" in not_ours.stderr
    assert kube_standin.objects[CLAIM]["metadata"]["labels"] == {"team": "data"}
    assert _writes(kube_standin) == [
        "POST /api/v1/namespaces/ml-train/persistentvolumeclaims"  # refused by the cluster: the name is taken
    ]


def test_bad_volume_files_get_one_line_and_reach_no_cluster(
    groups_repo: git.Repo, kube_standin: KubernetesApiStandin
) -> None:
    root = Path(str(groups_repo.working_tree_dir))
    (root / "bad.volume.yml").write_text("name: Bad_Name\ntype: k8s-pvc\nsize: 10Gi\nconfg: {}\n")
    (root / "existing.volume.yml").write_text("name: data\ntype: k8s-pvc\nuse_existing: true\n")
    groups_repo.index.add(["bad.volume.yml", "existing.volume.yml"])
    groups_repo.index.commit("volumes")
    bad = run_cli("volumes", "apply", "bad.volume.yml")
    assert bad.exit_code == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("error: bad.volume.yml:1: name: ")
    assert lines[1].startswith("error: bad.volume.yml:4: confg: ")
    assert "did you mean 'config'" in lines[1]
    existing = run_cli("volumes", "apply", "existing.volume.yml")
    assert existing.exit_code == 2
    assert "use_existing: true names a claim made elsewhere; there is nothing to make" in existing.stderr
    (root / VOLUME).write_text((root / VOLUME).read_text().replace("10Gi", "20Gi"))
    dirty = run_cli("volumes", "apply", VOLUME)
    assert dirty.exit_code == 2
    assert (
        "refusing to submit from a dirty git tree (uncommitted changes in: jobs/groups/checkpoints.volume.yml)"
        in dirty.stderr
    )
    assert run_cli("volumes", "delete", "Not_A_Name", "--yes").exit_code == 2
    assert _writes(kube_standin) == []
