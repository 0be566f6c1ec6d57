"""Training runs in MLflow: one run per training job, logged by rank 0 from a background thread.

Training never waits for MLflow: metrics go into a queue, and a thread sends what has gathered in
one `log_batch` request (at most 1000 metrics each), inside `talking_to_mlflow`'s bounded retries.
The run is created (or, on resume, reopened by its id from the checkpoint) by that thread too, while
the model is being built. When MLflow fails, one line says so and training goes on without it.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cajajejo.errors import one_line
from cajajejo.mlflow_http import talking_to_mlflow

MAX_METRICS_PER_BATCH = 1000  # MLflow's limit per log_batch request
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_LENGTH = 500
CLOSE_TIMEOUT_SECONDS = 300

Metric = tuple[str, float, int, int]  # key, value, step, timestamp in ms


class RunLog(Protocol):
    """Where rank 0 sends what it measures."""

    def log_metrics(self, metrics: list[Metric]) -> None: ...

    def run_id(self) -> str | None:
        """The run's id once it exists (waits for its creation); None without MLflow."""
        ...

    def close(self, status: str) -> None:
        """Send what is queued and end the run with `status` (FINISHED, KILLED, FAILED)."""
        ...


class NoRunLog:
    """Training without MLflow."""

    def log_metrics(self, metrics: list[Metric]) -> None:
        pass

    def run_id(self) -> str | None:
        return None

    def close(self, status: str) -> None:
        pass


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class RunRequest:
    """The run to open: reopened by id when a resumed checkpoint names one, else created."""

    experiment_name: str
    run_name: str
    tags: Mapping[str, str]
    params: Mapping[str, str]
    resume_run_id: str | None = None


class MlflowRunLog:
    """A run in MLflow at `tracking_uri`, written by a background thread."""

    def __init__(self, tracking_uri: str, request: RunRequest) -> None:
        self.tracking_uri = tracking_uri
        self._queue: queue.Queue[list[Metric] | str] = queue.Queue()
        self._created = threading.Event()
        self._run_id: str | None = None
        self._failed = False
        self._thread = threading.Thread(
            target=self._work,
            args=(request,),
            name="mlflow-run-log",
            daemon=True,  # an unreachable server must not keep a finished trainer alive
        )
        self._thread.start()

    def log_metrics(self, metrics: list[Metric]) -> None:
        if not self._failed:
            self._queue.put(metrics)

    def run_id(self) -> str | None:
        self._created.wait()
        return self._run_id

    def close(self, status: str) -> None:
        self._queue.put(status)
        self._thread.join(CLOSE_TIMEOUT_SECONDS)
        if self._thread.is_alive():
            _say(f"[MLFLOW] gave up waiting for MLflow at {self.tracking_uri} after {CLOSE_TIMEOUT_SECONDS} s")

    def _work(self, request: RunRequest) -> None:
        try:
            with talking_to_mlflow(self.tracking_uri):
                from mlflow.tracking import MlflowClient

                client = MlflowClient(tracking_uri=self.tracking_uri)
                self._run_id = self._open_run(client, request)
                self._created.set()
                self._send_until_closed(client, self._run_id)
        except Exception as exc:  # MLflow, requests and urllib3 errors come in many types; none may stop training
            self._failed = True
            _say(
                f"[MLFLOW] logging to {self.tracking_uri} failed; training goes on without MLflow "
                f"({one_line(getattr(exc, 'message', None) or exc, 300)})"
            )
        finally:
            self._created.set()

    def _open_run(self, client: Any, request: RunRequest) -> str:
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        resume_run_id, experiment_name = request.resume_run_id, request.experiment_name
        if resume_run_id is not None:
            try:
                client.update_run(resume_run_id, status="RUNNING")
                _say(f"[MLFLOW] resuming run {resume_run_id} at {self.tracking_uri}")
                return resume_run_id
            except MlflowException as exc:
                _say(f"[MLFLOW] run {resume_run_id} of the checkpoint is not there ({one_line(exc, 200)}); new run")
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            try:
                experiment_id = client.create_experiment(experiment_name)
            except MlflowException:  # another job created it a moment ago
                experiment_id = client.get_experiment_by_name(experiment_name).experiment_id
        run = client.create_run(experiment_id, run_name=request.run_name, tags=dict(request.tags))
        run_id = str(run.info.run_id)
        items = [Param(key, value[:MAX_PARAM_LENGTH]) for key, value in sorted(request.params.items())]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])
        _say(f"[MLFLOW] run {run_id} at {self.tracking_uri}")
        return run_id

    def _send_until_closed(self, client: Any, run_id: str) -> None:
        from mlflow.entities import Metric as MlflowMetric

        while True:
            item = self._queue.get()
            pending: list[Metric] = []
            status: str | None = None
            while True:  # everything queued meanwhile goes into the same requests
                if isinstance(item, str):
                    status = item
                else:
                    pending.extend(item)
                if status is not None or self._queue.empty():
                    break
                item = self._queue.get()
            for start in range(0, len(pending), MAX_METRICS_PER_BATCH):
                chunk = pending[start : start + MAX_METRICS_PER_BATCH]
                client.log_batch(run_id, metrics=[MlflowMetric(k, v, t, s) for k, v, s, t in chunk])
            if status is not None:
                client.set_terminated(run_id, status)
                return


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def flatten(data: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """Nested config data as MLflow params: `trainer.model.n_layer` → "2"."""
    params: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            params.update(flatten(value, name))
        else:
            params[name] = str(value)
    return params
