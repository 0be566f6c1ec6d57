"""The evaluation job's runtime: what the container (or a laptop, with --local) runs.

fetch the model → register it with HELM → helm-run and helm-summarize → results, tags and artifacts
to MLflow. Heavy libraries (mlflow, torch, HELM, google-cloud-storage) are imported inside functions.
"""

from __future__ import annotations

import logging
import os


def quiet_libraries() -> None:
    """Turn off the progress bars and start-up chatter of MLflow and Hugging Face libraries.

    Carriage-return progress bars bury our own progress lines on a terminal and fill job logs with
    noise. Call it before those libraries are imported: some read these variables only at import.
    A variable the user set is left alone.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for name in ("mlflow.store.db.utils", "alembic"):  # "Creating initial MLflow database tables..."
        logging.getLogger(name).setLevel(logging.WARNING)
