"""A submission never changes a job that is not its own, and never leaves half a job behind.

Against the Kubernetes API stand-in, through the official client: name collisions (a saved spec's
name, a generated name, a rival that takes the name between look-up and create), refusals in the
server's dry run, failures after objects were made (rolled back), a ConfigMap of the job's name that
is someone else's, a job an interruption left half-made, SIGTERM, and parallel submissions.
"""

from __future__ import annotations

import copy
import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest
import yaml

from cajajejo import submission
from cajajejo.backends.kubernetes import ClusterError
from cajajejo.errors import MAX_LINE
from cajajejo.runtime_contract import EVAL_CONFIG_FILE
from cajajejo.settings import load_settings
from tests.standins.http import Request
from tests.standins.kubernetes_api import JobStart, KubernetesApiStandin
from tests.support import run_cli

CONFIG = "jobs/evaluation/example.mlflow.job_config.yml"
SPECS = "jobs/evaluation/app/run_specs.conf"


def _spec(path: Path, job_name: str, *, creator: str = "Jasper", namespace: str | None = None) -> Path:
    """A saved spec of the example job named `job_name`; `creator` (a tracking tag) changes its inputs."""
    config = path.with_suffix(".config.yml")
    config.write_text(Path(CONFIG).read_text().replace("creator: Jasper", f"creator: {creator}"))
    options = ["--namespace", namespace] if namespace else []
    parsed = run_cli("jobs", "evaluation", "parse-job", config, SPECS, path, "--job-name", job_name, *options)
    assert parsed.exit_code == 0, parsed.stderr
    return path


def _submit_spec(spec: Path, *extra: str) -> tuple[int, str, str]:
    result = run_cli("jobs", "evaluation", "submit-job", "--job-spec-path", str(spec), *extra)
    return result.exit_code, result.stdout, result.stderr


def _made(requests: list[Request]) -> list[Request]:
    """Writes that were not dry runs."""
    return [r for r in requests if r.method != "GET" and r.query.get("dryRun") != "All"]


def _job_document(spec: Path) -> dict[str, object]:
    return next(doc for doc in yaml.safe_load_all(spec.read_text()) if doc and doc["kind"] == "Job")


# --- a name that is taken --------------------------------------------------------------------------


def test_a_spec_whose_name_holds_another_submission_is_refused_and_that_job_kept(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path
) -> None:
    first = _spec(tmp_path / "first.yml", "eval-collide")
    second = _spec(tmp_path / "second.yml", "eval-collide", creator="Someone")
    code, _, err = _submit_spec(first)
    assert code == 0, err
    before = copy.deepcopy(kube_standin.objects)
    sent = len(kube_standin.requests)

    for extra in ((), ("--dry-run",)):
        code, out, err = _submit_spec(second, *extra)
        assert (code, out) == (2, "")
        assert err.count("\n") == 1
        assert err == (
            f"error: {second}: job eval-collide already exists in namespace default with other inputs; "
            "render it with another --job-name, or delete that job first "
            "(cajajejo jobs delete eval-collide --namespace default)\n"
        )
    assert kube_standin.objects == before  # same uid, and the ConfigMap still holds the first config
    assert [r.method for r in kube_standin.requests[sent:]] == ["GET", "GET"]


def test_the_refusal_says_what_differs(in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path) -> None:
    specs = []
    for version in ("abc123", "def456"):  # the same inputs, rendered from two commits
        spec = tmp_path / f"{version}.yml"
        parsed = run_cli(
            "jobs", "evaluation", "parse-job", CONFIG, SPECS, spec, "--job-name", "eval-v", "--config-version", version
        )
        assert parsed.exit_code == 0, parsed.stderr
        specs.append(spec)
    assert _submit_spec(specs[0])[0] == 0
    code, _, err = _submit_spec(specs[1])
    assert code == 2
    assert "job eval-v already exists in namespace default with another commit; " in err


