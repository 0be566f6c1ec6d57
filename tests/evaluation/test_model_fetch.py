"""Fetching models: a gs:// folder through the real google-cloud-storage client against gcp-storage-emulator,
and an MLflow artifact from the real server."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cajajejo.config.evaluation import EvaluationJobConfig
from cajajejo.evaluation.helm_setup import model_max_length, write_helm_model_configs
from cajajejo.evaluation.model_fetch import DONE_MARKER, ModelFetchError, fetch_model, model_files
from tests.evaluation.conftest import MlflowServer, free_port
from tests.support import DEBUG_EXAMPLE, GCS_EXAMPLE


def _config(path: Path, **changes: object) -> EvaluationJobConfig:
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    return EvaluationJobConfig.model_validate(data)


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != DONE_MARKER
    }


@pytest.fixture
def gcs_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _upload(folder: Path, bucket_name: str, prefix: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="test", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    bucket = client.create_bucket(bucket_name)
    for path in folder.rglob("*"):
        if path.is_file():
            bucket.blob(f"{prefix}/{path.relative_to(folder).as_posix()}").upload_from_filename(str(path))


def test_a_gcs_folder_is_downloaded_whole_and_only_once(gcs_emulator: str, tiny_model: Path, tmp_path: Path) -> None:
    _upload(tiny_model / "model", "models", "pythia/step-1000/pythia-tiny")
    _upload(tiny_model / "tokenizer", "unrelated", "x")
    config = _config(GCS_EXAMPLE, model_config={"gs_uri": "gs://models/pythia/step-1000/pythia-tiny"})
    files = fetch_model(config, tmp_path)
    assert files.model_dir == tmp_path / "pythia-tiny"
    assert files.helm_name == "huggingface/pythia-tiny"
    assert _digest(files.model_dir) == _digest(tiny_model / "model")
    (files.model_dir / "config.json").write_text("kept")
    fetch_model(config, tmp_path)  # the marker is there: nothing is downloaded again
    assert (files.model_dir / "config.json").read_text() == "kept"


def test_an_empty_gcs_prefix_is_a_clear_error(gcs_emulator: str, tmp_path: Path) -> None:
    _upload(tmp_path, "empty-bucket", "nothing")
    config = _config(GCS_EXAMPLE, model_config={"gs_uri": "gs://empty-bucket/no/model"})
    with pytest.raises(ModelFetchError, match=r"nothing found under gs://empty-bucket/no/model"):
        fetch_model(config, tmp_path / "scratch")


def test_an_mlflow_artifact_is_downloaded_with_its_folders(
    mlflow_server: MlflowServer, model_run_id: str, tiny_model: Path, tmp_path: Path
) -> None:
    data = yaml.safe_load(DEBUG_EXAMPLE.read_text())
    data["model_config"]["mlflow_artifact"]["run_id"] = model_run_id
    config = EvaluationJobConfig.model_validate(data)
    files = fetch_model(config, tmp_path, tracking_uri=mlflow_server.uri)
    assert files == model_files(config, tmp_path)
    assert _digest(files.model_dir) == _digest(tiny_model / "model")
    assert _digest(files.tokenizer_dir) == _digest(tiny_model / "tokenizer")


def test_an_unknown_run_is_a_clear_error(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    config = _config(DEBUG_EXAMPLE)
    with pytest.raises(ModelFetchError, match=r"cannot download artifact 'model' of MLflow run 0{32}"):
        fetch_model(config, tmp_path, tracking_uri=mlflow_server.uri)


def _models_download(config: Path, scratch: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`cajajejo models download` as the job's init container runs it: a fresh process."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cajajejo.cli",
            "models",
            "download",
            "--config",
            str(config),
            "--scratch-dir",
            str(scratch),
        ],
        # MLflow's own retry variables, if a developer set them, would change what is measured.
        env={**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST_")}, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _write_config(path: Path, **artifact: str) -> Path:
    data = yaml.safe_load(DEBUG_EXAMPLE.read_text())
    tracking_uri = artifact.pop("tracking_uri")
    data["mlflow_config"]["tracking_uri"] = tracking_uri
    data["model_config"]["mlflow_artifact"].update(artifact)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_an_unreachable_tokenizer_hf_repo_says_what_to_do(
    mlflow_server: MlflowServer, model_run_id: str, tmp_path: Path
) -> None:
    # huggingface_hub reads its variables once, at import: set them in a fresh process. Offline mode,
    # and an endpoint where nothing listens should offline mode ever be ignored, make this test the
    # same on a machine with network as on one without.
    config = _write_config(
        tmp_path / "c.yml",
        tracking_uri=mlflow_server.uri,
        run_id=model_run_id,
        tokenizer_hf_repo="EleutherAI/pythia-70m",
    )
    result = _models_download(
        config, tmp_path / "scratch", {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    )
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        "error: tokenizer_hf_repo 'EleutherAI/pythia-70m' cannot be fetched from the Hugging Face hub"
    )
    assert "put the tokenizer in the MLflow artifact and set tokenizer_directory instead" in line


def test_an_unreachable_mlflow_is_retried_out_loud_then_fails_in_one_line(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = _write_config(tmp_path / "c.yml", tracking_uri=uri)
    start = time.monotonic()
    result = _models_download(config, tmp_path / "scratch", {})
    elapsed = time.monotonic() - start
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    retries = [line for line in lines if line.startswith(f"waiting for MLflow at {uri}: connection refused; retrying")]
    assert len(retries) == 4, result.stderr
    assert lines[-1].startswith(f"error: cannot download artifact 'model' of MLflow run {'0' * 32} from {uri}: ")
    assert len(lines) == len(retries) + 1, result.stderr
    assert elapsed < 45, elapsed  # ~15-20 s of backoff; with MLflow's own defaults it was ~250 s
    assert not (tmp_path / "scratch" / "model").exists()


def test_helm_configs_register_the_model_for_offline_use(tiny_model: Path, tmp_path: Path) -> None:
    config = _config(DEBUG_EXAMPLE)
    files = model_files(config, tiny_model.parent / "unused")
    files = type(files)(tiny_model / "model", tiny_model / "tokenizer", "huggingface/model")
    write_helm_model_configs(tmp_path, files, model_max_length(files.model_dir, files.tokenizer_dir))
    deployments = yaml.safe_load((tmp_path / "model_deployments.yaml").read_text())["model_deployments"]
    assert deployments[0]["name"] == "huggingface/model"
    assert deployments[0]["max_sequence_length"] == 1024
    assert deployments[0]["client_spec"]["args"] == {"pretrained_model_name_or_path": str(tiny_model / "model")}
    tokenizer = yaml.safe_load((tmp_path / "tokenizer_configs.yaml").read_text())["tokenizer_configs"][0]
    assert tokenizer["end_of_text_token"] == "<|endoftext|>"
    metadata = yaml.safe_load((tmp_path / "model_metadata.yaml").read_text())["models"][0]
    assert metadata["name"] == "huggingface/model"
