"""The command line as users meet it: exit codes, one-line errors, nothing half-written."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from tests.support import (
    DEBUG_EXAMPLE,
    DEBUG_RUN_SPECS,
    GCS_EXAMPLE,
    MLFLOW_EXAMPLE,
    RUN_SPECS,
    run_cli,
    run_cli_process,
)

PARSE_JOB = ("jobs", "evaluation", "parse-job")


@pytest.mark.parametrize(
    ("config", "run_specs"), [(MLFLOW_EXAMPLE, RUN_SPECS), (GCS_EXAMPLE, RUN_SPECS), (DEBUG_EXAMPLE, DEBUG_RUN_SPECS)]
)
def test_parse_job_writes_a_valid_multi_document_file(tmp_path: Path, config: Path, run_specs: Path) -> None:
    output = tmp_path / "out" / "job.yml"
    result = run_cli(*PARSE_JOB, config, run_specs, output)
    assert result.exit_code == 0, result.stderr
    documents = list(yaml.safe_load_all(output.read_text()))
    assert [d["kind"] for d in documents][:2] == ["Job", "ConfigMap"]
    assert f"job {documents[0]['metadata']['name']}" in result.stderr
    assert [p.name for p in output.parent.iterdir()] == ["job.yml"]  # no temporary file left behind


def test_parse_job_to_stdout_with_pinned_name_is_repeatable() -> None:
    first = run_cli(*PARSE_JOB, DEBUG_EXAMPLE, DEBUG_RUN_SPECS, "-", "--seed", "3")
    second = run_cli(*PARSE_JOB, DEBUG_EXAMPLE, DEBUG_RUN_SPECS, "-", "--seed", "3")
    assert first.exit_code == 0
    assert first.stdout == second.stdout
    assert first.stdout.startswith("# Rendered by cajajejo")


def test_parse_job_stamps_what_it_is_given() -> None:
    result = run_cli(
        *PARSE_JOB, DEBUG_EXAMPLE, DEBUG_RUN_SPECS, "-",
        "--job-name", "eval-stamped",
        "--config-version", "0123456789abcdef0123456789abcdef01234567",
        "--config-path-in-repo", "jobs/evaluation/debug.job_config.yml",
    )  # fmt: skip
    job = next(yaml.safe_load_all(result.stdout))
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CONFIG_VERSION"] == "0123456789abcdef0123456789abcdef01234567"
    assert env["CONFIG_PATH_GIT_REPO"] == "jobs/evaluation/debug.job_config.yml"
    assert env["HELM_CONFIG_PATH_GIT_REPO"] == "unknown"
    assert job["metadata"]["labels"]["cajajejo/config-version"] == "0123456789ab"


@pytest.mark.parametrize(
    ("mangle", "expected"),
    [
        (
            lambda t: t.replace("memory: 4Gi", "memory: 4 GB"),
            "compute_config.memory: '4 GB' is not a Kubernetes quantity",
        ),
        (lambda t: t + "extra_field: 1\n", "extra_field: unknown field"),
        (lambda t: "", "is empty"),
        (lambda t: "version: [v4\nimage: x\n", "not valid YAML"),
        (lambda t: t.replace("experiment_name: debug", "experiment_name: [1, 2]"), "Input should be a valid string"),
    ],
)
def test_bad_config_exits_2_with_one_line_and_writes_nothing(tmp_path: Path, mangle, expected: str) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "job.yml"
    config.write_text(mangle(DEBUG_EXAMPLE.read_text()))
    output = tmp_path / "job.k8s.yml"
    result = run_cli(*PARSE_JOB, config, DEBUG_RUN_SPECS, output)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {config}")
    assert expected in line
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.yml"]


def test_a_failed_render_leaves_an_existing_output_untouched(tmp_path: Path) -> None:
    output = tmp_path / "job.k8s.yml"
    output.write_text("previous render\n")
    result = run_cli(*PARSE_JOB, DEBUG_EXAMPLE, DEBUG_RUN_SPECS, output, "--job-name", "Not_Valid")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: --job-name: 'Not_Valid' must be lower-case letters, digits and '-',"
        " starting and ending with a letter or digit"
    ]
    assert output.read_text() == "previous render\n"
    assert [p.name for p in tmp_path.iterdir()] == ["job.k8s.yml"]


def test_a_directory_as_input_or_output(tmp_path: Path) -> None:
    result = run_cli(*PARSE_JOB, tmp_path, DEBUG_RUN_SPECS, tmp_path / "o.yml")
    assert (result.exit_code, result.stderr) == (2, f"error: {tmp_path}: is a directory; pass the path of a file\n")
    result = run_cli(*PARSE_JOB, DEBUG_EXAMPLE, DEBUG_RUN_SPECS, tmp_path)
    assert result.exit_code == 1
    assert "is a directory; give a file name for the output" in result.stderr


def test_a_broken_template_override_is_reported_as_a_bug_with_exit_1(tmp_path: Path) -> None:
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "configmap.yaml.j2").write_text("kind: ConfigMap\nmetadata: {name: {{ job.name }}}\n")
    result = run_cli(*PARSE_JOB, DEBUG_EXAMPLE, DEBUG_RUN_SPECS, tmp_path / "o.yml", "--template-dir", tmp_path)
    assert result.exit_code == 1
    assert "without the `yaml` filter" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o.yml").exists()


def test_validate_config() -> None:
    result = run_cli("jobs", "evaluation", "validate-config", GCS_EXAMPLE, "--helm-config", RUN_SPECS)
    assert result.exit_code == 0
    assert "valid evaluation job config" in result.stdout


def test_latest_tag_is_a_warning_not_an_error(tmp_path: Path) -> None:
    config = tmp_path / "job.yml"
    config.write_text(DEBUG_EXAMPLE.read_text().replace("image_tag: debug", "image_tag: latest"))
    result = run_cli("jobs", "evaluation", "validate-config", config)
    assert result.exit_code == 0
    assert result.stderr.startswith(f"warning: {config}:")
    assert "pin the image to the commit tag" in result.stderr


@pytest.mark.parametrize(
    "command",
    [(), ("jobs",), ("jobs", "evaluation"), (*PARSE_JOB,), ("jobs", "evaluation", "validate-config")],
)
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    result = run_cli(*command, "--help")
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: cajajejo")


def test_missing_arguments_are_usage_errors() -> None:
    result = run_cli(*PARSE_JOB, DEBUG_EXAMPLE)
    assert result.exit_code == 2
    assert "Missing argument 'HELM_CONFIG'" in result.stderr


def test_trace_shows_the_traceback_and_plain_mode_does_not(tmp_path: Path) -> None:
    plain = run_cli_process(*PARSE_JOB, tmp_path / "missing.yml", DEBUG_RUN_SPECS, "-")
    assert plain.returncode == 2
    assert plain.stderr == f"error: {tmp_path / 'missing.yml'}: no such file; check the path\n"
    traced = run_cli_process("--trace", *PARSE_JOB, tmp_path / "missing.yml", DEBUG_RUN_SPECS, "-")
    assert traced.returncode == 2  # --trace adds the traceback and changes no exit code
    assert "Traceback (most recent call last)" in traced.stderr
    assert "UserInputError" in traced.stderr
    assert traced.stderr.splitlines()[-1] == plain.stderr.strip()


def test_trace_keeps_the_exit_code_of_failures_too(tmp_path: Path) -> None:
    # A broken template override is cajajejo's (or the template author's) failure: exit 1 either way.
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "configmap.yaml.j2").write_text("kind: ConfigMap\nmetadata: {name: {{ job.name }}}\n")
    args = (*PARSE_JOB, DEBUG_EXAMPLE, DEBUG_RUN_SPECS, "-", "--template-dir", tmp_path)
    plain = run_cli_process(*args)
    traced = run_cli_process("--trace", *args)
    assert plain.returncode == traced.returncode == 1, (plain.stderr, traced.stderr)
    assert "Traceback (most recent call last)" in traced.stderr


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_get_the_mode_the_umask_allows(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        assert run_cli(*PARSE_JOB, DEBUG_EXAMPLE, DEBUG_RUN_SPECS, tmp_path / "out.yml").exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.yml").stat().st_mode) == 0o666 & ~umask


def test_a_replaced_output_keeps_its_mode(tmp_path: Path) -> None:
    output = tmp_path / "out.yml"
    output.write_text("old")
    output.chmod(0o640)
    assert run_cli(*PARSE_JOB, DEBUG_EXAMPLE, DEBUG_RUN_SPECS, output).exit_code == 0
    assert stat.S_IMODE(output.stat().st_mode) == 0o640
    assert output.read_text() != "old"


def test_examples_render_from_another_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(DEBUG_EXAMPLE, tmp_path / "c.yml")
    shutil.copy(DEBUG_RUN_SPECS, tmp_path / "r.conf")
    monkeypatch.chdir(tmp_path)
    assert run_cli(*PARSE_JOB, "c.yml", "r.conf", "out.yml").exit_code == 0
    assert (tmp_path / "out.yml").is_file()


def test_the_container_entry_point_offers_evaluate_and_test() -> None:
    import subprocess
    import sys

    from tests.support import EXAMPLES

    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "cli.py"), "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    commands = result.stdout.split("Commands:")[1].split()
    assert "evaluate" in commands
    assert "test" in commands


def test_every_error_line_is_escaped_short_and_prefixed() -> None:
    from cajajejo.errors import CajajejoError, error_lines

    message = "cluster said: " + "x" * 1000 + "\nsecond\x1b[31m line\u2028third"
    lines = error_lines(CajajejoError(message + "\n  continued\rline"))
    assert lines[0].startswith("error: cluster said: ")
    assert all(len(line) <= 300 for line in lines)
    assert lines[1] == "error: second\\x1b[31m line\\u2028third"
    assert lines[2] == "  continued\\rline"