def test_a_job_that_cajajejo_did_not_make_is_left_alone(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path
) -> None:
    kube_standin.put({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "eval-x", "namespace": "default"}})
    before = copy.deepcopy(kube_standin.objects)
    code, _, err = _submit_spec(_spec(tmp_path / "spec.yml", "eval-x"))
    assert code == 2
    assert "job eval-x already exists in namespace default and was not made by cajajejo" in err
    assert "cajajejo jobs delete" not in err
    assert kube_standin.objects == before


def test_a_rival_that_takes_the_name_after_the_look_up_is_not_taken_over(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path
) -> None:
    rival = _job_document(_spec(tmp_path / "rival.yml", "eval-race", creator="Rival"))
    mine = _spec(tmp_path / "mine.yml", "eval-race")

    def rival_first(request: Request) -> None:
        # The rival's Job appears just before this submission first writes to that name.
        rival_missing = ("Job", "default", "eval-race") not in kube_standin.objects
        if rival_missing and request.method != "GET" and "/jobs" in request.path:
            kube_standin.put(rival, manager="cajajejo")

    kube_standin.on_request = rival_first
    code, _, err = _submit_spec(mine)
    kube_standin.on_request = None
    assert code == 2, err
    assert "job eval-race already exists" in err
    stored = kube_standin.objects[("Job", "default", "eval-race")]
    assert stored["metadata"]["annotations"] == rival["metadata"]["annotations"]  # type: ignore[index]
    assert ("ConfigMap", "default", "eval-race") not in kube_standin.objects
    assert _made(kube_standin.requests) == []


