"""A stand-in for Cloud Logging's `POST /v2/entries:list`, enough for the real google-cloud-logging client.

It parses the filter it receives (terms joined by AND, and parenthesised alternatives joined by OR;
quoted strings with backslash escapes) and applies the terms cajajejo relies on: resource type,
namespace, cluster, the job-name, group and task pod labels and the timestamp bound. A term it does
not understand is a 400, as an unexpected term would be a bug.
Pages are `pageSize` entries long. Requests are numbered from 1: `fail` makes chosen ones answer with
an error status, `drop` makes them break the connection (before the answer or in the middle of its
body), and `hold` makes them wait until `release` is set, for a fetch caught in the middle.

Run as a program (`python -m tests.standins.cloud_logging --entries N`) it serves N synthetic entries
of one job and prints its address, for the benchmark.
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.standins.http import Drop, Dropped, Request, StandinServer, json_response

JOB_LABEL = 'labels."k8s-pod/job-name"'
_FIELDS = {
    "resource.type": ("resource", "type"),
    "resource.labels.namespace_name": ("resource", "labels", "namespace_name"),
    "resource.labels.cluster_name": ("resource", "labels", "cluster_name"),
    JOB_LABEL: ("labels", "k8s-pod/job-name"),
    'labels."k8s-pod/batch_kubernetes_io/job-completion-index"': (
        "labels",
        "k8s-pod/batch_kubernetes_io/job-completion-index",
    ),
    'labels."k8s-pod/cajajejo/group"': ("labels", "k8s-pod/cajajejo/group"),
    'labels."k8s-pod/cajajejo/task"': ("labels", "k8s-pod/cajajejo/task"),
}


class FilterError(ValueError):
    pass


@dataclass(frozen=True)
class Term:
    field: str
    op: str
    value: str
    alternatives: tuple[Term, ...] = ()  # `(a OR b)`: the term holds when one of these does


def parse_filter(text: str) -> list[Term]:
    """Split a filter into `field op "value"` terms joined by AND (outside quotes); a term may be a
    parenthesised group of such terms joined by OR."""
    terms: list[Term] = []
    position = 0
    while True:
        if text.startswith("(", position):
            alternatives, position = _alternatives(text, position + 1)
            terms.append(Term("(OR)", "=", "", alternatives))
        else:
            term, position = _term(text, position)
            terms.append(term)
        rest = text[position:]
        if not rest:
            return terms
        if not rest.startswith(" AND "):
            raise FilterError(f"expected AND after term {len(terms)}, found {rest[:10]!r}")
        position += len(" AND ")


def _alternatives(text: str, position: int) -> tuple[tuple[Term, ...], int]:
    """The terms of `a OR b OR ...)` from `position`, and the position after the closing parenthesis."""
    found = []
    while True:
        term, end = _term(text, position)
        found.append(term)
        if text.startswith(")", end):
            return tuple(found), end + 1
        if not text.startswith(" OR ", end):
            raise FilterError(f"expected OR or ) after {term.field}, found {text[end : end + 10]!r}")
        position = end + len(" OR ")


def _term(text: str, position: int) -> tuple[Term, int]:
    """One `field op "value"` term from `position`, and where its value ends."""
    field_end = position
    while field_end < len(text) and text[field_end] not in "=<>!:":
        field_end += 1 if text[field_end] != '"' else _quoted_end(text, field_end) - field_end
    field = text[position:field_end].strip()
    op = ">=" if text.startswith(">=", field_end) else text[field_end : field_end + 1]
    if op not in ("=", ">=", ">"):
        raise FilterError(f"unsupported operator near {text[field_end : field_end + 10]!r}")
    value_start = field_end + len(op)
    if not text.startswith('"', value_start):
        raise FilterError(f"value of {field} is not a quoted string")
    value_end = _quoted_end(text, value_start)
    return Term(field, op, _unquote(text[value_start:value_end])), value_end


def _quoted_end(text: str, start: int) -> int:
    index = start + 1
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == '"':
            return index + 1
        index += 1
    raise FilterError("unterminated string")


def _unquote(quoted: str) -> str:
    body, out, index = quoted[1:-1], [], 0
    while index < len(body):
        if body[index] == "\\":
            index += 1
        out.append(body[index])
        index += 1
    return "".join(out)


def _lookup(entry: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = entry
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


class CloudLoggingStandin:
    """Serves `entries` (sorted by timestamp) through `entries:list`."""

    def __init__(self, entries: list[dict[str, Any]] | None = None) -> None:
        self.entries: list[dict[str, Any]] = []
        self._encoded: list[bytes] = []
        self._timestamps: list[str] = []
        self.fail: dict[int, int] = {}  # request number (1-based) -> HTTP status to answer with
        self.drop: dict[int, Drop] = {}  # request number -> how its connection breaks
        self.hold: set[int] = set()  # request numbers that wait for `release` before answering
        self.holding = threading.Event()  # set when a held request starts waiting
        self.release = threading.Event()
        self.filters: list[str] = []
        self.request_count = 0
        self.delay_s = 0.0
        self.add(entries or [])
        self._server = StandinServer(self._handle)

    def add(self, entries: list[dict[str, Any]]) -> None:
        self.entries = sorted([*self.entries, *entries], key=lambda e: e["timestamp"])
        self._encoded = [json.dumps(e).encode() for e in self.entries]
        self._timestamps = [e["timestamp"] for e in self.entries]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.port}"

    @property
    def requests(self) -> list[Request]:
        return self._server.requests

    def close(self) -> None:
        self.release.set()
        self._server.close()

    def _handle(self, request: Request) -> tuple[int, dict[str, str], bytes | Dropped]:
        self.request_count += 1
        number = self.request_count
        if self.delay_s:
            time.sleep(self.delay_s)
        if number in self.hold:
            self.holding.set()
            self.release.wait(timeout=120)  # bounded, so a failed test cannot leave a thread waiting forever
        status, headers, body = self._answer(request, number)
        if number in self.drop:
            return status, headers, Dropped(body, self.drop[number])
        return status, headers, body

    def _answer(self, request: Request, number: int) -> tuple[int, dict[str, str], bytes]:
        if request.method != "POST" or request.path != "/v2/entries:list":
            return json_response(404, {"error": {"code": 404, "message": f"no route {request.path}"}})
        if number in self.fail:
            status = self.fail[number]
            return json_response(status, {"error": {"code": status, "message": "injected failure"}})
        body = request.json()
        self.filters.append(body.get("filter", ""))
        try:
            terms = parse_filter(body.get("filter", ""))
        except FilterError as exc:
            return json_response(400, {"error": {"code": 400, "message": str(exc), "status": "INVALID_ARGUMENT"}})
        if body.get("orderBy", "timestamp asc") != "timestamp asc":
            return json_response(400, {"error": {"code": 400, "message": "only timestamp asc is served"}})
        return self._page(terms, int(body.get("pageSize") or 1000), int(body.get("pageToken") or 0))

    def _page(self, terms: list[Term], size: int, start: int) -> tuple[int, dict[str, str], bytes]:
        checks: list[list[tuple[tuple[str, ...], str]]] = []  # each holds when one of its (field, value) does
        for term in terms:
            if term.field == "timestamp":
                bound = _normalise(term.value)
                find = bisect.bisect_left if term.op == ">=" else bisect.bisect_right
                start = max(start, find(self._timestamps, bound))
                continue
            alternatives = term.alternatives or (term,)
            unknown = [t for t in alternatives if t.field not in _FIELDS or t.op != "="]
            if unknown:
                message = f"unexpected term {unknown[0].field} {unknown[0].op}"
                return json_response(400, {"error": {"code": 400, "message": message}})
            checks.append([(_FIELDS[t.field], t.value) for t in alternatives])
        page: list[bytes] = []
        index = start
        while index < len(self.entries) and len(page) < size:
            entry = self.entries[index]
            if all(any(_lookup(entry, path) == value for path, value in check) for check in checks):
                page.append(self._encoded[index])
            index += 1
        body = b'{"entries": [' + b",".join(page) + b"]"
        if index < len(self.entries):
            body += b', "nextPageToken": "' + str(index).encode() + b'"'
        return 200, {}, body + b"}"


def _normalise(timestamp: str) -> str:
    """RFC 3339 in UTC with microseconds, the form the stand-in stores, so strings compare in time order."""
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_entry(
    index: int,
    *,
    job: str,
    namespace: str = "default",
    start: datetime,
    step: timedelta = timedelta(milliseconds=10),
    cluster: str = "test-cluster",
    text: str | None = None,
    rank: int | None = None,
    group: str | None = None,
    task: str | None = None,
    container: str = "eval",
) -> dict[str, Any]:
    """One k8s_container entry as Cloud Logging returns it; with `group` and `task`, of a group's task (whose
    Job is `job`)."""
    moment = start + index * step
    labels = {"k8s-pod/job-name": job, "compute.googleapis.com/resource_name": "node-1"}
    if rank is not None:  # a pod of an Indexed Job
        labels["k8s-pod/batch_kubernetes_io/job-completion-index"] = str(rank)
    if group is not None:
        labels["k8s-pod/cajajejo/group"] = group
    if task is not None:
        labels["k8s-pod/cajajejo/task"] = task
    return {
        "insertId": f"{job}-{index:08d}",
        "logName": f"projects/test-project/logs/{namespace}",
        "resource": {
            "type": "k8s_container",
            "labels": {
                "project_id": "test-project",
                "cluster_name": cluster,
                "namespace_name": namespace,
                "pod_name": f"{job}-abcde",
                "container_name": container,
                "location": "europe-west4",
            },
        },
        "labels": labels,
        "severity": "INFO",
        "timestamp": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "receiveTimestamp": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "textPayload": text if text is not None else f"line {index} of {job}: evaluating instance {index % 997}",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--job", default="eval-bench-job")
    args = parser.parse_args(argv)
    start = datetime.now(UTC) - timedelta(hours=2)
    entries = [make_entry(i, job=args.job, start=start, step=timedelta(milliseconds=5)) for i in range(args.entries)]
    standin = CloudLoggingStandin(entries)
    print(standin.host, flush=True)
    try:
        sys.stdin.read()  # serve until the parent closes our stdin
    finally:
        standin.close()


if __name__ == "__main__":
    main()
