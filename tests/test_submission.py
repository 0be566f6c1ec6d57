"""Submission and job management against a Kubernetes API stand-in, through the official client."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import git
import pytest
import yaml

from cajajejo.backends.kubernetes import APPLY_PATCH, FIELD_MANAGER, MERGE_PATCH
from tests.standins.http import Request
from tests.standins.kubernetes_api import JobStart, KubernetesApiStandin
from tests.support import run_cli

CONFIG = "jobs/evaluation/example.mlflow.job_config.yml"
SPECS = "jobs/evaluation/app/run_specs.conf"


def _submit(*extra: str) -> tuple[int, str, str]:
    result = run_cli(
        "jobs", "evaluation", "submit-job", "--path-to-config", CONFIG, "--path-to-helm-config", SPECS, *extra
    )
    return result.exit_code, result.stdout, result.stderr


def _job_name(stdout: str) -> str:
    return stdout.split()[1]


def _writes(requests: list[Request]) -> list[str]:
    """The write requests, as 'METHOD path [dry run]'."""
    return [
        f"{r.method} {r.path}" + (" [dry run]" if r.query.get("dryRun") == "All" else "")
        for r in requests
        if r.method != "GET"
    ]


def test_submit_checks_everything_then_makes_the_job_suspended_and_resumes_it_last(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin
) -> None:
    code, out, err = _submit()
    assert code == 0, err
    name = _job_name(out)
    jobs, job_path = "/apis/batch/v1/namespaces/default/jobs", f"/apis/batch/v1/namespaces/default/jobs/{name}"
    storage_class = "/apis/storage.k8s.io/v1/storageclasses/ssd"  # the example asks for its scratch class
    configmaps = "/api/v1/namespaces/default/configmaps"
    first = kube_standin.requests[0]
    assert (first.method, first.path) == ("GET", job_path)  # is the name free?
    assert _writes(kube_standin.requests) == [
        f"POST {jobs} [dry run]",
        f"PATCH {storage_class} [dry run]",
        f"POST {configmaps} [dry run]",
        f"POST {jobs}",
        f"PATCH {storage_class}",
        f"POST {configmaps}",
        f"PATCH {job_path}",
    ]
    creates = [r for r in kube_standin.requests if r.method == "POST"]
    for request in creates:
        assert request.query["fieldManager"] == FIELD_MANAGER
    for request in creates[::2]:  # the Job's, dry run and real
        assert json.loads(request.body)["spec"]["suspend"] is True
    applies = [r for r in kube_standin.requests if r.method == "PATCH" and r.path != job_path]
    assert [r.path for r in applies] == [storage_class, storage_class]  # only the class, which jobs may share
    for request in applies:
        assert request.headers["Content-Type"] == APPLY_PATCH
        assert request.query["fieldManager"] == FIELD_MANAGER
    job = kube_standin.objects[("Job", "default", name)]
    resume = kube_standin.requests[-1]
    assert resume.headers["Content-Type"] == MERGE_PATCH
    assert json.loads(resume.body) == {"metadata": {"uid": job["metadata"]["uid"]}, "spec": {"suspend": False}}
    assert kube_standin.job_starts == [JobStart(name, "default", missing_configmaps=())]
    assert job["spec"]["suspend"] is False
    configmap_object = kube_standin.objects[("ConfigMap", "default", name)]
    assert configmap_object["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job["metadata"]["uid"]}
    ]
    sha = in_repo.head.commit.hexsha
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CONFIG_VERSION"] == sha
    assert env["CONFIG_PATH_GIT_REPO"] == CONFIG
    assert env["HELM_CONFIG_PATH_GIT_REPO"] == SPECS
    assert job["metadata"]["labels"]["cajajejo/config-version"] == sha[:12]
    assert configmap_object["metadata"]["labels"]["cajajejo/config-version"] == sha[:12]
    assert f"cajajejo logs {name}" in out


def test_the_token_travels_only_in_the_header_and_no_secret_value_is_sent(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin
) -> None:
    code, _, err = _submit()
    assert code == 0, err
    for request in kube_standin.requests:
        assert b"standin-token" not in request.body
    job_body = json.loads(next(r.body for r in kube_standin.requests if r.method == "POST"))
    env = job_body["spec"]["template"]["spec"]["containers"][0]["env"]
    token = next(e for e in env if e["name"] == "MLFLOW_TRACKING_TOKEN")
    assert token == {
        "name": "MLFLOW_TRACKING_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "mlflow-auth", "key": "token"}},
    }


def test_resubmitting_the_same_spec_changes_nothing(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yml"
    code, out, err = _submit("--kubernetes-job-spec-output-path", str(spec))
    assert code == 0, err
    before = copy.deepcopy(kube_standin.objects)
    sent = len(kube_standin.requests)
    again = run_cli("jobs", "evaluation", "submit-job", "--job-spec-path", str(spec))
    assert again.exit_code == 0, again.stderr
    assert kube_standin.objects == before
    assert _job_name(again.stdout) == _job_name(out)
    assert "already submitted (same inputs and commit): nothing changed" in again.stdout.splitlines()[0]
    # Only the look-up: the Job, and its ConfigMap, since a Job without it would be half-made.
    assert [r.method for r in kube_standin.requests[sent:]] == ["GET", "GET"]


def test_dry_run_sends_dry_run_and_creates_nothing(in_repo: git.Repo, kube_standin: KubernetesApiStandin) -> None:
    code, out, err = _submit("--dry-run")
    assert code == 0, err
    assert "dry run, nothing created" in out
    assert kube_standin.objects == {}
    assert kube_standin.job_starts == []
    writes = [r for r in kube_standin.requests if r.method != "GET"]
    assert len(writes) == 3  # the Job, its scratch StorageClass and its ConfigMap
    assert all(r.query.get("dryRun") == "All" for r in writes)


def test_a_dirty_tree_is_refused_before_any_request(in_repo: git.Repo, kube_standin: KubernetesApiStandin) -> None:
    Path("README.md").write_text("dirty\n")
    code, _, err = _submit()
    assert code == 2  # the user's to fix, like any input mistake
    assert err.startswith("error: refusing to submit from a dirty git tree")
    assert "README.md" in err
    assert kube_standin.requests == []
    code, out, err = _submit("--allow-dirty-repo")
    assert code == 0, err
    job = kube_standin.objects[("Job", "default", _job_name(out))]
    assert job["metadata"]["annotations"]["cajajejo/config-version"] == in_repo.head.commit.hexsha + "-dirty"


def test_a_config_version_that_is_not_head_is_refused(in_repo: git.Repo, kube_standin: KubernetesApiStandin) -> None:
    code, _, err = _submit("--config-version", "0123456789ab")
    assert code == 2
    assert "is not the checked-out commit" in err
    assert kube_standin.requests == []
    code, _, err = _submit("--config-version", in_repo.head.commit.hexsha[:3])  # too short to name a commit
    assert code == 2
    code, _, err = _submit("--config-version", in_repo.head.commit.hexsha[:12])
    assert code == 0, err


def test_a_storage_class_is_made_before_the_job_is_resumed(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin
) -> None:
    config = Path(CONFIG)
    data = yaml.safe_load(config.read_text())
    data["compute_config"]["scratch"] = {"size": "20Gi", "storage_class": "fast", "provision_storage_class": {}}
    config.write_text(yaml.safe_dump(data))
    in_repo.index.add([CONFIG])
    in_repo.index.commit("provision a class")
    code, _, err = _submit()
    assert code == 0, err
    made = [r for r in kube_standin.requests if r.method != "GET" and "dryRun" not in r.query]
    kinds = [r.path.split("/")[-2] if r.method == "PATCH" else r.path.split("/")[-1] for r in made]
    assert kinds == ["jobs", "storageclasses", "configmaps", "jobs"]  # create (suspended), apply, create, resume
    assert kube_standin.objects[("StorageClass", None, "fast")]["parameters"] == {"type": "pd-balanced"}


@pytest.mark.parametrize(
    ("method", "kind", "status", "reason", "message", "expected"),
    [
        ("POST", "Job", 422, "Invalid", 'Job.batch "x" is invalid: spec.template: Required', "rejected the object"),
        ("POST", "Job", 403, "Forbidden", 'jobs.batch is forbidden: User "me" cannot create', "you are not allowed"),
        ("PATCH", "StorageClass", 409, "Conflict", "Apply failed with 1 conflict", "another manager owns these"),
        ("POST", "ConfigMap", 422, "Invalid", 'ConfigMap "x" is invalid: data: Too long', "rejected the object"),
        ("POST", "Job", 500, "InternalError", "etcd\nis sad", "the API server answered 500"),
    ],
)
def test_api_errors_are_one_clear_line(
    in_repo: git.Repo,
    kube_standin: KubernetesApiStandin,
    method: str,
    kind: str,
    status: int,
    reason: str,
    message: str,
    expected: str,
) -> None:
    path = {
        "Job": r"/apis/batch/v1/.*",
        "ConfigMap": r"/api/v1/namespaces/default/configmaps",
        "StorageClass": r"/apis/storage.k8s.io/v1/storageclasses/.*",
    }[kind]
    kube_standin.fail_next(method, path, status, reason, message)
    code, _, err = _submit()
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    verb = "create" if method == "POST" else "apply"
    name = "ssd" if kind == "StorageClass" else "eval-pythia-"  # the example's scratch class, or the job's name
    assert lines[0].startswith(f"error: cannot {verb} {kind} {name}")
    assert expected in lines[0]
    assert " ".join(message.split()) in lines[0]
    assert lines[0].endswith("; nothing was created (refused in the server's dry run)")
    assert "Traceback" not in err
    assert kube_standin.objects == {}


def test_a_missing_namespace_is_named(in_repo: git.Repo, kube_standin: KubernetesApiStandin) -> None:
    code, _, err = _submit("--namespace", "team-x")
    assert code == 1
    assert "in namespace team-x: not found" in err
    assert 'namespaces "team-x" not found' in err


def test_bad_credentials_say_to_log_in_again(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(kubeconfig.read_text().replace("standin-token", "wrong"))
    code, _, err = _submit()
    assert code == 1
    assert "did not accept your credentials" in err
    assert "invoke authenticate-kubectl" in err


def test_an_unreachable_server_is_one_line(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path
) -> None:
    kube_standin.close()
    code, _, err = _submit()
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "the Kubernetes API server is unreachable" in err


def test_no_kubeconfig_is_one_line(in_repo: git.Repo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    code, _, err = _submit()
    assert code == 1
    assert err.strip().count("\n") == 0
    assert "invoke authenticate-kubectl" in err


def test_an_edited_job_spec_is_checked_again(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yml"
    parsed = run_cli("jobs", "evaluation", "parse-job", CONFIG, SPECS, str(spec), "--job-name", "eval-edited")
    assert parsed.exit_code == 0, parsed.stderr
    spec.write_text(spec.read_text().replace("restartPolicy: Never", "restartPolicy: Always"))
    result = run_cli("jobs", "evaluation", "submit-job", "--job-spec-path", str(spec))
    assert result.exit_code == 2
    assert "restartPolicy" in result.stderr
    assert kube_standin.requests == []


def test_a_job_spec_stamped_with_another_version_is_refused(in_repo: git.Repo, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yml"
    run_cli("jobs", "evaluation", "parse-job", CONFIG, SPECS, str(spec), "--config-version", "abc123")
    result = run_cli("jobs", "evaluation", "submit-job", "--job-spec-path", str(spec), "--config-version", "def456")
    assert result.exit_code == 2
    assert "was rendered from config version 'abc123'" in result.stderr


def test_submit_job_needs_one_source() -> None:
    result = run_cli("jobs", "evaluation", "submit-job")
    assert result.exit_code == 2
    assert "give either --job-spec-path" in result.stderr


def test_list_status_and_delete_only_touch_cajajejo_jobs(in_repo: git.Repo, kube_standin: KubernetesApiStandin) -> None:
    code, out, err = _submit()
    assert code == 0, err
    name = _job_name(out)
    kube_standin.put(
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "someone-else", "namespace": "default"}}
    )
    kube_standin.put(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{name}-x1", "namespace": "default", "labels": {"cajajejo/job-name": name}},
            "status": {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": "eval",
                        "image": "registry.example.com/ml-platform/evaluation:10abfb1bf8a0",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"waiting": {"reason": "ImagePullBackOff"}},
                    }
                ],
            },
        }
    )

    listed = run_cli("jobs", "list")
    assert listed.exit_code == 0, listed.stderr
    assert name in listed.stdout
    assert "someone-else" not in listed.stdout
    assert kube_standin.requests[-1].query["labelSelector"] == "app.kubernetes.io/managed-by=cajajejo"

    status = run_cli("jobs", "status", name)
    assert status.exit_code == 0, status.stderr
    assert f"job {name} in default: running" in status.stdout
    assert "Pending (eval: ImagePullBackOff)" in status.stdout

    refused = run_cli("jobs", "delete", "someone-else", "--yes")
    assert refused.exit_code == 1
    assert "was not made by cajajejo" in refused.stderr
    assert ("Job", "default", "someone-else") in kube_standin.objects

    deleted = run_cli("jobs", "delete", name, "--yes")
    assert deleted.exit_code == 0, deleted.stderr
    assert deleted.stdout.splitlines() == [f"deleted Job {name}", f"deleted ConfigMap {name}"]
    delete = next(r for r in kube_standin.requests if r.method == "DELETE")
    # The client sends it as a query parameter (older clients sent a DeleteOptions body).
    assert delete.query.get("propagationPolicy") == "Background"
    assert ("Job", "default", name) not in kube_standin.objects
    assert ("ConfigMap", "default", name) not in kube_standin.objects


def test_job_names_are_checked_before_any_request(kube_standin: KubernetesApiStandin) -> None:
    result = run_cli("jobs", "status", "Bad/Name")
    assert result.exit_code == 2
    assert "JOB_NAME" in result.stderr
    assert kube_standin.requests == []
