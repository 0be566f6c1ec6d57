"""A group's logs with the real google-cloud-logging client against the `entries:list` stand-in: one task, or
all of them interleaved with a `[task]` prefix and SkyPilot's hint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.standins.cloud_logging import CloudLoggingStandin, make_entry
from tests.support import run_cli

START = datetime.now(UTC) - timedelta(minutes=10)


def _group_entries() -> list[dict[str, Any]]:
    """The trainer and the evaluator of group train-eval logging in turns, and a job of the same namespace."""
    entries = []
    for i in range(6):
        task = ("trainer", "evaluator")[i % 2]
        text = f"{task} line {i}"
        entries.append(make_entry(i, job=f"train-eval-{task}", start=START, group="train-eval", task=task, text=text))
    entries.append(make_entry(6, job="eval-alone", start=START, text="another job"))
    return entries


def test_one_task_of_a_group(logging_standin: CloudLoggingStandin) -> None:
    logging_standin.add(_group_entries())
    result = run_cli("logs", "train-eval", "--task", "trainer")
    assert result.exit_code == 0, result.stderr
    assert [line.split("[eval] ", 1)[1] for line in result.stdout.splitlines()] == [
        "trainer line 0",
        "trainer line 2",
        "trainer line 4",
    ]
    assert (
        'labels."k8s-pod/cajajejo/group"="train-eval" AND labels."k8s-pod/cajajejo/task"="trainer"'
        in (logging_standin.filters[-1])
    )
    assert "Hint" not in result.stderr


def test_all_tasks_interleaved_with_their_names_and_the_hint(logging_standin: CloudLoggingStandin) -> None:
    logging_standin.add(_group_entries())
    result = run_cli("logs", "train-eval")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["[trainer]", "[evaluator]"] * 3  # oldest first
    assert lines[1].endswith("[eval] evaluator line 1")
    assert result.stderr.strip().splitlines()[-1] == (
        "Hint: this group has 2 tasks (trainer, evaluator). Use 'cajajejo logs train-eval --task TASK' to view one."
    )
    # A job's logs are read the same way, without the prefix or the hint.
    alone = run_cli("logs", "eval-alone")
    assert alone.stdout.splitlines()[0].split(" ", 1)[0] != "[eval-alone]"
    assert alone.stdout.strip().endswith("[eval] another job")
    assert "Hint" not in alone.stderr


def test_a_group_task_and_rank_together_and_into_a_file(logging_standin: CloudLoggingStandin, tmp_path: Path) -> None:
    logging_standin.add(
        [make_entry(i, job="g-t", start=START, group="g", task="t", rank=i % 2, text=f"rank {i % 2}") for i in range(4)]
    )
    output = tmp_path / "logs.jsonl"
    result = run_cli("logs", "g", "--task", "t", "--rank", "1", "--output-path", output, "--quiet")
    assert result.exit_code == 0, result.stderr
    assert len(output.read_text().splitlines()) == 2


def test_a_hostile_task_name_is_refused_before_any_request(logging_standin: CloudLoggingStandin) -> None:
    result = run_cli("logs", "g", "--task", 'x" OR "a"="a')
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --task: ")
    assert logging_standin.request_count == 0