@pytest.fixture
def drawn_names(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The generated job names, in the order they will be drawn (the test fills the list)."""
    names: list[str] = []
    draws: Iterator[str] = iter(names)
    monkeypatch.setattr("cajajejo.render.plan.generate_job_name", lambda *_, **__: next(draws))
    return names


def _submit_config() -> tuple[int, str, str]:
    result = run_cli("jobs", "evaluation", "submit-job", "--path-to-config", CONFIG, "--path-to-helm-config", SPECS)
    return result.exit_code, result.stdout, result.stderr


def test_a_taken_generated_name_is_drawn_again_even_for_the_same_inputs(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, drawn_names: list[str]
) -> None:
    drawn_names += ["eval-pythia-taken", "eval-pythia-taken", "eval-pythia-free"]
    code, out, err = _submit_config()
    assert code == 0, err
    assert out.startswith("job eval-pythia-taken submitted")
    before = copy.deepcopy(kube_standin.objects[("ConfigMap", "default", "eval-pythia-taken")])

    code, out, err = _submit_config()  # the same inputs, but a name drawn now never means "that was me"
    assert code == 0, err
    assert out.startswith("job eval-pythia-free submitted")
    assert kube_standin.objects[("ConfigMap", "default", "eval-pythia-taken")] == before
    assert {name for kind, _, name in kube_standin.objects if kind == "Job"} == {
        "eval-pythia-taken",
        "eval-pythia-free",
    }


def test_it_gives_up_after_a_few_taken_generated_names(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, drawn_names: list[str]
) -> None:
    taken = ["eval-pythia-a", "eval-pythia-b", "eval-pythia-c"]
    for name in taken:
        kube_standin.put({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"}})
    drawn_names += [*taken, "eval-pythia-never-tried"]
    before = copy.deepcopy(kube_standin.objects)
    code, _, err = _submit_config()
    assert code == 1
    assert err == (
        "error: cannot submit: the generated job names eval-pythia-a, eval-pythia-b, eval-pythia-c are all taken "
        "in namespace default; submit again, or render with parse-job --job-name and submit that spec\n"
    )
    assert kube_standin.objects == before


# --- all or nothing --------------------------------------------------------------------------------


def test_a_configmap_refused_by_a_policy_leaves_no_job(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path
) -> None:
    denial = kube_standin.refuse("ConfigMap", "eval-refused", policy="deny-cm")
    code, _, err = _submit_spec(_spec(tmp_path / "spec.yml", "eval-refused"))
    assert code == 1
    assert err.count("\n") == 1
    # The server's words are cut to fit the line; what happened is kept whole, at its end.
    assert err.startswith(
        "error: cannot create ConfigMap eval-refused in namespace default: a policy of the cluster refused the "
        f"object: {denial[:100]}"
    )
    assert err.endswith("…; nothing was created (refused in the server's dry run)\n")
    assert len(err.rstrip("\n")) <= MAX_LINE
    assert kube_standin.objects == {}
    assert _made(kube_standin.requests) == []


@pytest.mark.parametrize("class_existed", [False, True])
def test_a_refusal_after_the_dry_run_deletes_what_this_submission_created(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path, class_existed: bool
) -> None:
    if class_existed:  # another job's scratch class: not this submission's to delete
        kube_standin.put(
            {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "ssd"}},
            manager="cajajejo",
        )
    before = copy.deepcopy(kube_standin.objects)
    kube_standin.refuse("ConfigMap", "eval-refused", in_dry_run=False)  # e.g. a webhook that skips dry runs
    code, _, err = _submit_spec(_spec(tmp_path / "spec.yml", "eval-refused"))
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("error: cannot create ConfigMap eval-refused in namespace default: a policy of the cluster")
    deleted = "Job eval-refused" if class_existed else "StorageClass ssd, Job eval-refused"
    assert err.endswith(f"; rolled back: deleted {deleted}\n")
    assert len(err.rstrip("\n")) <= MAX_LINE
    assert kube_standin.objects.keys() == before.keys()
    if class_existed:  # kept, not made again
        uid = kube_standin.objects[("StorageClass", None, "ssd")]["metadata"]["uid"]
        assert uid == before[("StorageClass", None, "ssd")]["metadata"]["uid"]
    deletes = [r for r in kube_standin.requests if r.method == "DELETE"]
    job_uid = json.loads(next(r.body for r in deletes if "/jobs/" in r.path))["preconditions"]["uid"]
    assert job_uid  # only the Job this submission created could have been deleted
    assert kube_standin.job_starts == []


def test_a_failed_resume_is_rolled_back(in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path) -> None:
    spec = _spec(tmp_path / "spec.yml", "eval-stuck")
    kube_standin.fail_next("PATCH", "/apis/batch/v1/namespaces/default/jobs/eval-stuck", 500, "InternalError", "etcd")
    code, _, err = _submit_spec(spec)
    assert code == 1
    assert err.startswith("error: cannot resume Job eval-stuck in namespace default: the API server answered 500")
    assert err.endswith("; rolled back: deleted ConfigMap eval-stuck, StorageClass ssd, Job eval-stuck\n")
    assert kube_standin.objects == {}


def test_a_missing_namespace_leaves_no_storage_class(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path
) -> None:
    code, _, err = _submit_spec(_spec(tmp_path / "spec.yml", "eval-lost", namespace="team-x"))
    assert code == 1
    assert 'namespaces "team-x" not found; nothing was created' in err
    assert kube_standin.objects == {}  # the example's StorageClass ssd included
    assert _made(kube_standin.requests) == []


def test_a_job_the_client_cannot_send_is_refused_before_any_request(kube_standin: KubernetesApiStandin) -> None:
    cluster = submission.connect(load_settings())
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "eval-new", "namespace": "default"}}
    with pytest.raises(ClusterError, match=r"^cannot send Job eval-new: the installed kubernetes client does not"):
        cluster.submit([{**job, "spec": {"aFieldFromTheFuture": 1}}])
    assert kube_standin.requests == []


# --- a ConfigMap of the job's name that is not the job's ---------------------------------------------

SHARED_CLASS = {  # the example's scratch class, as another tool made it
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {"name": "ssd"},
    "provisioner": "pd.csi.storage.gke.io",
    "volumeBindingMode": "WaitForFirstConsumer",
    "allowVolumeExpansion": True,
    "parameters": {"type": "pd-balanced"},
}


def _unrelated_configmap(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "billing"}},
        "data": {"settings.ini": "[billing]\nrate = 3\n"},
    }


def test_a_configmap_of_the_jobs_name_that_someone_else_made_is_neither_changed_nor_owned(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path
) -> None:
    kube_standin.put(_unrelated_configmap("eval-cm"))
    before = copy.deepcopy(kube_standin.objects)
    spec = _spec(tmp_path / "spec.yml", "eval-cm")
    for extra in (("--dry-run",), ()):
        code, out, err = _submit_spec(spec, *extra)
        assert (code, out) == (2, "")
        assert err == (
            f"error: {spec}: ConfigMap eval-cm already exists in namespace default and is not this job's; "
            "nothing was created; render it with another --job-name\n"
        )
    assert kube_standin.objects == before  # no ownerReference to a Job, no keys of ours merged in
    assert _made(kube_standin.requests) == []
    assert kube_standin.job_starts == []


def test_a_configmap_that_appears_after_the_dry_run_rolls_the_submission_back(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path
) -> None:
    rival = _unrelated_configmap("eval-cm")

    def rival_meanwhile(request: Request) -> None:
        creating_the_job = request.method == "POST" and request.path.endswith("/jobs") and "dryRun" not in request.query
        if creating_the_job and ("ConfigMap", "default", "eval-cm") not in kube_standin.objects:
            kube_standin.put(rival)

    kube_standin.on_request = rival_meanwhile
    spec = _spec(tmp_path / "spec.yml", "eval-cm")
    code, out, err = _submit_spec(spec)
    kube_standin.on_request = None
    assert (code, out) == (2, "")
    assert err == (
        f"error: {spec}: ConfigMap eval-cm already exists in namespace default and is not this job's; "
        "rolled back: deleted StorageClass ssd, Job eval-cm; render it with another --job-name\n"
    )
    assert list(kube_standin.objects) == [("ConfigMap", "default", "eval-cm")]
    assert kube_standin.objects[("ConfigMap", "default", "eval-cm")]["data"] == rival["data"]
    assert "ownerReferences" not in kube_standin.objects[("ConfigMap", "default", "eval-cm")]["metadata"]
    assert kube_standin.job_starts == []


def test_a_generated_name_whose_configmap_is_taken_is_drawn_again(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, drawn_names: list[str]
) -> None:
    kube_standin.put(_unrelated_configmap("eval-pythia-cm"))
    before = copy.deepcopy(kube_standin.objects)
    drawn_names += ["eval-pythia-cm", "eval-pythia-free"]
    code, out, err = _submit_config()
    assert code == 0, err
    assert out.startswith("job eval-pythia-free submitted")
    assert (
        kube_standin.objects[("ConfigMap", "default", "eval-pythia-cm")]
        == before[("ConfigMap", "default", "eval-pythia-cm")]
    )
    assert ("Job", "default", "eval-pythia-cm") not in kube_standin.objects


def test_the_standins_apply_merges_and_conflicts_as_the_api_server_does(kube_standin: KubernetesApiStandin) -> None:
    """What made applying the ConfigMap unsafe: an apply by another manager merges into the object."""
    from kubernetes.client import ApiException, CoreV1Api

    from cajajejo.backends.kubernetes import APPLY_PATCH, load_api_client

    kube_standin.put(_unrelated_configmap("shared"))
    core = CoreV1Api(load_api_client())
    owner = [{"apiVersion": "batch/v1", "kind": "Job", "name": "eval-x", "uid": "1234"}]
    mine: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "shared", "namespace": "default", "ownerReferences": owner},
        "data": {"eval.yml": "a: 1\n"},
    }

    def apply(body: dict[str, Any], **options: Any) -> int:
        _, status, _ = core.patch_namespaced_config_map_with_http_info(
            "shared", "default", body=body, field_manager="cajajejo", _content_type=APPLY_PATCH, **options
        )
        return int(status)

    assert apply(mine) == 200  # other keys: no conflict, merged, and now owned by the Job
    stored = kube_standin.objects[("ConfigMap", "default", "shared")]
    assert stored["data"] == {"settings.ini": "[billing]\nrate = 3\n", "eval.yml": "a: 1\n"}
    assert stored["metadata"]["ownerReferences"] == owner
    assert stored["metadata"]["labels"] == {"app": "billing"}
    taking = {**mine, "data": {"settings.ini": "mine"}}
    with pytest.raises(ApiException) as refused:  # a field kubectl owns, with another value
        apply(taking)
    assert refused.value.status == 409
    assert json.loads(refused.value.body or "{}")["message"].endswith('conflict with "kubectl": .data.settings.ini')
    assert apply(taking, force=True) == 200
    stored = kube_standin.objects[("ConfigMap", "default", "shared")]
    assert stored["data"] == {"settings.ini": "mine"}  # eval.yml, left out and cajajejo's alone, went
    assert kube_standin.owners[("ConfigMap", "default", "shared")][("data", "settings.ini")] == {"cajajejo"}


def test_a_storage_class_another_tool_made_alike_is_shared_and_never_deleted(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path
) -> None:
    kube_standin.put(SHARED_CLASS, manager="kubectl")
    before = copy.deepcopy(kube_standin.objects[("StorageClass", None, "ssd")])
    kube_standin.refuse("ConfigMap", "eval-shared", in_dry_run=False)  # fails after the class was applied
    code, _, err = _submit_spec(_spec(tmp_path / "spec.yml", "eval-shared"))
    assert code == 1
    assert err.endswith("; rolled back: deleted Job eval-shared\n")
    stored = kube_standin.objects[("StorageClass", None, "ssd")]
    assert stored["metadata"]["uid"] == before["metadata"]["uid"]
    assert {key: value for key, value in stored.items() if key != "metadata"} == {
        key: value for key, value in before.items() if key != "metadata"
    }
    # Applying the same values made the fields shared, not taken: kubectl still owns them.
    assert kube_standin.owners[("StorageClass", None, "ssd")][("parameters", "type")] == {"kubectl", "cajajejo"}
    assert list(kube_standin.objects) == [("StorageClass", None, "ssd")]


def test_a_storage_class_another_tool_made_otherwise_is_refused_in_the_dry_run(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path
) -> None:
    kube_standin.put({**SHARED_CLASS, "parameters": {"type": "pd-ssd"}}, manager="kubectl")
    before = copy.deepcopy(kube_standin.objects)
    code, _, err = _submit_spec(_spec(tmp_path / "spec.yml", "eval-other-class"))
    assert code == 1
    assert err.startswith("error: cannot apply StorageClass ssd: conflict: another manager owns these fields")
    assert 'conflict with "kubectl": .parameters.type; nothing was created (refused in the server\'s dry run)' in err
    assert kube_standin.objects == before
    assert _made(kube_standin.requests) == []


def test_jobs_delete_leaves_a_configmap_of_the_jobs_name_that_it_does_not_own(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path
) -> None:
    code, _, err = _submit_spec(_spec(tmp_path / "spec.yml", "eval-del"))
    assert code == 0, err
    del kube_standin.objects[("ConfigMap", "default", "eval-del")]
    kube_standin.put(_unrelated_configmap("eval-del"))
    deleted = run_cli("jobs", "delete", "eval-del", "--yes")
    assert deleted.exit_code == 0, deleted.stderr
    assert deleted.stdout.splitlines() == ["deleted Job eval-del"]
    assert ("Job", "default", "eval-del") not in kube_standin.objects
    assert kube_standin.objects[("ConfigMap", "default", "eval-del")]["data"] == _unrelated_configmap("x")["data"]


# --- a job an interruption left half-made -----------------------------------------------------------


def _half_made_spec(standin: KubernetesApiStandin, tmp_path: Path) -> Path:
    """A spec of job eval-half, submitted, then interrupted before its ConfigMap was made."""
    spec = _spec(tmp_path / "spec.yml", "eval-half")
    assert _submit_spec(spec)[0] == 0
    _interrupt(standin, "eval-half", before_configmap=True)
    return spec


def _interrupt(standin: KubernetesApiStandin, name: str, *, before_configmap: bool) -> None:
    """Leave job `name` as a SIGKILL between create and resume would have: suspended, and without its
    ConfigMap when the kill came before that was made."""
    job = standin.objects[("Job", "default", name)]
    job["spec"]["suspend"] = True
    job["status"] = {}
    if before_configmap:
        del standin.objects[("ConfigMap", "default", name)]
        del standin.owners[("ConfigMap", "default", name)]
    standin.job_starts.clear()


@pytest.mark.parametrize("before_configmap", [True, False])
def test_resubmitting_a_half_made_job_finishes_it(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path, before_configmap: bool
) -> None:
    spec = _spec(tmp_path / "spec.yml", "eval-half")
    assert _submit_spec(spec)[0] == 0
    whole = copy.deepcopy(kube_standin.objects)
    _interrupt(kube_standin, "eval-half", before_configmap=before_configmap)
    sent = len(kube_standin.requests)

    code, out, err = _submit_spec(spec)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"finished an interrupted submission of job eval-half: namespace default at {kube_standin.url}"
    made = ["Job eval-half", "StorageClass ssd"] + (["ConfigMap eval-half"] if before_configmap else [])
    assert lines[1 : 1 + len(made)] == [f"  {obj}" for obj in made]
    job = kube_standin.objects[("Job", "default", "eval-half")]
    assert job["metadata"]["uid"] == whole[("Job", "default", "eval-half")]["metadata"]["uid"]  # the same Job
    assert job["spec"]["suspend"] is False
    configmap = kube_standin.objects[("ConfigMap", "default", "eval-half")]
    assert configmap["data"] == whole[("ConfigMap", "default", "eval-half")]["data"]
    assert configmap["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    assert kube_standin.job_starts == [JobStart("eval-half", "default", missing_configmaps=())]
    assert [f"{r.method} {r.path.rsplit('/', 1)[-1]}" for r in _made(kube_standin.requests[sent:])] == [
        "PATCH ssd",
        *(["POST configmaps"] if before_configmap else []),
        "PATCH eval-half",
    ]

    code, out, err = _submit_spec(spec)  # now whole
    assert code == 0, err
    assert out.startswith("job eval-half already submitted (same inputs and commit): nothing changed")


def test_a_dry_run_of_a_half_made_job_says_so_and_changes_nothing(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path
) -> None:
    spec = _half_made_spec(kube_standin, tmp_path)
    before = copy.deepcopy(kube_standin.objects)
    sent = len(kube_standin.requests)
    code, out, err = _submit_spec(spec, "--dry-run")
    assert code == 0, err
    assert out.startswith(
        "job eval-half was left half-made by an interrupted submission; submitting it again finishes it "
        "(dry run, nothing changed)"
    )
    assert kube_standin.objects == before
    assert kube_standin.job_starts == []
    assert _made(kube_standin.requests[sent:]) == []


def test_a_half_made_job_whose_configmap_name_was_taken_meanwhile_is_refused(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path
) -> None:
    spec = _half_made_spec(kube_standin, tmp_path)
    kube_standin.put(_unrelated_configmap("eval-half"))
    before = copy.deepcopy(kube_standin.objects)
    sent = len(kube_standin.requests)
    code, out, err = _submit_spec(spec)
    assert (code, out) == (2, "")
    assert err == (
        f"error: {spec}: ConfigMap eval-half already exists in namespace default and is not this job's; "
        "cannot finish the interrupted submission of job eval-half; render it with another --job-name\n"
    )
    assert kube_standin.objects == before
    assert _made(kube_standin.requests[sent:]) == []


def test_a_half_made_job_of_a_generated_name_is_left_to_the_run_that_made_it(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, drawn_names: list[str]
) -> None:
    drawn_names += ["eval-pythia-half", "eval-pythia-half", "eval-pythia-next"]
    assert _submit_config()[0] == 0
    _interrupt(kube_standin, "eval-pythia-half", before_configmap=True)
    before = copy.deepcopy(kube_standin.objects)
    code, out, err = _submit_config()
    assert code == 0, err
    assert out.startswith("job eval-pythia-next submitted")
    half = ("Job", "default", "eval-pythia-half")
    assert kube_standin.objects[half] == before[half]  # still suspended: not this run's to finish
    assert ("ConfigMap", "default", "eval-pythia-half") not in kube_standin.objects


# --- SIGTERM ------------------------------------------------------------------------------------------


def test_sigterm_during_a_submission_rolls_it_back_like_ctrl_c(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin, tmp_path: Path
) -> None:
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # as in a shell; pytest leaves it so
    caught: list[bool] = []

    def terminate_while_the_configmap_is_made(request: Request) -> None:
        if request.method == "POST" and request.path.endswith("/configmaps") and "dryRun" not in request.query:
            # Left at its default, SIGTERM would end this test run: only send it when the submission catches it.
            caught.append(signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL)
            if caught[-1]:
                kube_standin.fail_next("POST", request.path, 503, "ServiceUnavailable", "never answered")
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)

    kube_standin.on_request = terminate_while_the_configmap_is_made
    code, _, err = _submit_spec(_spec(tmp_path / "spec.yml", "eval-term"))
    kube_standin.on_request = None
    assert caught == [True]
    assert code == 128 + signal.SIGTERM  # the shell's "terminated", as without the clean-up
    assert "cannot create" not in err  # not the failed request's error: the signal's
    assert kube_standin.objects == {}  # the suspended Job and the StorageClass it made are deleted again
    assert kube_standin.job_starts == []
    assert [r.method for r in kube_standin.requests if r.method == "DELETE"] == ["DELETE", "DELETE"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # given back after the submission


# --- what must keep holding ------------------------------------------------------------------------


def test_parallel_submissions_make_one_job_each_with_its_own_inputs(
    in_repo: git.Repo, kube_standin: KubernetesApiStandin
) -> None:
    root = Path(in_repo.working_tree_dir or "")
    configs = []
    for index in range(8):
        config = root / f"jobs/evaluation/parallel-{index}.job_config.yml"
        config.write_text(Path(CONFIG).read_text().replace("creator: Jasper", f"creator: person-{index}"))
        configs.append(config)
    in_repo.index.add([str(config) for config in configs])
    in_repo.index.commit("eight jobs")
    settings = load_settings()
    results: dict[int, submission.Submission] = {}
    errors: list[BaseException] = []

    def submit(index: int) -> None:
        try:
            results[index] = submission.submit_evaluation_job(configs[index], root / SPECS, settings=settings)
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(index,)) for index in range(len(configs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    names = {index: result.plan.job_name for index, result in results.items()}
    assert len(set(names.values())) == len(configs)
    for index, name in names.items():
        job = kube_standin.objects[("Job", "default", name)]
        configmap = kube_standin.objects[("ConfigMap", "default", name)]
        assert f"creator: person-{index}" in configmap["data"][EVAL_CONFIG_FILE]
        assert configmap["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
        assert job["metadata"]["annotations"]["cajajejo/config-version"] == in_repo.head.commit.hexsha
    assert sorted(kube_standin.job_starts, key=lambda s: s.name) == sorted(
        (JobStart(name, "default", ()) for name in names.values()), key=lambda s: s.name
    )
