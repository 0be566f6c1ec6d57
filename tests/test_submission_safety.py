"""A submission never changes a job that is not its own, and never leaves half a job behind.

Against the Kubernetes API stand-in, through the official client: name collisions (a saved spec's
name, a generated name, a rival that takes the name between look-up and create), refusals in the
server's dry run, failures after objects were made (rolled back), and parallel submissions.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import git
import pytest
import yaml

from cajajejo import submission
from cajajejo.backends.kubernetes import ClusterError
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
    monkeypatch.setattr("cajajejo.render.plan.generate_job_name", lambda *_: next(draws))
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
    assert err == (
        "error: cannot apply ConfigMap eval-refused in namespace default: a policy of the cluster refused the "
        f"object: {denial}; nothing was created (refused in the server's dry run)\n"
    )
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
    assert err.startswith("error: cannot apply ConfigMap eval-refused in namespace default: a policy of the cluster")
    deleted = "Job eval-refused" if class_existed else "StorageClass ssd, Job eval-refused"
    assert err.endswith(f"; rolled back: deleted {deleted}\n")
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
