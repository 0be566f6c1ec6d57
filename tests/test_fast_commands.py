"""Rendering and validating stay light: none of the heavy runtime libraries is imported."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest

from cajajejo.config.loader import load_evaluation_config
from cajajejo.config.run_specs import load_run_specs
from cajajejo.render.environment import template_environment
from cajajejo.render.evaluation import ENTRY_TEMPLATE, render_evaluation_plan
from cajajejo.render.plan import RenderOptions
from tests.support import DEBUG_EXAMPLE, DEBUG_RUN_SPECS, MLFLOW_EXAMPLE, REPO, RUN_SPECS

HEAVY = ("mlflow", "google.cloud", "kubernetes", "torch", "helm", "transformers", "git")

PROBE = """
import json, sys
from cajajejo.cli import cli
try:
    cli.main(args=sys.argv[1:], standalone_mode=False)
finally:
    print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _modules_after(*args: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True)
    return list(json.loads(result.stderr.strip().splitlines()[-1]))


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def test_parse_job_imports_no_heavy_library() -> None:
    modules = _modules_after("jobs", "evaluation", "parse-job", str(MLFLOW_EXAMPLE), str(RUN_SPECS), "-")
    assert "cajajejo.render.plan" in modules  # the probe really rendered
    assert _heavy(modules) == []


def test_training_commands_import_no_heavy_library() -> None:
    config = str(REPO / "jobs" / "training" / "example.job_config.yml")
    modules = _modules_after("jobs", "training", "parse-job", config, "-")
    assert "cajajejo.render.training" in modules  # the probe really rendered
    validated = _modules_after("jobs", "training", "validate-config", config)
    assert _heavy(modules + validated) == []
    assert [m for m in modules + validated if m.split(".")[0] in REPLACED] == []


def test_group_commands_import_no_heavy_library() -> None:
    group = str(REPO / "jobs" / "groups" / "train-eval.group.yml")
    modules = _modules_after("groups", "parse", group, "-")
    assert "cajajejo.render.group" in modules  # the probe really rendered
    validated = _modules_after("groups", "validate", group)
    assert "cajajejo.config.group_loader" in validated
    assert _heavy(modules + validated) == []
    assert [m for m in modules + validated if m.split(".")[0] in REPLACED] == []


def test_validate_config_imports_no_heavy_library() -> None:
    modules = _modules_after("jobs", "evaluation", "validate-config", str(MLFLOW_EXAMPLE))
    assert "cajajejo.config.evaluation" in modules
    assert _heavy(modules) == []


# Libraries that rendering and validating used to import and no longer need: the schema check, the
# HOCON fast path and the name generator do their work without them.
REPLACED = ("jsonschema", "referencing", "pyhocon", "pyparsing", "coolname")


def test_rendering_imports_none_of_the_replaced_libraries() -> None:
    modules = _modules_after("jobs", "evaluation", "parse-job", str(MLFLOW_EXAMPLE), str(RUN_SPECS), "-")
    validated = _modules_after(
        "jobs", "evaluation", "validate-config", str(MLFLOW_EXAMPLE), "--helm-config", str(RUN_SPECS)
    )
    assert [m for m in modules + validated if m.split(".")[0] in REPLACED] == []


def test_the_command_skips_pydantics_plugin_scan() -> None:
    probe = "import os, sys\nfrom cajajejo.cli import main\nsys.argv[1:] = ['--version']\ntry:\n    main()\nfinally:\n"
    probe += "    print(repr(os.environ.get('PYDANTIC_DISABLE_PLUGINS')), file=sys.stderr)"
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=False)
    assert result.stderr.strip().splitlines()[-1] == "'__all__'"
    env["PYDANTIC_DISABLE_PLUGINS"] = ""  # the user's choice stands
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=False)
    assert result.stderr.strip().splitlines()[-1] == "''"


# --- Compiled templates are kept in the cache folder, and an edited template is compiled again ----------


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    template_environment.cache_clear()
    yield tmp_path / "cache" / "cajajejo"
    template_environment.cache_clear()


def _fresh_environment(template_dir: Path | None = None) -> jinja2.Environment:
    """The environment a new process would get, with compiling made visible."""
    template_environment.cache_clear()
    env = template_environment(template_dir)
    env.compiled = []  # type: ignore[attr-defined]
    real_compile = env.compile

    def compile_and_note(source: Any, name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        env.compiled.append(name)  # type: ignore[attr-defined]
        return real_compile(source, name, *args, **kwargs)

    env.compile = compile_and_note  # type: ignore[method-assign]
    return env


def _render_debug_example() -> str:
    options = RenderOptions(rng=random.Random(0))
    return render_evaluation_plan(
        load_evaluation_config(DEBUG_EXAMPLE), load_run_specs(DEBUG_RUN_SPECS), options=options
    ).to_yaml()


def test_templates_are_compiled_once_then_loaded(cache_home: Path) -> None:
    env = _fresh_environment()
    first = _render_debug_example()
    assert ENTRY_TEMPLATE in env.compiled  # type: ignore[attr-defined]
    assert any(p.name.startswith("jinja-") for p in cache_home.iterdir())
    env = _fresh_environment()
    assert _render_debug_example() == first
    assert env.compiled == []  # type: ignore[attr-defined]


def test_an_edited_user_template_is_compiled_again(cache_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "note.j2").write_text("first version\n")
    assert _fresh_environment(folder).get_template("note.j2").render() == "first version\n"
    env = _fresh_environment(folder)
    assert env.get_template("note.j2").render() == "first version\n"
    assert env.compiled == []  # type: ignore[attr-defined]
    (folder / "note.j2").write_text("second version\n")
    env = _fresh_environment(folder)
    assert env.get_template("note.j2").render() == "second version\n"
    assert env.compiled == ["note.j2"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("damage", ["cut short", "sound entry, broken code"])
def test_a_damaged_bytecode_entry_is_compiled_again(cache_home: Path, damage: str) -> None:
    from jinja2.bccache import bc_magic

    from cajajejo.cache import write_entry

    _fresh_environment().get_template(ENTRY_TEMPLATE)
    for entry in cache_home.iterdir():
        if damage == "cut short":
            entry.write_bytes(entry.read_bytes()[:-20])
        else:  # right header, then something that is not a pickled checksum
            assert write_entry(entry.name, bc_magic + b"\x80\x05not a pickle")
    env = _fresh_environment()
    assert env.get_template(ENTRY_TEMPLATE)
    assert ENTRY_TEMPLATE in env.compiled  # type: ignore[attr-defined]


def test_bytecode_entries_depend_on_the_settings_that_shape_the_code(cache_home: Path) -> None:
    from cajajejo.render.environment import _code_generation_fingerprint

    env = _fresh_environment()
    fingerprint = _code_generation_fingerprint(env)
    env.trim_blocks = True
    assert _code_generation_fingerprint(env) != fingerprint
