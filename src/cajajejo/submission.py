"""Submitting jobs of every kind, and job groups: git gate, render, optionally save the spec, send.

The `cajajejo jobs evaluation|training submit-job` and `cajajejo groups submit` commands and the
`invoke submit-evaluation-job`, `submit-training-job` and `submit-job-group` tasks call the functions
here, so the entry points cannot drift apart.

A job's name is never reused for other work. When a Job of the plan's name already exists, the
backend says whether it is this same submission (same inputs and provenance: nothing changes, unless
an interruption left it half-made, which is then finished) or not. If not, a name cajajejo generated
during this submission is drawn again (a few times at most); a name the user chose (with `parse-job
--job-name`, or fixed in a saved spec) is refused, since only the user can pick another. The same goes
for a ConfigMap (or a training job's Service) of the job's name that is not the job's own. A group's
name is always the user's (its header's, or `--group-name`), so a group whose Jobs' names are taken is
refused.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic

import yaml
from typing_extensions import TypeVar

from cajajejo.backends.kubernetes import (
    AppliedObject,
    ClusterError,
    ConfigMapTaken,
    JobNameTaken,
    KubernetesCluster,
    PlanPartlyGone,
    SubmitOutcome,
    load_api_client,
)
from cajajejo.config.group_loader import load_group
from cajajejo.config.loader import load_evaluation_config, load_training_config
from cajajejo.config.run_specs import load_run_specs
from cajajejo.config.source import read_text_file
from cajajejo.errors import Problem, UserInputError, one_line
from cajajejo.files import write_text_atomically
from cajajejo.provenance import provenance_for, repository_stamps
from cajajejo.render.evaluation import render_evaluation_plan
from cajajejo.render.group import GroupPlan, GroupProvenance, render_group_plan
from cajajejo.render.names import check_dns_label
from cajajejo.render.plan import (
    LABEL_PREFIX,
    Plan,
    Provenance,
    RenderOptions,
    manifest_problems,
)
from cajajejo.render.training import render_training_plan
from cajajejo.render.yaml_text import load_documents
from cajajejo.settings import Settings, load_settings

if TYPE_CHECKING:
    from cajajejo.backends.slurm_jobs import SlurmJobPlan

GENERATED_NAME_ATTEMPTS = 3  # two generated names rarely meet; a few fresh draws settle it


P = TypeVar("P", bound=Plan | GroupPlan, default=Plan)  # what was submitted: a job's plan, or a group's


@dataclass(frozen=True)
class Submission(Generic[P]):
    plan: P  # a job's, or a group's
    applied: tuple[AppliedObject, ...]
    server: str
    dry_run: bool
    warnings: tuple[Problem, ...] = ()
    already_submitted: bool = False  # the same job (same inputs and provenance) was there: nothing sent
    finished_interrupted: bool = False  # the same job was there half-made: this submission finished it


@dataclass(frozen=True)
class CheckedInputs:
    """A job's inputs, past the git gate and validated, with how to render them."""

    warnings: tuple[Problem, ...]
    provenance: Provenance
    options: RenderOptions
    renderer: Callable[[Provenance, RenderOptions], Plan]

    def render(self) -> Plan:
        """The job's plan; without a chosen name, each call draws a new generated one."""
        return self.renderer(self.provenance, self.options)


def check_inputs(
    config: Path,
    helm_config: Path | None = None,
    *,
    settings: Settings,
    kind: str = "evaluation",
    allow_dirty: bool = False,
    namespace: str | None = None,
    config_version: str | None = None,
) -> CheckedInputs:
    """Check the tree and load the inputs, stamped with the commit; `config_version` must match HEAD.

    An evaluation job has two inputs (the config and its HELM run specs); a training job has its config.
    """
    if (kind == "evaluation") != (helm_config is not None):
        raise ValueError(f"a {kind} job takes {'a' if kind == 'evaluation' else 'no'} HELM config")
    provenance = provenance_for(config, helm_config, allow_dirty=allow_dirty)
    _check_config_version(provenance.config_version, config_version)
    options = RenderOptions.from_settings(settings, namespace=namespace)
    if helm_config is None:
        training = load_training_config(config)
        return CheckedInputs(training.warnings, provenance, options, functools.partial(render_training_plan, training))
    evaluation = load_evaluation_config(config)
    renderer = functools.partial(render_evaluation_plan, evaluation, load_run_specs(helm_config))
    return CheckedInputs(evaluation.warnings, provenance, options, renderer)


