"""Reading job logs with the real google-cloud-logging client against a local `entries:list` stand-in."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cajajejo.errors import UserInputError
from cajajejo.log_output import Progress, fetch_job_logs, write_entries
from cajajejo.logs import LogQuery, LogReadError, RetryPolicy, lower_bound, make_client, quote, read_entries
from cajajejo.settings import load_settings
from tests.standins.cloud_logging import CloudLoggingStandin, make_entry, parse_filter
from tests.standins.http import Drop
from tests.support import run_cli

NOW = datetime.now(UTC)


def _entries(
    job: str, count: int, *, start: datetime | None = None, namespace: str = "default"
) -> list[dict[str, Any]]:
    return [make_entry(i, job=job, namespace=namespace, start=start or NOW - timedelta(hours=1)) for i in range(count)]


def _no_sleep() -> RetryPolicy:
    return RetryPolicy(sleep=lambda _: None)


# --- the filter -------------------------------------------------------------------------------------------


def test_the_filter_names_the_job_containers_with_an_explicit_utc_bound() -> None:
    since = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
    query = LogQuery("eval-merciful-crocodile", "team-a", since, cluster="gke-1")
    assert query.filter() == (
        'resource.type="k8s_container" AND resource.labels.namespace_name="team-a" '
        'AND (labels."k8s-pod/job-name"="eval-merciful-crocodile" '
        'OR labels."k8s-pod/cajajejo/group"="eval-merciful-crocodile") AND resource.labels.cluster_name="gke-1" '
        'AND timestamp>="2026-11-20T12:30:00.000000Z"'
    )


def test_the_lower_bound_is_computed_in_utc() -> None:
    local = datetime(2026, 11, 24, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert lower_bound("hours", 3, now=local) == datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
    assert lower_bound("days", 2, now=local) == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert lower_bound("minutes", 90, now=local) == datetime(2026, 11, 24, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "hostile",
    ['eval-a" OR "x"="x', 'eval-a AND timestamp>="1970-01-01T00:00:00Z"', "Eval-A", "eval\na", "-eval", "a" * 64],
)
def test_hostile_job_names_are_refused_before_any_request(hostile: str, logging_standin: CloudLoggingStandin) -> None:
    result = run_cli("logs", "--", hostile)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: JOB_NAME: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert logging_standin.request_count == 0


@given(st.text(st.characters(min_codepoint=0x20, exclude_characters="\x7f"), max_size=30))
def test_quoted_values_are_one_term_that_reads_back_exactly(value: str) -> None:
    terms = parse_filter(f"a={quote(value)} AND b={quote('x')}")
    assert [(t.field, t.value) for t in terms] == [("a", value), ("b", "x")]


def test_control_characters_are_refused_in_filter_values() -> None:
    with pytest.raises(UserInputError, match="control characters"):
        quote("x\ny")


# --- reading ------------------------------------------------------------------------------------------------


def test_all_pages_arrive_oldest_first_and_only_for_the_job(logging_standin: CloudLoggingStandin) -> None:
    logging_standin.add(_entries("eval-a", 2345) + _entries("eval-b", 50) + _entries("eval-a", 20, namespace="other"))
    query = LogQuery("eval-a", "default", NOW - timedelta(days=1))
    got = list(read_entries(make_client("test-project"), query, page_size=500, retry=_no_sleep()))
    assert len(got) == 2345
    assert [e["insertId"] for e in got] == [f"eval-a-{i:08d}" for i in range(2345)]
    assert {e["resource"]["labels"]["namespace_name"] for e in got} == {"default"}
    assert logging_standin.request_count == 5  # 2345 entries in pages of 500
    assert all(f == query.filter() for f in logging_standin.filters)


def test_the_timestamp_bound_is_applied(logging_standin: CloudLoggingStandin) -> None:
    old = _entries("eval-a", 10, start=NOW - timedelta(days=3))
    recent = [make_entry(i, job="eval-a", start=NOW - timedelta(hours=2)) for i in range(10, 15)]
    logging_standin.add(old + recent)
    query = LogQuery("eval-a", "default", lower_bound("days", 1))
    got = list(read_entries(make_client("test-project"), query, retry=_no_sleep()))
    assert [e["insertId"] for e in got] == [f"eval-a-{i:08d}" for i in range(10, 15)]


def test_429_and_503_pages_are_retried_without_loss_or_duplicates(logging_standin: CloudLoggingStandin) -> None:
    logging_standin.add(_entries("eval-a", 1000))
    logging_standin.fail = {2: 429, 3: 503, 5: 500}
    waits: list[float] = []
    query = LogQuery("eval-a", "default", NOW - timedelta(days=1))
    got = list(read_entries(make_client("test-project"), query, page_size=300, retry=RetryPolicy(sleep=waits.append)))
    assert [e["insertId"] for e in got] == [f"eval-a-{i:08d}" for i in range(1000)]
    assert len(waits) == 3
    assert waits[1] > waits[0] * 1.0  # backing off: 1 s then 2 s, each with up to 50% jitter off


def test_persistent_failure_gives_up_with_a_clear_error(logging_standin: CloudLoggingStandin) -> None:
    logging_standin.add(_entries("eval-a", 10))
    logging_standin.fail = {n: 503 for n in range(1, 20)}
    query = LogQuery("eval-a", "default", NOW - timedelta(days=1))
    with pytest.raises(LogReadError, match=r"kept failing \(503 .*\) after 6 attempts"):
        list(read_entries(make_client("test-project"), query, retry=_no_sleep()))
    assert logging_standin.request_count == 6


@pytest.mark.parametrize("how", list(Drop))
def test_connections_broken_before_or_during_the_answer_are_retried_without_loss_or_duplicates(
    how: Drop, logging_standin: CloudLoggingStandin
) -> None:
    logging_standin.add(_entries("eval-a", 1000))
    logging_standin.drop = {2: how, 3: how, 5: how}  # page 2 arrives at the third try, page 3 at the second
    waits: list[float] = []
    query = LogQuery("eval-a", "default", NOW - timedelta(days=1))
    got = list(read_entries(make_client("test-project"), query, page_size=300, retry=RetryPolicy(sleep=waits.append)))
    assert [e["insertId"] for e in got] == [f"eval-a-{i:08d}" for i in range(1000)]
    assert len(waits) == 3
    assert logging_standin.request_count == 7  # 4 pages and 3 broken answers, nothing more


@pytest.mark.parametrize("how", [Drop.SHORT_LENGTH, Drop.SHORT_CHUNKED, Drop.SHORT_UNDELIMITED])
def test_a_connection_that_keeps_breaking_mid_answer_ends_in_one_error_line(
    how: Drop, logging_standin: CloudLoggingStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logging_standin.add(_entries("eval-a", 10))
    logging_standin.drop = {n: how for n in range(1, 20)}
    waits: list[int] = []
    monkeypatch.setattr(RetryPolicy, "wait", lambda self, failure: waits.append(failure))  # the CLI's own policy
    result = run_cli("logs", "eval-a", "--output-path", tmp_path / "logs.jsonl")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: Cloud Logging kept failing (connection broken in the middle of the answer: "
    )
    assert result.stderr.endswith(") after 6 attempts; try again later\n")
    assert len(result.stderr.splitlines()) == 1
    assert waits == [1, 2, 3, 4, 5]
    assert logging_standin.request_count == 6
    assert list(tmp_path.iterdir()) == []


def test_408_and_every_5xx_but_501_are_retried(logging_standin: CloudLoggingStandin) -> None:
    logging_standin.add(_entries("eval-a", 10))
    logging_standin.fail = {1: 502, 2: 504, 3: 520, 4: 408}
    query = LogQuery("eval-a", "default", NOW - timedelta(days=1))
    got = list(read_entries(make_client("test-project"), query, retry=_no_sleep()))
    assert len(got) == 10
    assert logging_standin.request_count == 5


@pytest.mark.parametrize(("status", "says"), [(501, r"rejected the request: 501 "), (403, r"roles/logging\.viewer")])
def test_refusals_are_not_retried(logging_standin: CloudLoggingStandin, status: int, says: str) -> None:
    # 501 (not implemented) and 403 (permission denied) will not change by asking again.
    logging_standin.fail = {1: status}
    query = LogQuery("eval-a", "default", NOW - timedelta(days=1))
    with pytest.raises(LogReadError, match=says):
        list(read_entries(make_client("test-project"), query, retry=_no_sleep()))
    assert logging_standin.request_count == 1


def test_an_empty_answer_and_a_failed_token_refresh_are_retried(
    logging_standin: CloudLoggingStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.auth.exceptions import TransportError

    logging_standin.add(_entries("eval-a", 10))
    client = make_client("test-project")
    real = client._connection.api_request
    # An empty 200 body comes back as b""; a token refresh that meets a dropped connection raises TransportError.
    troubles: list[Any] = [b"", TransportError("token refresh: connection reset")]  # type: ignore[no-untyped-call]

    def api_request(**kwargs: Any) -> Any:
        if not troubles:
            return real(**kwargs)  # type: ignore[no-untyped-call]
        trouble = troubles.pop(0)
        if isinstance(trouble, Exception):
            raise trouble
        return trouble

    monkeypatch.setattr(client._connection, "api_request", api_request)
    waits: list[float] = []
    query = LogQuery("eval-a", "default", NOW - timedelta(days=1))
    got = list(read_entries(client, query, retry=RetryPolicy(sleep=waits.append)))
    assert [e["insertId"] for e in got] == [f"eval-a-{i:08d}" for i in range(10)]
    assert len(waits) == 2


def test_follow_polls_from_the_newest_entry_without_repeating_it(logging_standin: CloudLoggingStandin) -> None:
    logging_standin.add(_entries("eval-a", 3))
    polls: list[int] = []

    def poll(_: float) -> None:
        polls.append(len(polls))
        if len(polls) == 1:  # a new entry with the same timestamp as the newest, and a later one
            same = make_entry(2, job="eval-a", start=NOW - timedelta(hours=1))
            logging_standin.add(
                [{**same, "insertId": "same-moment"}, make_entry(5, job="eval-a", start=NOW - timedelta(hours=1))]
            )
        if len(polls) == 3:
            raise KeyboardInterrupt

    query = LogQuery("eval-a", "default", NOW - timedelta(days=1))
    got: list[str] = []
    stream = read_entries(make_client("test-project"), query, follow=True, retry=RetryPolicy(sleep=poll))
    with pytest.raises(KeyboardInterrupt):
        got.extend(entry["insertId"] for entry in stream)
    assert got == ["eval-a-00000000", "eval-a-00000001", "eval-a-00000002", "same-moment", "eval-a-00000005"]
    newest = make_entry(2, job="eval-a", start=NOW - timedelta(hours=1))["timestamp"]
    assert logging_standin.filters[1].endswith(f'timestamp>="{newest}"')


# --- output -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_output_files_hold_every_entry_in_order(
    suffix: str, logging_standin: CloudLoggingStandin, tmp_path: Path
) -> None:
    logging_standin.add(_entries("eval-a", 1500))
    output = tmp_path / "deep" / "folder" / f"logs{suffix}"
    result = run_cli("logs", "eval-a", "--shift-unit", "hours", "--shift-amount", "3", "--output-path", output, "-q")
    assert result.exit_code == 0, result.stderr
    text = output.read_text()
    entries = [json.loads(line) for line in text.splitlines()] if suffix == ".jsonl" else json.loads(text)
    assert [e["insertId"] for e in entries] == [f"eval-a-{i:08d}" for i in range(1500)]
    assert entries[0]["receiveTimestamp"]  # the entries are the API's JSON, nothing dropped
    assert result.stdout == ""
    assert "1,500 entries from " in result.stderr
    assert list(output.parent.iterdir()) == [output]


def test_an_empty_json_output_is_an_empty_array(logging_standin: CloudLoggingStandin, tmp_path: Path) -> None:
    output = tmp_path / "logs.json"
    result = run_cli("logs", "eval-a", "--output-path", output)
    assert result.exit_code == 0, result.stderr
    assert json.loads(output.read_text()) == []


def test_entries_print_to_the_terminal(logging_standin: CloudLoggingStandin) -> None:
    logging_standin.add(_entries("eval-a", 2))
    result = run_cli("logs", "eval-a")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("INFO    [eval] line 0 of eval-a: evaluating instance 0")


def test_an_interrupted_fetch_leaves_no_file(logging_standin: CloudLoggingStandin, tmp_path: Path) -> None:
    logging_standin.add(_entries("eval-a", 3000))
    logging_standin.fail = {n: 503 for n in range(3, 30)}  # two good pages, then the service stays down
    output = tmp_path / "logs.jsonl"
    with pytest.raises(LogReadError):
        fetch_job_logs("eval-a", settings=load_settings(), output_path=output, quiet=True, retry=_no_sleep())
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_a_fetch_leaves_no_file(logging_standin: CloudLoggingStandin, tmp_path: Path) -> None:
    logging_standin.add(_entries("eval-a", 3000))
    logging_standin.fail = {2: 503}

    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    output = tmp_path / "logs.json"
    with pytest.raises(KeyboardInterrupt):
        fetch_job_logs(
            "eval-a", settings=load_settings(), output_path=output, quiet=True, retry=RetryPolicy(sleep=interrupt)
        )
    assert list(tmp_path.iterdir()) == []


def test_sigterm_while_writing_exits_143_leaves_no_file_and_restores_the_handler(tmp_path: Path) -> None:
    original = signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def entries() -> Iterator[dict[str, Any]]:
        yield make_entry(0, job="eval-a", start=NOW)
        # Without a handler of ours, the signal would end the test run itself: check before sending it.
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
        os.kill(os.getpid(), signal.SIGTERM)
        yield make_entry(1, job="eval-a", start=NOW)

    try:
        with pytest.raises(SystemExit) as raised:
            write_entries(entries(), output_path=tmp_path / "logs.jsonl")
        assert raised.value.code == 143
        assert list(tmp_path.iterdir()) == []
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, original)


def test_a_sigterm_handler_of_someone_else_is_left_in_place(tmp_path: Path) -> None:
    def theirs(number: int, frame: object) -> None:
        pass

    original = signal.signal(signal.SIGTERM, theirs)
    seen: list[Any] = []

    def entries() -> Iterator[dict[str, Any]]:
        seen.append(signal.getsignal(signal.SIGTERM))
        yield make_entry(0, job="eval-a", start=NOW)

    try:
        write_entries(entries(), output_path=tmp_path / "logs.jsonl")
        assert seen == [theirs]
        assert signal.getsignal(signal.SIGTERM) is theirs
    finally:
        signal.signal(signal.SIGTERM, original)


def _wait_until_held(standin: CloudLoggingStandin, child: subprocess.Popen[str], timeout_s: float = 120) -> None:
    """Until `child` waits on a held request; fails at once, with its stderr, if it ends before that."""
    deadline = time.monotonic() + timeout_s
    while not standin.holding.wait(timeout=0.2):
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            _, stderr = child.communicate()
            pytest.fail(f"the command never asked for the held page (exit {child.returncode}): {stderr}")


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP])
def test_the_command_terminated_mid_fetch_leaves_no_file_and_no_temporary_file(
    number: signal.Signals, logging_standin: CloudLoggingStandin, tmp_path: Path
) -> None:
    logging_standin.add(_entries("eval-a", 3000))
    logging_standin.hold = {2}  # the first page is written; the second one waits until the test says so
    folder = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "cajajejo.cli",
        "logs",
        "eval-a",
        "--output-path",
        str(folder / "logs.jsonl"),
        "-q",
    ]
    # stdout to nowhere: an unread pipe that fills up would stop the command before the held page
    child = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_held(logging_standin, child)
        assert [p.name.startswith(".logs.jsonl.") for p in folder.iterdir()] == [True]  # mid-fetch: the temporary
        child.send_signal(number)
        _, stderr = child.communicate(timeout=120)
    finally:
        logging_standin.release.set()
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 128 + number, stderr
    assert list(folder.iterdir()) == []
    assert "Traceback" not in stderr


def test_a_missing_project_names_the_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("logs", "eval-a")
    assert result.exit_code == 1
    assert "setting 'gcp_project' is needed to read job logs: set CAJAJEJO_GCP_PROJECT" in result.stderr


def test_bad_option_combinations_are_refused_before_any_request(
    logging_standin: CloudLoggingStandin, tmp_path: Path
) -> None:
    for args, expected in (
        (["--follow", "--output-path", str(tmp_path / "x.jsonl")], "--follow: cannot be combined"),
        (["--output-path", str(tmp_path / "x.txt")], "name it .jsonl"),
        (["--quiet"], "--quiet: needs --output-path"),
    ):
        result = run_cli("logs", "eval-a", *args)
        assert result.exit_code == 2, result.stderr
        assert expected in result.stderr
    assert logging_standin.request_count == 0
    assert list(tmp_path.iterdir()) == []


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_drawn_on_a_terminal_only_and_cleared_at_the_end() -> None:
    terminal = _Terminal()
    progress = Progress(terminal, interval_s=3600)
    progress.update(1)
    progress.update(2)  # within the interval: not redrawn
    progress.done()
    assert terminal.getvalue() == "\rfetched 1 entries\r\x1b[K"
    piped = io.StringIO()
    quiet = Progress(piped, interval_s=0)
    quiet.update(5_000)
    quiet.done()
    assert piped.getvalue() == ""


def test_rank_reads_one_pod_of_a_training_job(logging_standin: CloudLoggingStandin) -> None:
    start = datetime.now(UTC) - timedelta(minutes=5)
    logging_standin.add(
        [make_entry(i, job="train-a", start=start, rank=i % 2, text=f"[TRAIN] rank {i % 2} step {i}") for i in range(6)]
    )
    result = run_cli("logs", "train-a", "--rank", "1")
    assert result.exit_code == 0, result.stderr
    assert [line.split("[TRAIN] ", 1)[-1] for line in result.stdout.splitlines()] == [
        "rank 1 step 1",
        "rank 1 step 3",
        "rank 1 step 5",
    ]
    assert 'labels."k8s-pod/batch_kubernetes_io/job-completion-index"="1"' in logging_standin.filters[-1]
    every = run_cli("logs", "train-a")
    assert len(every.stdout.splitlines()) == 6
