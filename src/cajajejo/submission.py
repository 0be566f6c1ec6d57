"""Submitting evaluation jobs: git gate, render, optionally save the spec, apply to the cluster.

Both the `cajajejo jobs evaluation submit-job` command and `invoke submit-evaluation-job` call the
functions here, so the two entry points cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cajajejo.backends.kubernetes import AppliedObject, KubernetesCluster, load_api_client
from cajajejo.config.loader import load_evaluation_config
from cajajejo.config.run_specs import load_run_specs
from cajajejo.config.source import read_text_file
from cajajejo.errors import Problem, UserInputError, one_line
from cajajejo.files import write_text_atomically
from cajajejo.provenance import provenance_for
from cajajejo.render.names import check_dns_label
from cajajejo.render.plan import LABEL_PREFIX, Plan, RenderOptions, manifest_problems, render_evaluation_plan
from cajajejo.render.yaml_text import load_documents
from cajajejo.settings import Settings, load_settings


@dataclass(frozen=True)
class Submission:
    plan: Plan
    applied: tuple[AppliedObject, ...]
    server: str
    dry_run: bool
    warnings: tuple[Problem, ...] = ()


def render_for_submission(
    config: Path,
    helm_config: Path,
    *,
    settings: Settings,
    allow_dirty: bool = False,
    namespace: str | None = None,
    config_version: str | None = None,
) -> tuple[Plan, tuple[Problem, ...]]:
    """Check the tree, then render the job stamped with its commit; `config_version` must match HEAD."""
    provenance = provenance_for(config, helm_config, allow_dirty=allow_dirty)
    if config_version is not None and not _same_commit(provenance.config_version, config_version):
        raise UserInputError(
            Problem(
                "--config-version",
                f"{config_version!r} is not the checked-out commit {provenance.config_version}; "
                "check out that commit or leave the option out",
            )
        )
    loaded = load_evaluation_config(config)
    plan = render_evaluation_plan(
        loaded,
        load_run_specs(helm_config),
        provenance,
        render_options(settings, namespace=namespace),
    )
    return plan, loaded.warnings


def render_options(settings: Settings, **options: Any) -> RenderOptions:
    """RenderOptions whose defaults for configs that name no namespace or service account come from settings."""
    return RenderOptions(
        default_namespace=settings.get("namespace") or "default",
        default_service_account=settings.get("service_account"),
        **options,
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
    problems = manifest_problems(documents, job_name=job_name, namespace=job_namespace)
    if problems:
        raise UserInputError([Problem(source, problem) for problem in problems])
    return Plan(job_name, job_namespace, tuple(documents))


def _in_namespace(document: Any, namespace: str) -> Any:
    if not isinstance(document, dict) or document.get("kind") not in ("Job", "ConfigMap"):
        return document
    return {**document, "metadata": {**document.get("metadata", {}), "namespace": namespace}}


def apply(plan: Plan, *, settings: Settings, dry_run: bool = False) -> tuple[tuple[AppliedObject, ...], str]:
    cluster = KubernetesCluster(load_api_client(settings.get("kube_context")))
    return tuple(cluster.apply_plan(plan.documents, dry_run=dry_run)), cluster.server


def submit_evaluation_job(
    config: Path,
    helm_config: Path,
    *,
    spec_output_path: Path | None = None,
    allow_dirty: bool = False,
    namespace: str | None = None,
    dry_run: bool = False,
    config_version: str | None = None,
    settings: Settings | None = None,
) -> Submission:
    """Git gate, render, save the spec when asked (before sending, so it exists even if sending fails), apply."""
    settings = settings or load_settings()
    plan, warnings = render_for_submission(
        config,
        helm_config,
        settings=settings,
        allow_dirty=allow_dirty,
        namespace=namespace,
        config_version=config_version,
    )
    if spec_output_path is not None:
        write_text_atomically(spec_output_path, plan.to_yaml())
    applied, server = apply(plan, settings=settings, dry_run=dry_run)
    return Submission(plan, applied, server, dry_run, warnings)


def submit_job_spec(
    spec_path: Path,
    *,
    config_version: str | None = None,
    namespace: str | None = None,
    dry_run: bool = False,
    settings: Settings | None = None,
) -> Submission:
    settings = settings or load_settings()
    plan = load_job_spec(spec_path, config_version=config_version, namespace=namespace)
    applied, server = apply(plan, settings=settings, dry_run=dry_run)
    return Submission(plan, applied, server, dry_run)


def describe(submission: Submission) -> list[str]:
    """What to tell the user after a submission: what went where, and how to follow it."""
    plan = submission.plan
    verb = "validated by the cluster (dry run, nothing created)" if submission.dry_run else "submitted"
    lines = [f"job {plan.job_name} {verb}: namespace {plan.namespace} at {submission.server}"]
    lines += [f"  {obj.kind} {obj.name}" for obj in submission.applied]
    if not submission.dry_run:
        lines.append(f"follow its logs:  cajajejo logs {plan.job_name} --namespace {plan.namespace} --follow")
        lines.append(f"   or:            invoke get-job-logs {plan.job_name}")
        lines.append(f"see its state:    cajajejo jobs status {plan.job_name} --namespace {plan.namespace}")
    return lines