def _check_config_version(checked_out: str, wanted: str | None) -> None:
    """`--config-version`, when given, must name the checked-out commit: it says which commit the user means."""
    if wanted is not None and not _same_commit(checked_out, wanted):
        raise UserInputError(
            Problem(
                "--config-version",
                f"{wanted!r} is not the checked-out commit {checked_out}; "
                "check out that commit or leave the option out",
            )
        )


def _same_commit(stamped: str, given: str) -> bool:
    """Whether `given` names the commit `stamped`: the same string, or a prefix of at least 7 characters."""
    return stamped == given or (len(given) >= 7 and stamped.startswith(given))


def load_job_spec(
    path: Path,
    *,
    config_version: str | None = None,
    namespace: str | None = None,
) -> Plan:
    """A job spec written by `parse-job`, checked again because it may have been edited since."""
    source = str(path)
    text = read_text_file(path)
    try:
        documents = [doc for doc in load_documents(text) if doc is not None]
    except yaml.YAMLError as exc:  # one line, with the position the parser gives
        raise UserInputError(Problem(source, f"not a YAML job spec: {one_line(exc)}")) from None
    jobs = [doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == "Job"]
    if len(jobs) != 1 or not isinstance(jobs[0].get("metadata"), dict):
        raise UserInputError(Problem(source, f"a job spec holds exactly one Job; this one holds {len(jobs)}"))
    job_name = str(jobs[0]["metadata"].get("name"))
    if namespace is not None:
        namespace = check_dns_label(namespace, "--namespace")
        documents = [_in_namespace(doc, namespace) for doc in documents]
    job_namespace = str(jobs[0]["metadata"].get("namespace", "default")) if namespace is None else namespace
    stamped = (jobs[0]["metadata"].get("annotations") or {}).get(f"{LABEL_PREFIX}/config-version")
    if config_version is not None and not _same_commit(str(stamped), config_version):
        raise UserInputError(
            Problem(source, f"was rendered from config version {stamped!r}, not {config_version!r}; render it again")
        )
    problems = manifest_problems(documents, job_names=[job_name], namespace=job_namespace)
    if problems:
        raise UserInputError([Problem(source, problem) for problem in problems])
    return Plan(job_name, job_namespace, tuple(documents))


def _in_namespace(document: Any, namespace: str) -> Any:
    if not isinstance(document, dict) or document.get("kind") not in ("Job", "ConfigMap", "Service"):
        return document
    return {**document, "metadata": {**document.get("metadata", {}), "namespace": namespace}}


def connect(settings: Settings) -> KubernetesCluster:
    """The cluster of the settings' kube context (default: the kubeconfig's current one)."""
    return KubernetesCluster(load_api_client(settings.get("kube_context")))


def submit_evaluation_job(config: Path, helm_config: Path, **options: Any) -> Submission[Plan]:
    """`submit_job` of an evaluation job: its config and HELM run specs."""
    return submit_job(config, helm_config, kind="evaluation", **options)


def submit_training_job(config: Path, **options: Any) -> Submission[Plan]:
    """`submit_job` of a training job: its config."""
    return submit_job(config, kind="training", **options)


