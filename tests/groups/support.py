"""Helpers for the job group tests: writing group files, reading rendered plans."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml

from cajajejo.config.group_loader import load_group
from cajajejo.render.group import GroupPlan, GroupProvenance, render_group_plan
from cajajejo.render.plan import RenderOptions
from tests.support import REPO

GROUPS = REPO / "jobs" / "groups"
TRAIN_EVAL, DEBUG, RL = (
    GROUPS / f"{name}.group.yml" for name in ("train-eval", "train-eval.debug", "rl-post-training")
)
SHA = "10abfb1bf8a0fd1ff65751521daaa0cd76fbc85d"


def render(path: Path, **options: Any) -> GroupPlan:
    group = load_group(path)
    provenance = GroupProvenance.from_group_path(group, SHA, f"jobs/groups/{path.name}")
    group_name = options.pop("group_name", None)
    options.setdefault("rng", random.Random(0))
    return render_group_plan(group, provenance, RenderOptions(**options), group_name=group_name)


def write_group(folder: Path, *documents: dict[str, Any] | str, name: str = "g.group.yml") -> Path:
    """A group file of these documents (mappings, or YAML text as it is)."""
    texts = [doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False) for doc in documents]
    path = folder / name
    path.write_text("".join(f"---\n{text}" for text in texts))
    return path


def header(name: str = "g", **fields: Any) -> dict[str, Any]:
    return {"name": name, "execution": "parallel", **fields}


def command(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "registry.example.com/team/task:1", "run": "echo hello", **fields}


def objects(plan: GroupPlan, kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in plan.documents if doc["kind"] == kind}


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def container(job: dict[str, Any]) -> dict[str, Any]:
    return pod_spec(job)["containers"][0]  # type: ignore[no-any-return]


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(job)["env"]}
