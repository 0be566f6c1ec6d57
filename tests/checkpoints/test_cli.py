"""`cajajejo checkpoints watch | list | request-stop`: output, results, errors, and SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from cajajejo.checkpoints import CheckpointDir
from tests.checkpoints.support import evaluator_script, publish, read_marks, start_watch, wait_until
from tests.support import run_cli

PRINT_ENV = (
    "import json, os; print('evaluating'); "
    "print(json.dumps({k: v for k, v in os.environ.items() if k.startswith('CAJAJEJO_')}))"
)


def test_watch_runs_the_command_per_checkpoint_and_records_its_exit_code_and_last_json_line(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    publish(directory, 1)
    publish(directory, 2)
    directory.mark_complete(step=2)
    result = run_cli(
        "checkpoints", "watch", tmp_path, "--role", "env", "--worker", "w1", "--", sys.executable, "-c", PRINT_ENV
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("evaluating\n") == 2
    assert "[WATCH] finished role=env worker=w1 reason=training-complete handled=2 failed=0 skipped=0" in result.stdout
    value = directory.results("env")["step-00000002"].value
    assert value["exit_code"] == 0
    assert value["output"] == {
        "CAJAJEJO_CHECKPOINT_PATH": str(tmp_path / "step-00000002"),
        "CAJAJEJO_CHECKPOINT_NAME": "step-00000002",
        "CAJAJEJO_CHECKPOINT_STEP": "2",
        "CAJAJEJO_CHECKPOINT_EPOCH": "1",
        "CAJAJEJO_EVALUATOR_ROLE": "env",
        "CAJAJEJO_EVALUATOR_WORKER": "w1",
    }


def test_a_failing_command_is_retried_then_recorded_as_failed_and_list_shows_every_role(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    publish(directory, 1)
    publish(directory, 2)
    directory.mark_complete(step=2)
    failing = ["--", sys.executable, "-c", "import sys; sys.exit(3)"]
    result = run_cli("checkpoints", "watch", tmp_path, "--role", "bad", "--max-attempts", "2", *failing)
    assert result.exit_code == 0, result.stderr
    failed = directory.results("bad")["step-00000001"]
    assert failed.status == "failed"
    assert failed.value["exit_code"] == 3
    assert "exit code 3" in failed.value["error"]
    holder = directory.claim("step-00000002", role="helm", worker="pod-7", lease_seconds=60)
    assert holder is not None
    listed = run_cli("checkpoints", "list", tmp_path)
    assert listed.exit_code == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        "step-00000001 step=1 epoch=1 bad=failed helm=pending",
        "step-00000002 step=2 epoch=1 bad=failed helm=running(pod-7)",
        "training complete",
    ]


def test_request_stop_is_kept_once_and_shown_by_list(tmp_path: Path) -> None:
    first = run_cli("checkpoints", "request-stop", tmp_path, "--reason", "plateau", "--by", "helm-0")
    assert first.exit_code == 0, first.stderr
    assert first.stdout == f"stop requested in {tmp_path}: plateau\n"
    second = run_cli("checkpoints", "request-stop", tmp_path, "--reason", "other")
    assert second.stdout == "a stop was already requested by helm-0: plateau\n"
    assert run_cli("checkpoints", "list", tmp_path).stdout == "stop requested by helm-0: plateau\n"
    request = CheckpointDir(tmp_path).stop_request()
    assert request is not None
    assert request.reason == "plateau"


def test_bad_input_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    python = ["--", sys.executable, "-c", "pass"]
    bad_role = run_cli("checkpoints", "watch", tmp_path, "--role", "no/slash", *python)
    assert bad_role.exit_code == 2
    assert bad_role.stderr.startswith("error: --role: role 'no/slash' must be")
    assert len(bad_role.stderr.splitlines()) == 1
    missing = run_cli("checkpoints", "watch", tmp_path, "--role", "r", "--", "no-such-program-here")
    assert missing.exit_code == 2
    assert (
        missing.stderr == "error: no-such-program-here: command not found (give a program on PATH or a path to one)\n"
    )
    state_dir = run_cli("checkpoints", "watch", tmp_path, "--role", "r", "--state-dir", tmp_path, *python)
    assert state_dir.exit_code == 2
    assert "--state-dir needs --foreign" in state_dir.stderr
    nothing = run_cli("checkpoints", "request-stop", tmp_path / "absent", "--reason", "x")
    assert nothing.exit_code == 2
    assert "no such checkpoint directory" in nothing.stderr
    assert not list(tmp_path.iterdir())  # bad input wrote nothing


def test_sigterm_stops_the_command_and_releases_the_claim_at_once(
    tmp_path: Path, reaper: list[subprocess.Popen[bytes]]
) -> None:
    directory = CheckpointDir(tmp_path / "checkpoints")
    publish(directory, 1)
    script, marks = evaluator_script(tmp_path)
    watch = start_watch(directory.path, "w1", script, marks, 30, log=tmp_path / "watch.log")
    reaper.append(watch)
    wait_until(lambda: read_marks(marks), "the evaluation to start")
    command_pid = read_marks(marks)[0].watcher  # the evaluator's parent is the watcher
    assert command_pid == watch.pid
    started = time.monotonic()
    watch.send_signal(signal.SIGTERM)
    assert watch.wait(timeout=20) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 15
    claim = directory.newest_claim("eval", "step-00000001")
    assert claim is not None
    assert claim.released == "interrupted"
    assert [m.kind for m in read_marks(marks)] == ["start"]  # the command was stopped, not left running
    assert (
        "[WATCH] interrupted role=eval worker=w1 name=step-00000001 attempt=1" in (tmp_path / "watch.log").read_text()
    )
    again = directory.claim("step-00000001", role="eval", worker="w2", lease_seconds=60)
    assert again is not None
    assert json.loads(again.path.read_text())["failures"] == 0