def submit_job(
    config: Path,
    helm_config: Path | None = None,
    *,
    kind: str,
    spec_output_path: Path | None = None,
    allow_dirty: bool = False,
    namespace: str | None = None,
    dry_run: bool = False,
    config_version: str | None = None,
    settings: Settings | None = None,
) -> Submission[Plan]:
    """Git gate, render, save the spec when asked (before sending, so it exists even if sending fails), send.

    The job's name is generated here, so a name that turns out to be taken is drawn again.
    """
    settings = settings or load_settings()
    inputs = check_inputs(
        config,
        helm_config,
        settings=settings,
        kind=kind,
        allow_dirty=allow_dirty,
        namespace=namespace,
        config_version=config_version,
    )
    plan = inputs.render()  # before the cluster is reached: mistakes in the inputs come first
    cluster = connect(settings)
    taken: list[str] = []
    while True:
        if spec_output_path is not None:
            write_text_atomically(spec_output_path, plan.to_yaml())
        outcome = _unless_taken(cluster, plan, dry_run)
        if outcome is not None:
            return _submission(plan, outcome, cluster, dry_run, inputs.warnings)
        taken.append(plan.job_name)
        if len(taken) == GENERATED_NAME_ATTEMPTS:
            raise ClusterError(
                f"cannot submit: the generated job names {', '.join(taken)} are all taken in namespace "
                f"{plan.namespace}; submit again, or render with parse-job --job-name and submit that spec"
            )
        plan = inputs.render()


def _unless_taken(cluster: KubernetesCluster, plan: Plan, dry_run: bool) -> SubmitOutcome | None:
    """Submit a plan whose name was drawn just now; None when a Job or a ConfigMap holds that name. Even a
    Job with the same stamps counts as taken, half-made or not: a name drawn now was never used by this
    submission before, so finishing that Job is for the run that made it."""
    try:
        outcome = cluster.submit(plan.documents, dry_run=dry_run, finish_interrupted=False)
    except (JobNameTaken, ConfigMapTaken):
        return None
    return None if outcome.already_submitted else outcome


def submit_job_spec(
    spec_path: Path,
    *,
    config_version: str | None = None,
    namespace: str | None = None,
    dry_run: bool = False,
    settings: Settings | None = None,
) -> Submission[Plan]:
    """Send a saved spec. Its name was fixed when it was rendered, so a name taken by another job is refused."""
    settings = settings or load_settings()
    plan = load_job_spec(spec_path, config_version=config_version, namespace=namespace)
    cluster = connect(settings)
    try:
        outcome = cluster.submit(plan.documents, dry_run=dry_run)
    except (JobNameTaken, ConfigMapTaken) as taken:
        raise UserInputError(Problem(str(spec_path), f"{taken}; {_another_name(taken)}")) from None
    return _submission(plan, outcome, cluster, dry_run)


def submit_group(
    group_file: Path,
    *,
    spec_output_path: Path | None = None,
    allow_dirty: bool = False,
    namespace: str | None = None,
    dry_run: bool = False,
    config_version: str | None = None,
    group_name: str | None = None,
    settings: Settings | None = None,
) -> Submission[GroupPlan]:
    """Check the group and the git tree (every file the group names must be committed), render it stamped with
    the commit, save the spec when asked, and submit all its objects at once, all or nothing."""
    settings = settings or load_settings()
    group = load_group(group_file)
    version, repo_paths = repository_stamps([Path(path) for path in group.files], allow_dirty=allow_dirty)
    _check_config_version(version, config_version)
    provenance = GroupProvenance(version, {path: repo_paths[Path(path)] for path in group.files})
    options = RenderOptions.from_settings(settings, namespace=namespace)
    plan = render_group_plan(group, provenance, options, group_name=group_name)
    if spec_output_path is not None:
        write_text_atomically(spec_output_path, plan.to_yaml())
    cluster = connect(settings)
    # A claim the group only mounts must be there: the pods would wait for it, Pending, without an error.
    missing = cluster.missing("PersistentVolumeClaim", group.existing_volumes, plan.namespace)
    if missing:
        raise UserInputError(
            Problem(
                str(group_file),
                f"existing volume {', '.join(missing)} is not in namespace {plan.namespace}: make it first, or list "
                "it in the header's volumes so that the group makes it",
            )
        )
    try:
        outcome = cluster.submit(plan.documents, dry_run=dry_run)
    except (JobNameTaken, ConfigMapTaken, PlanPartlyGone) as taken:
        raise UserInputError(Problem(str(group_file), f"{taken}; {_group_advice(taken, plan)}")) from None
    return _submission(plan, outcome, cluster, dry_run, group.warnings)


