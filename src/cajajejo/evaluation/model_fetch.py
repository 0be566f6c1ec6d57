"""Fetch the model named by the config into scratch, once: an MLflow artifact or a gs:// folder.

A finished download leaves a marker file; a later run (or the evaluation container after the init
container) finds it and skips the download. A half-finished one is downloaded again.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cajajejo.config.evaluation import EvaluationJobConfig, MlflowArtifact
from cajajejo.errors import CajajejoError, one_line
from cajajejo.mlflow_http import talking_to_mlflow

DONE_MARKER = ".cajajejo-download-complete"
HUB_TOKENIZER_DIR = "hub-tokenizer"  # where tokenizer_hf_repo is saved, so HELM itself runs offline
GCS_DOWNLOAD_THREADS = 8


@dataclass(frozen=True)
class ModelFiles:
    """Where the fetched model lives and how HELM should call it."""

    model_dir: Path
    tokenizer_dir: Path
    helm_name: str  # huggingface/<model folder name>, as run specs written the original way expect


class ModelFetchError(CajajejoError):
    """The model could not be fetched; the message names the source."""


def model_files(config: EvaluationJobConfig, scratch: Path) -> ModelFiles:
    """The paths of the model inside scratch (whether or not it has been fetched yet)."""
    source = config.model
    if source.mlflow_artifact is not None:
        artifact = source.mlflow_artifact
        root = scratch / artifact.artifact_path
        model_dir = root / artifact.model_directory if artifact.model_directory else root
        tokenizer_dir = root / artifact.tokenizer_directory if artifact.tokenizer_directory else model_dir
        if artifact.tokenizer_hf_repo:
            tokenizer_dir = root / HUB_TOKENIZER_DIR
    else:
        assert source.gs_uri is not None  # the config model guarantees exactly one source
        model_dir = tokenizer_dir = scratch / _gcs_folder_name(source.gs_uri)
    return ModelFiles(model_dir, tokenizer_dir, f"huggingface/{model_dir.name}")


def fetch_model(config: EvaluationJobConfig, scratch: Path, *, tracking_uri: str | None = None) -> ModelFiles:
    """Download the model into `scratch` unless a complete copy is already there."""
    files = model_files(config, scratch)
    source = config.model
    if source.mlflow_artifact is not None:
        root = scratch / source.mlflow_artifact.artifact_path
        if not (root / DONE_MARKER).is_file():
            _download_mlflow(source.mlflow_artifact, scratch, tracking_uri or config.mlflow_config.tracking_uri)
    else:
        assert source.gs_uri is not None
        if not (files.model_dir / DONE_MARKER).is_file():
            download_gcs_folder(source.gs_uri, files.model_dir)
    if not files.model_dir.is_dir():
        raise ModelFetchError(f"the model folder {files.model_dir} is not in the downloaded artifact; check the config")
    artifact = source.mlflow_artifact
    if artifact is not None and artifact.tokenizer_hf_repo and not (files.tokenizer_dir / DONE_MARKER).is_file():
        _save_hub_tokenizer(artifact.tokenizer_hf_repo, files.tokenizer_dir)
    return files


def _save_hub_tokenizer(repo: str, target: Path) -> None:
    """Fetch `tokenizer_hf_repo` from the Hugging Face hub once and keep it beside the model."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(repo)
    except (OSError, ValueError) as exc:
        raise ModelFetchError(
            f"tokenizer_hf_repo {repo!r} cannot be fetched from the Hugging Face hub; without network, put "
            f"the tokenizer in the MLflow artifact and set tokenizer_directory instead ({one_line(exc, 200)})"
        ) from exc
    tokenizer.save_pretrained(str(target))
    (target / DONE_MARKER).write_text(f"hub {repo}\n")


def _download_mlflow(artifact: MlflowArtifact, scratch: Path, tracking_uri: str) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    root = scratch / artifact.artifact_path
    shutil.rmtree(root, ignore_errors=True)  # a partial download from an interrupted run
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        with talking_to_mlflow(tracking_uri):
            downloaded = MlflowClient(tracking_uri=tracking_uri).download_artifacts(
                artifact.run_id, artifact.artifact_path, str(scratch)
            )
    except MlflowException as exc:
        raise ModelFetchError(
            f"cannot download artifact {artifact.artifact_path!r} of MLflow run {artifact.run_id} "
            f"from {tracking_uri}: {one_line(exc.message)}"
        ) from exc
    if Path(downloaded).resolve() != root.resolve():
        raise ModelFetchError(f"MLflow put the artifact at {downloaded}, expected {root}")
    (root / DONE_MARKER).write_text(f"mlflow run {artifact.run_id} artifact {artifact.artifact_path}\n")


def _gcs_folder_name(uri: str) -> str:
    path = uri.removeprefix("gs://").rstrip("/")
    return path.rsplit("/", 1)[-1] if "/" in path else path


def download_gcs_folder(uri: str, target: Path, *, threads: int = GCS_DOWNLOAD_THREADS) -> int:
    """Download every object under `uri` into `target`, in parallel; returns the number of files.

    Honours STORAGE_EMULATOR_HOST (the google-cloud-storage client reads it) for tests and private endpoints.
    """
    from google.api_core import exceptions
    from google.cloud import storage

    bucket_name, _, prefix = uri.removeprefix("gs://").partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        client = storage.Client(project="emulator", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    else:
        client = storage.Client()
    shutil.rmtree(target, ignore_errors=True)
    try:
        blobs = [b for b in client.list_blobs(bucket_name, prefix=prefix) if not b.name.endswith("/")]
    except exceptions.GoogleAPICallError as exc:
        raise ModelFetchError(f"cannot list {uri}: {one_line(exc)}") from exc
    if not blobs:
        raise ModelFetchError(f"nothing found under {uri}; check model_config.gs_uri")

    def download(blob: storage.Blob) -> None:
        relative = blob.name[len(prefix) :]
        destination = (target / relative).resolve()
        if not destination.is_relative_to(target.resolve()):  # an object name with '..' must not escape
            raise ModelFetchError(f"object {blob.name!r} would be written outside {target}")
        destination.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(destination))

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(download, blobs))
    except exceptions.GoogleAPICallError as exc:
        raise ModelFetchError(f"cannot download from {uri}: {one_line(exc)}") from exc
    (target / DONE_MARKER).write_text(f"{uri}\n")
    return len(blobs)
