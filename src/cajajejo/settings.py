"""User and organisation settings: registry, GCP project, cluster, namespace, and the like.

Nothing organisation-specific lives in code. Each setting is looked up in one documented order,
first hit wins:

1. a command-line option, where the command has one;
2. the environment: `CAJAJEJO_<NAME>` (and, for a few, the variable Google's tools already use);
3. the `[tool.cajajejo]` table of the nearest `pyproject.toml` at or above the working directory;
4. the built-in default, when there is one.

`cajajejo config show` prints the effective value of every setting and where it came from.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cajajejo.errors import CajajejoError, Problem, UserInputError

PYPROJECT = "pyproject.toml"
TABLE = "tool.cajajejo"
ENV_PREFIX = "CAJAJEJO_"


@dataclass(frozen=True)
class SettingSpec:
    name: str
    help: str
    default: str | None = None
    also_env: tuple[str, ...] = ()  # variables of other tools, read after CAJAJEJO_<NAME>

    @property
    def env_names(self) -> tuple[str, ...]:
        return (ENV_PREFIX + self.name.upper(), *self.also_env)


SPECS: tuple[SettingSpec, ...] = (
    SettingSpec("registry", "container registry for job images, e.g. europe-west4-docker.pkg.dev/my-project/jobs"),
    SettingSpec("gcp_project", "GCP project of the cluster and its logs", also_env=("GOOGLE_CLOUD_PROJECT",)),
    SettingSpec("gcp_region", "region (or zone) of the GKE cluster, e.g. europe-west4"),
    SettingSpec("gke_cluster", "name of the GKE cluster"),
    SettingSpec("kube_context", "kubeconfig context to submit to (default: the current context)"),
    SettingSpec("namespace", "namespace for jobs whose config names none", default="default"),
    SettingSpec("service_account", "Kubernetes service account for jobs whose config names none"),
    SettingSpec("slurm_host", "Slurm login node as [user@]host[:port] (SSH, keys from the agent); unset: this machine"),
    SettingSpec("slurm_workdir", "shared folder on the Slurm cluster for jobs whose config names no slurm.workdir"),
    SettingSpec("slurm_partition", "Slurm partition for jobs whose config names none"),
    SettingSpec("slurm_account", "Slurm account for jobs whose config names none"),
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}


@dataclass(frozen=True)
class Setting:
    name: str
    value: str | None
    source: str  # "--option", "env CAJAJEJO_X", "/path/pyproject.toml [tool.cajajejo]", "default", "unset"


class Settings:
    """The effective settings, each with the place its value came from."""

    def __init__(self, entries: Mapping[str, Setting]) -> None:
        self._entries = dict(entries)

    def get(self, name: str) -> str | None:
        return self._entries[name].value

    def require(self, name: str, needed_for: str) -> str:
        """The value of `name`, or a one-line error that says how to set it."""
        value = self._entries[name].value
        if value is None:
            spec = SPEC_BY_NAME[name]
            raise CajajejoError(
                f"setting '{name}' is needed to {needed_for}: set {spec.env_names[0]} or add "
                f'{name} = "..." to [{TABLE}] in {PYPROJECT} ({spec.help})'
            )
        return value

    def source_of(self, name: str) -> str:
        return self._entries[name].source


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above `start` that has a [tool.cajajejo] table, else None."""
    for folder in (start, *start.parents):
        candidate = folder / PYPROJECT
        if candidate.is_file() and _table(candidate) is not None:
            return candidate
    return None


def _table(path: Path) -> dict[str, object] | None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(Problem(str(path), f"cannot read settings: {exc}")) from None
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(Problem(str(path), f"not valid TOML: {exc}")) from None
    table = data.get("tool", {}).get("cajajejo")
    return table if isinstance(table, dict) else None


def _file_values(path: Path) -> dict[str, str]:
    table = _table(path) or {}
    values: dict[str, str] = {}
    problems: list[Problem] = []
    for key, value in table.items():
        if key not in SPEC_BY_NAME:
            known = ", ".join(SPEC_BY_NAME)
            problems.append(Problem(str(path), f"unknown setting; known settings are {known}", field=f"{TABLE}.{key}"))
        elif not isinstance(value, str) or not value.strip():
            problems.append(Problem(str(path), "must be a non-empty string", field=f"{TABLE}.{key}"))
        else:
            values[key] = value
    if problems:
        raise UserInputError(problems)
    return values


def load_settings(
    overrides: Mapping[str, str | None] | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every setting; `overrides` are command-line values (None: not given)."""
    environ = os.environ if environ is None else environ
    pyproject = find_pyproject((cwd or Path.cwd()).resolve())
    file_values = _file_values(pyproject) if pyproject else {}
    entries: dict[str, Setting] = {}
    for spec in SPECS:
        entries[spec.name] = _resolve(spec, (overrides or {}).get(spec.name), environ, file_values, pyproject)
    return Settings(entries)


def _resolve(
    spec: SettingSpec,
    override: str | None,
    environ: Mapping[str, str],
    file_values: Mapping[str, str],
    pyproject: Path | None,
) -> Setting:
    if override is not None:
        return Setting(spec.name, override, f"--{spec.name.replace('_', '-')}")
    for env_name in spec.env_names:
        value = environ.get(env_name, "").strip()
        if value:
            return Setting(spec.name, value, f"env {env_name}")
    if spec.name in file_values:
        return Setting(spec.name, file_values[spec.name], f"{pyproject} [{TABLE}]")
    if spec.default is not None:
        return Setting(spec.name, spec.default, "default")
    return Setting(spec.name, None, "unset")
