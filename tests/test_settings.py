"""Settings: one precedence (option > environment > pyproject.toml > default), and where each came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from cajajejo.errors import CajajejoError, UserInputError
from cajajejo.settings import load_settings
from tests.support import run_cli

PYPROJECT = """
[project]
name = "team-jobs"

[tool.cajajejo]
registry = "europe-west4-docker.pkg.dev/team-project/jobs"
gcp_project = "team-project"
namespace = "team-a"
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "jobs" / "evaluation").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "jobs" / "evaluation")  # found by walking up
    return tmp_path


def test_each_source_in_order(project: Path) -> None:
    settings = load_settings(
        {"namespace": "from-option"},
        environ={"CAJAJEJO_GCP_PROJECT": "from-env", "GOOGLE_CLOUD_PROJECT": "google-env"},
    )
    assert (settings.get("namespace"), settings.source_of("namespace")) == ("from-option", "--namespace")
    assert (settings.get("gcp_project"), settings.source_of("gcp_project")) == ("from-env", "env CAJAJEJO_GCP_PROJECT")
    assert settings.get("registry") == "europe-west4-docker.pkg.dev/team-project/jobs"
    assert settings.source_of("registry") == f"{project / 'pyproject.toml'} [tool.cajajejo]"
    assert (settings.get("gke_cluster"), settings.source_of("gke_cluster")) == (None, "unset")


def test_google_cloud_project_is_a_fallback(tmp_path: Path) -> None:
    settings = load_settings(cwd=tmp_path, environ={"GOOGLE_CLOUD_PROJECT": "g"})
    assert (settings.get("gcp_project"), settings.source_of("gcp_project")) == ("g", "env GOOGLE_CLOUD_PROJECT")


def test_defaults_apply_without_a_settings_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    settings = load_settings(cwd=tmp_path, environ={})
    assert (settings.get("namespace"), settings.source_of("namespace")) == ("default", "default")


def test_a_missing_setting_is_one_line_naming_it(tmp_path: Path) -> None:
    settings = load_settings(cwd=tmp_path, environ={})
    with pytest.raises(CajajejoError) as caught:
        settings.require("registry", "push an image")
    message = str(caught.value)
    assert message.startswith("setting 'registry' is needed to push an image: set CAJAJEJO_REGISTRY or add")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('regsitry = "x"', "tool.cajajejo.regsitry: unknown setting"),
        ("namespace = 3", "tool.cajajejo.namespace: must be a non-empty string"),
        ('namespace = "  "', "tool.cajajejo.namespace: must be a non-empty string"),
    ],
)
def test_bad_settings_are_user_errors(tmp_path: Path, table: str, expected: str) -> None:
    (tmp_path / "pyproject.toml").write_text(f"[tool.cajajejo]\n{table}\n")
    with pytest.raises(UserInputError, match=expected):
        load_settings(cwd=tmp_path, environ={})


def test_broken_toml_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.cajajejo\n")
    with pytest.raises(UserInputError, match="not valid TOML"):
        load_settings(cwd=tmp_path, environ={})


def test_config_show_prints_values_and_sources(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAJAJEJO_GKE_CLUSTER", "gke-eval")
    result = run_cli("config", "show")
    assert result.exit_code == 0, result.stderr
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in result.stdout.splitlines()}
    assert rows["gke_cluster"] == ["gke-eval", "env CAJAJEJO_GKE_CLUSTER"]
    assert rows["namespace"] == ["team-a", f"{project / 'pyproject.toml'} [tool.cajajejo]"]
    assert rows["service_account"] == ["(unset)", "unset"]


def test_settings_shape_rendered_jobs(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support import DEBUG_EXAMPLE, DEBUG_RUN_SPECS

    monkeypatch.setenv("CAJAJEJO_SERVICE_ACCOUNT", "eval-runner")
    result = run_cli("jobs", "evaluation", "parse-job", DEBUG_EXAMPLE, DEBUG_RUN_SPECS, "-", "--job-name", "eval-x")
    assert result.exit_code == 0, result.stderr
    assert "  namespace: team-a\n" in result.stdout
    assert "serviceAccountName: eval-runner" in result.stdout
