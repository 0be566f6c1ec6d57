"""Read a job's container logs from Google Cloud Logging, oldest first, as a stream.

The filter names the job's containers (resource type, namespace, the `job-name` pod label, and the
cluster when one is set) and always carries an explicit lower timestamp bound: without a
`timestamp` term the client silently adds a 24-hour one. Every value in it is validated and quoted,
so no argument can add a term. A name is a job's or a group's: the filter takes the containers of the
Job of that name or of every task of the group of that name (their pods carry `cajajejo/group`), or,
with a task, of that task of the group only.

Entries are yielded one at a time, so memory stays flat however many there are. When a page fails
with a transient error (408, 429 or 5xx; a connection refused, reset, timed out, or broken off in
the middle of the answer) the reader waits and asks for the same page again: nothing of a failed
page was given out, so every entry arrives once. `--follow` polls from the last timestamp it has,
skipping the entries it already gave out.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cajajejo.errors import CajajejoError, Problem, UserInputError, one_line
from cajajejo.kube import dns1123_label_problem

if TYPE_CHECKING:
    from google.cloud.logging import Client

EMULATOR_ENV = "LOGGING_EMULATOR_HOST"
SHIFT_UNITS = {"days": timedelta(days=1), "hours": timedelta(hours=1), "minutes": timedelta(minutes=1)}
JOB_NAME_POD_LABEL = "k8s-pod/job-name"  # GKE puts pod labels under k8s-pod/; the Job controller sets job-name
# The pod index of an Indexed Job (a training job's node rank), as GKE writes the label's key: dots as '_'.
RANK_POD_LABEL = "k8s-pod/batch_kubernetes_io/job-completion-index"
GROUP_POD_LABEL = "k8s-pod/cajajejo/group"  # the pods of a group's tasks
TASK_POD_LABEL = "k8s-pod/cajajejo/task"
PAGE_SIZE = 1000


class LogReadError(CajajejoError):
    """Cloud Logging could not be read; the message says why and what to do."""


class IncompleteResponse(Exception):
    """A successful answer without the JSON object the API always sends: its body was cut off unnoticed."""


def lower_bound(shift_unit: str, shift_amount: int, now: datetime | None = None) -> datetime:
    """The moment `shift_amount` `shift_unit` before `now`, in UTC."""
    if shift_unit not in SHIFT_UNITS:
        raise UserInputError(Problem("--shift-unit", f"{shift_unit!r} is not one of {', '.join(SHIFT_UNITS)}"))
    if shift_amount < 1:
        raise UserInputError(Problem("--shift-amount", f"{shift_amount} must be 1 or more"))
    try:
        return (now or datetime.now(UTC)).astimezone(UTC) - shift_amount * SHIFT_UNITS[shift_unit]
    except OverflowError:
        raise UserInputError(Problem("--shift-amount", f"{shift_amount} {shift_unit} reaches before year 1")) from None


def quote(value: str) -> str:
    """`value` as a string literal of the Logging query language."""
    if any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise UserInputError(Problem("log filter", f"{value!r} holds control characters"))
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LogQuery:
    """Which entries: one job's (or group's) containers in one namespace (and cluster), from `since` on."""

    job_name: str  # a job's name, or a group's
    namespace: str
    since: datetime
    cluster: str | None = None
    rank: int | None = None  # one pod of an Indexed Job (a training job's node rank); None: all pods
    task: str | None = None  # one task of the group `job_name`; None: the job, or every task of the group

    def __post_init__(self) -> None:
        checked = (("JOB_NAME", self.job_name), ("--namespace", self.namespace), ("--task", self.task))
        for source, value in checked:
            problem = dns1123_label_problem(value) if value is not None else None
            if problem:
                raise UserInputError(Problem(source, f"{value!r} {problem}"))
        if self.cluster is not None and dns1123_label_problem(self.cluster):
            raise UserInputError(Problem("setting gke_cluster", f"{self.cluster!r} is not a GKE cluster name"))

    def filter(self, since: str | None = None) -> str:
        """The Logging query; `since` (an RFC 3339 timestamp) replaces the lower bound when given."""
        name = quote(self.job_name)
        terms = [
            f"resource.type={quote('k8s_container')}",
            f"resource.labels.namespace_name={quote(self.namespace)}",
        ]
        if self.task is not None:
            terms += [f'labels."{GROUP_POD_LABEL}"={name}', f'labels."{TASK_POD_LABEL}"={quote(self.task)}']
        else:
            terms.append(f'(labels."{JOB_NAME_POD_LABEL}"={name} OR labels."{GROUP_POD_LABEL}"={name})')
        if self.cluster is not None:
            terms.append(f"resource.labels.cluster_name={quote(self.cluster)}")
        if self.rank is not None:
            terms.append(f'labels."{RANK_POD_LABEL}"={quote(str(self.rank))}')
        terms.append(f"timestamp>={quote(since or rfc3339(self.since))}")
        return " AND ".join(terms)


def make_client(project: str) -> Client:
    """A Cloud Logging client over HTTP; `LOGGING_EMULATOR_HOST=host:port` means plain HTTP, no credentials."""
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import logging

    emulator = os.environ.get(EMULATOR_ENV, "").strip()
    try:
        if emulator:
            from google.auth.credentials import AnonymousCredentials

            return logging.Client(  # type: ignore[no-untyped-call]
                project=project,
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                _use_grpc=False,
                client_options={"api_endpoint": f"http://{emulator}"},
            )
        # gRPC would be the default; the HTTP transport streams pages just as well and needs no extra channel.
        return logging.Client(project=project, _use_grpc=False)  # type: ignore[no-untyped-call]
    except DefaultCredentialsError:
        raise LogReadError(
            "no Google credentials found; run `gcloud auth application-default login` "
            "or set GOOGLE_APPLICATION_CREDENTIALS"
        ) from None


@dataclass
class RetryPolicy:
    attempts: int = 6  # consecutive failures without progress before giving up
    first_wait_s: float = 1.0
    max_wait_s: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep)  # also paces --follow's polls

    def wait(self, failure: int) -> None:
        delay = min(self.max_wait_s, self.first_wait_s * 2 ** (failure - 1))
        self.sleep(delay * (0.5 + random.random() / 2))  # noqa: S311 - jitter, not secrets


def read_entries(
    client: Client,
    query: LogQuery,
    *,
    follow: bool = False,
    poll_interval_s: float = 5.0,
    retry: RetryPolicy | None = None,
    page_size: int = PAGE_SIZE,
) -> Iterator[dict[str, Any]]:
    """Yield the job's entries oldest first, as Cloud Logging's JSON; with `follow`, keep polling."""
    retry = retry or RetryPolicy()
    newest: str | None = None  # timestamp of the newest entry given out, as the API wrote it
    seen_at_newest: set[str] = set()  # their insert ids: a --follow poll starts at `newest` and skips these
    filter_ = query.filter()
    page_token: str | None = None  # a page token only holds for the filter it came with
    while True:
        response = _page_with_retries(client, filter_, page_size, page_token, retry)
        for entry in response.get("entries", ()):
            timestamp, insert_id = entry.get("timestamp"), entry.get("insertId")
            if timestamp == newest and insert_id in seen_at_newest:
                continue
            if timestamp != newest:
                newest, seen_at_newest = timestamp, set()
            seen_at_newest.add(insert_id)
            yield entry
        page_token = response.get("nextPageToken") or None
        if page_token is None:
            if not follow:
                return
            retry.sleep(poll_interval_s)
            filter_ = query.filter(newest)


def _page_with_retries(
    client: Client, filter_: str, page_size: int, page_token: str | None, retry: RetryPolicy
) -> dict[str, Any]:
    """One page, asked for again after each transient failure, up to `retry.attempts` failures in a row.

    A page is parsed only once it has arrived whole, so a failed page gave out no entry and asking
    for it again (same filter, same token) can neither lose nor repeat one.
    """
    failures = 0
    while True:
        try:
            return _list_page(client, filter_, page_size, page_token)
        except Exception as exc:
            if not _is_transient(exc):
                refusal = _refusal(exc, client.project)
                if refusal is None:
                    raise
                raise refusal from exc
            failures += 1
            if failures >= retry.attempts:
                raise LogReadError(
                    f"Cloud Logging kept failing ({_describe(exc)}) after {failures} attempts; try again later"
                ) from exc
            retry.wait(failures)


def _is_transient(exc: Exception) -> bool:
    """Whether asking again may well succeed: the service was busy, or the connection let us down."""
    from google.api_core import exceptions

    if isinstance(exc, exceptions.GoogleAPICallError):
        code = exc.code
        # 501 says the request itself is not supported; every other 5xx is the service's passing trouble.
        return isinstance(code, int) and (code in (408, 429) or (500 <= code < 600 and code != 501))
    return isinstance(exc, _transport_errors())


def _transport_errors() -> tuple[type[Exception], ...]:
    import requests
    from google.auth.exceptions import TransportError

    return (
        requests.exceptions.ConnectionError,  # refused, reset or closed before the answer; timed out mid-body
        requests.exceptions.Timeout,
        requests.exceptions.ChunkedEncodingError,  # closed in the middle of the body (urllib3's IncompleteRead)
        requests.exceptions.ContentDecodingError,  # a compressed body cut off
        requests.exceptions.JSONDecodeError,  # a body without a length, cut off: it reads as truncated JSON
        IncompleteResponse,
        TransportError,  # refreshing the access token met the same network trouble
    )


def _refusal(exc: Exception, project: str) -> LogReadError | None:
    """What to tell the user when Cloud Logging answered no; None for errors that are not answers."""
    from google.api_core import exceptions

    if isinstance(exc, exceptions.Forbidden):
        return LogReadError(
            f"not allowed to read logs in project {project} ({_describe(exc)}); you need roles/logging.viewer there"
        )
    if isinstance(exc, exceptions.Unauthorized):
        return LogReadError(
            f"Cloud Logging refused the credentials ({_describe(exc)}); run `gcloud auth application-default login`"
        )
    if isinstance(exc, exceptions.NotFound):
        return LogReadError(f"project {project} not found in Cloud Logging ({_describe(exc)})")
    if isinstance(exc, exceptions.GoogleAPICallError):
        return LogReadError(f"Cloud Logging rejected the request: {_describe(exc)}")
    return None


def _list_page(client: Client, filter_: str, page_size: int, page_token: str | None) -> dict[str, Any]:
    """One page of `entries:list`, as the JSON the API sent.

    This goes through the client's own authenticated connection rather than `client.list_entries`,
    which turns every entry into an object (parsing both timestamps with strptime: 70% of the time
    of a large fetch, measured) only for us to turn it back into JSON, losing `receiveTimestamp`.
    """
    body: dict[str, Any] = {
        "resourceNames": [f"projects/{client.project}"],
        "filter": filter_,
        "orderBy": "timestamp asc",
        "pageSize": page_size,
    }
    if page_token:
        body["pageToken"] = page_token
    connection = client._connection
    response: Any = connection.api_request(  # type: ignore[no-untyped-call]
        method="POST", path="/entries:list", data=body
    )
    if not isinstance(response, dict):  # an empty body comes back as b"", not as an error
        raise IncompleteResponse("the answer had no JSON object")
    return response


def _describe(exc: BaseException) -> str:
    import requests

    if isinstance(exc, requests.exceptions.RequestException | IncompleteResponse):
        return f"{_transport_trouble(exc)}: {one_line(_innermost(exc), 200)}"
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc)
    text = one_line(message)
    return f"{int(code)} {text}" if isinstance(code, int) else text


def _transport_trouble(exc: BaseException) -> str:
    import requests

    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection failed"
    return "connection broken in the middle of the answer"


def _innermost(exc: BaseException) -> BaseException:
    """The error that requests and urllib3 wrapped: they nest it in `args` or `reason`, not `__cause__`."""
    for _ in range(8):  # wrappers nest a few levels deep; never loop on an odd cycle
        reason = getattr(exc, "reason", None)
        inner = reason if isinstance(reason, BaseException) else None
        inner = inner or next((arg for arg in reversed(exc.args) if isinstance(arg, BaseException)), None)
        if inner is None:
            return exc
        exc = inner
    return exc


def task_of(entry: dict[str, Any]) -> str | None:
    """The group task an entry's container belongs to, or None (a job's entry)."""
    task = (entry.get("labels") or {}).get(TASK_POD_LABEL)
    return task if isinstance(task, str) else None


def format_entry(entry: dict[str, Any], *, task_prefix: bool = False) -> str:
    """One line for the terminal: time, severity, container and the message; a group task's entry starts with
    `[task]` when `task_prefix` (the tasks of a group interleaved)."""
    payload: Any = entry.get("textPayload")
    if payload is None:
        structured = entry.get("jsonPayload") or entry.get("protoPayload") or {}
        payload = structured.get("message", structured) if isinstance(structured, dict) else structured
    container = (entry.get("resource") or {}).get("labels", {}).get("container_name", "-")
    severity = entry.get("severity", "DEFAULT")
    task = task_of(entry) if task_prefix else None
    prefix = f"[{task}] " if task is not None else ""
    return f"{prefix}{entry.get('timestamp', '?')} {severity:<7} [{container}] {str(payload).rstrip()}"
