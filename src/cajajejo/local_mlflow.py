"""A real `mlflow server` on 127.0.0.1 for runs on this machine where several processes log at once.

A job group's trainer and evaluators log to one MLflow from different processes. A bare
`sqlite:///` URI would have each process write the database file itself (and put artifacts in the
current folder); one server in front of it serialises the writes and keeps the artifacts in one
place, as MLflow in a cluster does. The tests start the same server the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from cajajejo.backends.local import free_port
from cajajejo.errors import CajajejoError

START_TIMEOUT_SECONDS = 90.0


def mlflow_program() -> str:
    """The `mlflow` command of this interpreter's environment (else the one on PATH)."""
    beside = Path(sys.executable).parent / "mlflow"
    return str(beside) if beside.is_file() else "mlflow"


@contextlib.contextmanager
def serve_mlflow(folder: Path, program: str | None = None) -> Iterator[str]:
    """Run `mlflow server` (sqlite in `folder`, served artifacts in `folder/artifacts`); yields its URI."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        program or mlflow_program(),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder.resolve() / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder.resolve() / "artifacts"),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log_path = folder / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        uri = f"http://127.0.0.1:{port}"
        try:
            _wait_until_healthy(uri, process, log_path)
            yield uri
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)  # the server runs its workers in its process group
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _wait_until_healthy(uri: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:  # noqa: S310 (our http URI)
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise CajajejoError(f"mlflow server did not start (its log: {log_path}): {tail}")
        time.sleep(0.3)