def _group_advice(taken: JobNameTaken | ConfigMapTaken | PlanPartlyGone, plan: GroupPlan) -> str:
    """What to do when a group's names are taken: its name is always the user's choice."""
    if isinstance(taken, ConfigMapTaken) and taken.kind == "PersistentVolumeClaim":
        return "rename the volume in the group file, or name it in existing_volumes to mount it as it is"
    advice = "submit it under another name (--group-name)"
    if isinstance(taken, JobNameTaken) and not taken.made_by_cajajejo:
        return advice
    return f"{advice}, or delete group {plan.group_name} first (cajajejo groups delete {plan.group_name})"


def _another_name(taken: JobNameTaken | ConfigMapTaken) -> str:
    advice = "render it with another --job-name"
    if isinstance(taken, ConfigMapTaken):  # not cajajejo's: whether it may go is not ours to suggest
        return advice
    if taken.made_by_cajajejo:  # deleting is for the user to decide, and only for jobs cajajejo made
        advice += f", or delete that job first (cajajejo jobs delete {taken.name} --namespace {taken.namespace})"
    return advice


def _submission(
    plan: P,
    outcome: SubmitOutcome,
    cluster: KubernetesCluster,
    dry_run: bool,
    warnings: tuple[Problem, ...] = (),
) -> Submission[P]:
    return Submission(
        plan,
        outcome.objects,
        cluster.server,
        dry_run,
        warnings,
        outcome.already_submitted,
        outcome.finished_interrupted,
    )


def describe(submission: Submission[Any]) -> list[str]:
    """What to tell the user after a submission: what went where, and how to follow it."""
    plan = submission.plan
    where = f"namespace {plan.namespace} at {submission.server}"
    if submission.already_submitted:
        lines = [f"{plan.title} already submitted (same inputs and commit): nothing changed in {where}"]
    elif submission.finished_interrupted:
        if submission.dry_run:
            first = f"{plan.title} was left half-made by an interrupted submission; submitting it again "
            lines = [first + f"finishes it (dry run, nothing changed): {where}"]
        else:
            lines = [f"finished an interrupted submission of {plan.title}: {where}"]
        lines += [f"  {obj.kind} {obj.name}" for obj in submission.applied]
    else:
        verb = "validated by the cluster (dry run, nothing created)" if submission.dry_run else "submitted"
        lines = [f"{plan.title} {verb}: {where}"]
        lines += [f"  {obj.kind} {obj.name}" for obj in submission.applied]
    if not submission.dry_run or submission.already_submitted:
        lines += _how_to_follow(plan)
    return lines


def _how_to_follow(plan: Plan | GroupPlan) -> list[str]:
    if isinstance(plan, GroupPlan):
        name, status = plan.group_name, "cajajejo groups status"
        logs = [f"follow its logs:  cajajejo logs {name} --namespace {plan.namespace} --follow [--task TASK]"]
    else:
        name, status = plan.job_name, "cajajejo jobs status"
        logs = [f"follow its logs:  cajajejo logs {name} --namespace {plan.namespace} --follow"]
    logs.append(f"   or:            invoke get-job-logs {name}")
    return [*logs, f"see its state:    {status} {name} --namespace {plan.namespace}"]


