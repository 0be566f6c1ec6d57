"""Every kind of bad config yields one line per problem naming file, line and field, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cajajejo.config.loader import load_evaluation_config
from cajajejo.errors import UserInputError
from tests.support import DEBUG_EXAMPLE, GCS_EXAMPLE, MLFLOW_EXAMPLE


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yml"
    path.write_text(text)
    return path


def _edit(tmp_path: Path, change: dict[str, object]) -> Path:
    """The debug example with dotted keys replaced (value None: key removed)."""
    data = yaml.safe_load(DEBUG_EXAMPLE.read_text())
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return _write(tmp_path, yaml.safe_dump(data, sort_keys=False))


def _errors(path: Path) -> list[str]:
    with pytest.raises(UserInputError) as caught:
        load_evaluation_config(path)
    return str(caught.value).splitlines()


@pytest.mark.parametrize("example", [MLFLOW_EXAMPLE, GCS_EXAMPLE, DEBUG_EXAMPLE])
def test_examples_are_valid(example: Path) -> None:
    loaded = load_evaluation_config(example)
    assert loaded.text == example.read_text()
    assert loaded.warnings == ()


def test_model_config_sources_are_mutually_exclusive(tmp_path: Path) -> None:
    path = _edit(tmp_path, {"model_config.gs_uri": "gs://bucket/model"})
    line = path.read_text().splitlines().index("model_config:") + 1
    assert _errors(path) == [
        f"{path}:{line}: model_config: set exactly one of mlflow_artifact or gs_uri (found both)",
    ]


def test_model_config_needs_a_source(tmp_path: Path) -> None:
    path = _edit(tmp_path, {"model_config.mlflow_artifact": None, "model_config.gs_uri": None})
    (line,) = _errors(path)
    assert line.endswith("model_config: set exactly one of mlflow_artifact or gs_uri (found neither)")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("compute_config.memory", "16 GB", "is not a Kubernetes quantity"),
        ("compute_config.cpu", "0", "must be greater than zero"),
        ("compute_config.scratch.size", "lots", "is not a Kubernetes quantity"),
        ("compute_config.cpu", "-1", "must be greater than zero"),
    ],
)
def test_bad_quantities(tmp_path: Path, field: str, value: str, expected: str) -> None:
    (line,) = _errors(_edit(tmp_path, {field: value}))
    assert f": {field}: " in line
    assert expected in line


def test_unknown_key_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    path = _write(tmp_path, DEBUG_EXAMPLE.read_text().replace("  memory: 4Gi", "  memroy: 4Gi"))
    lines = path.read_text().splitlines()
    assert sorted(_errors(path)) == sorted(
        [
            f"{path}:{lines.index('  memroy: 4Gi') + 1}: compute_config.memroy: unknown field; did you mean 'memory'?",
            f"{path}:{lines.index('compute_config:') + 1}: compute_config.memory: required field is missing",
        ]
    )


def test_unknown_top_level_key_lists_the_fields(tmp_path: Path) -> None:
    (line,) = _errors(_edit(tmp_path, {"zzz": 1}))
    assert "zzz: unknown field; expected one of: version, image, image_tag, compute_config" in line


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("kubernetes_config.backoff_limit", "3", "Input should be a valid integer"),
        ("helm.args", "--max-eval-instances 5", "Input should be a valid list"),
        ("tracking_config.experiment_name", 7, "put the value in quotes"),
        ("compute_config.allow_custom_accelerator", "yes", "Input should be a valid boolean"),
    ],
)
def test_wrong_types(tmp_path: Path, field: str, value: object, expected: str) -> None:
    (line,) = _errors(_edit(tmp_path, {field: value}))
    assert f": {field}: " in line
    assert expected in line


def test_line_numbers_point_at_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path, DEBUG_EXAMPLE.read_text().replace("suite: debug", "suite: ../escape"))
    (line,) = _errors(path)
    expected_line = DEBUG_EXAMPLE.read_text().splitlines().index("  suite: debug") + 1
    assert line.startswith(f"{path}:{expected_line}: helm.suite: '../escape' must be a plain name")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "is empty; expected a job config"),
        ("# only a comment\n", "is empty; expected a job config"),
        ("- a\n- b\n", ":1: expected a mapping of fields at the top level, found list"),
        ("version: [v4\n", ": not valid YAML: "),
        ("a: 1\na: 2\n", ":2: a: duplicate key (first at line 1); keep only one"),
        ("a: 1\n---\nb: 2\n", "not valid YAML: "),
        ("\tversion: v4\n", "not valid YAML: "),
    ],
)
def test_files_that_are_not_configs(tmp_path: Path, text: str, expected: str) -> None:
    (line,) = _errors(_write(tmp_path, text))
    assert expected in line


def test_nested_duplicate_key_is_reported_where_it_is(tmp_path: Path) -> None:
    path = _write(tmp_path, DEBUG_EXAMPLE.read_text().replace('  cpu: "2"', '  cpu: "2"\n  cpu: "3"'))
    first = path.read_text().splitlines().index('  cpu: "2"') + 1
    (line,) = _errors(path)
    assert line == f"{path}:{first + 1}: compute_config.cpu: duplicate key (first at line {first}); keep only one"


def test_directory_missing_file_and_binary(tmp_path: Path) -> None:
    assert _errors(tmp_path) == [f"{tmp_path}: is a directory; pass the path of a file"]
    assert _errors(tmp_path / "nope.yml") == [f"{tmp_path / 'nope.yml'}: no such file; check the path"]
    binary = tmp_path / "b.yml"
    binary.write_bytes(b"version: \xff\xfe\n")
    assert _errors(binary) == [f"{binary}: is not UTF-8 text (bad byte at offset 9)"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"version": "v3"}, "version: unsupported config version 'v3'; this cajajejo reads version v4"),
        ({"image": "repo/evaluation:latest"}, "image: 'repo/evaluation:latest' includes a tag or digest"),
        ({"image": "Repo With Spaces"}, "is not an image repository"),
        ({"image_tag": "bad tag"}, "is not an image tag"),
        ({"compute_config.accelerator": "nvidia-tesla-t5"}, "unknown GKE accelerator 'nvidia-tesla-t5'"),
        ({"compute_config.accelerator_count": 2}, "accelerator_count is set but accelerator is not"),
        ({"helm.args": ["--suite", "x"]}, "'--suite' is set by cajajejo at run time"),
        ({"helm.args": ["--output-path=/tmp"]}, "'--output-path' is set by cajajejo at run time"),
        ({"helm.args": ["--api-key", "sk-123"]}, "helm.args[0]: this option looks like it carries a credential"),
        ({"helm.args": ["--hf-token=hf_x"]}, "helm.args[0]: this option looks like it carries a credential"),
        ({"mlflow_config.tracking_uri": "https://me:pw@mlflow"}, "must not contain credentials"),
        ({"mlflow_config.tracking_uri": "http://[::1"}, "is not a valid URI"),
        ({"model_config.mlflow_artifact.artifact_path": "../x"}, "must be a relative path inside the artifact"),
        ({"model_config.mlflow_artifact.run_id": "abc def"}, "is not an MLflow run id"),
        ({"tracking_config.tags": {"cpu": "8"}}, "tag name 'cpu' is set by cajajejo itself"),
        ({"tracking_config.tags": {"a": {"b": 1}}}, "a tag value must be text, a number"),
        ({"tracking_config.tags": {"bad:key": "1"}}, "tag name 'bad:key': MLflow allows"),
        ({"kubernetes_config.namespace": "Team_A"}, "kubernetes_config.namespace: 'Team_A' must be lower-case"),
        ({"kubernetes_config.env": {"HF_TOKEN": "hf_abc"}}, "HF_TOKEN looks like a credential; move it to secret_env"),
        ({"kubernetes_config.env": {"JOB_NAME": "x"}}, "JOB_NAME is set by cajajejo"),
        ({"kubernetes_config.env": {"1BAD": "x"}}, "'1BAD' must consist of letters"),
        (
            {"kubernetes_config.node_selector": {"cloud.google.com/gke-accelerator": "x"}},
            "is set from compute_config.accelerator",
        ),
        ({"kubernetes_config.job_name_prefix": "a" * 21}, "at most 20 leave room for the words"),
        ({"kubernetes_config.secret_env": {"TOKEN": {"secret": "Bad", "key": "k"}}}, "'Bad' must be lower-case"),
        (
            {"compute_config.scratch.provision_storage_class": {"disk_type": "pd-ssd"}},
            "provision_storage_class needs storage_class",
        ),
        ({"compute_config.scratch.provision_storage_class": {"disk_type": "floppy"}}, "'floppy' is not allowed"),
    ],
)
def test_semantic_rules(tmp_path: Path, change: dict[str, object], expected: str) -> None:
    lines = _errors(_edit(tmp_path, change))
    assert len(lines) == 1, lines
    assert expected in lines[0]


def test_custom_accelerator_needs_the_explicit_flag(tmp_path: Path) -> None:
    path = _edit(
        tmp_path,
        {"compute_config.accelerator": "nvidia-future-9000", "compute_config.allow_custom_accelerator": True},
    )
    config = load_evaluation_config(path).config
    assert config.compute_config.accelerator == "nvidia-future-9000"
    assert config.compute_config.gpu_count == 1


def test_plain_looking_env_names_are_not_mistaken_for_secrets(tmp_path: Path) -> None:
    path = _edit(tmp_path, {"kubernetes_config.env": {"TOKENIZERS_PARALLELISM": "false", "KEYRING": "x"}})
    assert load_evaluation_config(path).config.kubernetes_config.env["TOKENIZERS_PARALLELISM"] == "false"


@pytest.mark.parametrize(("tag", "expected"), [(None, "is missing (so 'latest')"), ("latest", "is 'latest'")])
def test_mutable_image_tags_warn(tmp_path: Path, tag: str | None, expected: str) -> None:
    path = _edit(tmp_path, {"image_tag": tag})
    (warning,) = load_evaluation_config(path).warnings
    assert "image_tag" in str(warning)
    assert expected in str(warning)


def test_every_problem_of_a_block_is_reported_in_one_run(tmp_path: Path) -> None:
    # A wrong value type in `env` used to hide the credential name beside it until it was fixed.
    path = _edit(
        tmp_path,
        {
            "kubernetes_config.env": {"BATCH": 3, "HF_TOKEN": "x", "JOB_NAME": "y"},
            "kubernetes_config.secret_env": {"CONFIG_VERSION": {"secret": "s", "key": "k"}},
            "helm.args": ["--suite", 5, "--api-key=x"],
            "tracking_config.tags": {"mlflow.user": "me", "ok": {"nested": 1}},
        },
    )
    errors = _errors(path)
    joined = "\n".join(errors)
    assert "kubernetes_config.env.BATCH: expected text but YAML read 3" in joined
    assert "kubernetes_config.env.HF_TOKEN: HF_TOKEN looks like a credential; move it to secret_env" in joined
    assert "kubernetes_config.env.JOB_NAME: JOB_NAME is set by cajajejo" in joined
    assert "kubernetes_config.secret_env.CONFIG_VERSION: CONFIG_VERSION is set by cajajejo" in joined
    assert "helm.args[0]: '--suite' is set by cajajejo at run time" in joined
    assert "helm.args[1]: expected text but YAML read 5" in joined
    assert "helm.args[2]: this option looks like it carries a credential" in joined
    assert "tracking_config.tags.mlflow.user: tag name 'mlflow.user' is set by cajajejo itself" in joined
    assert "tracking_config.tags.ok: a tag value must be text" in joined
    assert len(errors) == 9, joined


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("version: v4\n\timage: x\n", 2, 1),  # a tab where a key should start
        ("version: v4\nhelm:\n  suite: a\n\targs: []\n", 4, 1),  # a tab breaking indentation
        ("helm:\n\t- x\n", 2, 1),
    ],
)
def test_a_tab_is_named_with_its_line(tmp_path: Path, text: str, line: int, column: int) -> None:
    path = _write(tmp_path, text)
    assert _errors(path) == [
        f"{path}:{line}: not valid YAML: a tab character at column {column}; YAML indents with spaces only, "
        "replace the tab with spaces"
    ]