def apply_volume(
    volume_file: Path,
    *,
    allow_dirty: bool = False,
    namespace: str | None = None,
    dry_run: bool = False,
    settings: Settings | None = None,
) -> list[str]:
    """`cajajejo volumes apply`: make the claim of a SkyPilot volume file from a clean tree, stamped with the
    commit; applying it again changes nothing. Returns what to tell the user."""
    from cajajejo.config.group_loader import load_volume_file
    from cajajejo.render.volume import render_volume_plan

    settings = settings or load_settings()
    volume = load_volume_file(volume_file)
    if volume.use_existing:
        raise UserInputError(
            Problem(str(volume_file), "use_existing: true names a claim made elsewhere; there is nothing to make")
        )
    version, repo_paths = repository_stamps([volume_file], allow_dirty=allow_dirty)
    options = RenderOptions.from_settings(settings, namespace=namespace)
    text = read_text_file(volume_file)
    plan = render_volume_plan(volume, text, Provenance(version, repo_paths[volume_file]), options)
    cluster = connect(settings)
    applied, existing = cluster.apply_volume(plan.document, dry_run=dry_run)
    where = f"namespace {plan.namespace} at {cluster.server}"
    if existing is None:
        verb = "validated by the cluster (dry run, nothing created)" if dry_run else "made"
        return [f"volume {applied.name} {verb}: {where}"]
    size = existing.spec.resources.requests.get("storage") if existing.spec and existing.spec.resources else None
    lines = [f"volume {applied.name} exists already (made by volumes apply): nothing changed in {where}"]
    if size != volume.size:
        lines.append(
            f"  it holds {size}, not the {volume.size} the file asks for; a claim's size is changed by its owner"
        )
    return lines


def slurm_job_plan(
    config: Path,
    helm_config: Path | None,
    *,
    kind: str,
    provenance: Provenance,
    settings: Settings,
    workdir: str | None = None,
    job_name: str | None = None,
) -> SlurmJobPlan:
    """A job config (and an evaluation's HELM run specs) as a Slurm job: its files and its batch script.
    The config's `slurm` section decides; what it leaves open comes from the slurm_* settings."""
    from cajajejo.backends.slurm_jobs import plan_slurm_job
    from cajajejo.config.slurm import SlurmSettings
    from cajajejo.render.names import generate_job_name

    loaded = load_training_config(config) if kind == "training" else load_evaluation_config(config)
    run_specs = None
    if helm_config is not None:
        load_run_specs(helm_config)
        run_specs = read_text_file(helm_config)
    section = loaded.config.slurm or SlurmSettings()
    resolved = section.with_defaults(settings, workdir=workdir, source=str(config))
    return plan_slurm_job(
        loaded.config,
        loaded.text,
        resolved,
        kind=kind,
        job_name=job_name or generate_job_name(kind=kind),
        provenance=provenance,
        run_specs_text=run_specs,
        source=str(config),
    )


def submit_to_slurm(
    config: Path,
    helm_config: Path | None,
    *,
    kind: str,
    allow_dirty: bool = False,
    dry_run: bool = False,
    config_version: str | None = None,
    workdir: str | None = None,
    job_name: str | None = None,
    slurm_host: str | None = None,
    settings: Settings | None = None,
) -> list[str]:
    """`submit-job --backend slurm`: the same git gate and stamps as on Kubernetes, then the job's files
    into the Slurm workdir, `sbatch --test-only`, sbatch. Returns what to tell the user."""
    from cajajejo.backends.hosts import connect_host
    from cajajejo.backends.slurm import slurm_on
    from cajajejo.backends.slurm_jobs import submit_slurm_job

    settings = settings or load_settings()
    provenance = provenance_for(config, helm_config, allow_dirty=allow_dirty)
    _check_config_version(provenance.config_version, config_version)
    plan = slurm_job_plan(
        config, helm_config, kind=kind, provenance=provenance, settings=settings, workdir=workdir, job_name=job_name
    )
    host = connect_host(slurm_host or settings.get("slurm_host"))
    try:
        job_id = submit_slurm_job(plan, slurm_on(host), dry_run=dry_run)
    finally:
        host.close()
    where = f"Slurm on {host.name}"
    if job_id is None:
        return [f"{plan.title} checked by {where} (sbatch --test-only; nothing written, nothing queued)"]
    backend = " --backend slurm" + (f" --slurm-host {slurm_host}" if slurm_host else "")
    return [
        f"{plan.title} submitted to {where}: job {job_id}",
        f"  its files:       {plan.workdir}/jobs/{plan.job_name}/",
        f"follow its logs:  cajajejo logs {job_id}{backend} --follow",
        f"see its state:    cajajejo jobs status {job_id}{backend}",
    ]
