"""`cajajejo groups run --local` with plain commands: real bash tasks, the runner as a user starts it.

How the run ends: the first task to fail (in time) stops the others and is the exit status, what a
script left running is stopped too, a signal to the runner stops every task; and what it writes: a
log file per process, and output that nobody reads any more does not stop the run.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.groups.support import command, header, write_group

Task = dict[str, Any]


def _runner(tmp_path: Path, *tasks: Task, **fields: Any) -> list[str]:
    """The command line of `groups run --local` for a group of these tasks (its work folder: tmp_path/run)."""
    path = write_group(tmp_path, header(**fields), *tasks)
    return [
        sys.executable,
        "-m",
        "cajajejo.cli",
        "groups",
        "run",
        "--local",
        str(path),
        "--workdir",
        str(tmp_path / "run"),
        "--tracking-uri",
        f"file://{tmp_path / 'mlruns'}",
    ]


def _run(tmp_path: Path, *tasks: Task, **fields: Any) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the group to its end (a hang fails the test after 20 s); returns the result and its seconds."""
    started = time.monotonic()
    result = subprocess.run(_runner(tmp_path, *tasks, **fields), capture_output=True, text=True, timeout=20)
    return result, time.monotonic() - started


def _is_running(pid: int) -> bool:
    """Whether process `pid` exists and is no zombie (an orphan's init may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_a_failed_task_stops_the_tasks_listed_before_it(tmp_path: Path) -> None:
    result, seconds = _run(tmp_path, command("slow", run="sleep 30"), command("bad", run="sleep 0.5\nexit 3"))
    assert result.returncode == 3, result.stderr
    assert seconds < 10  # not the 30 s of `slow`


@pytest.mark.parametrize(
    ("tasks", "status"),
    [
        # `late` comes first in the file, `early` fails first: its code is the run's.
        ((command("late", run="sleep 1.5\nexit 5"), command("early", run="sleep 0.3\nexit 3")), 3),
        ((command("killed", run="kill -9 $$"),), 128 + 9),  # as a shell says it, not Popen's -9
    ],
)
def test_the_exit_status_is_the_task_that_failed_first(tmp_path: Path, tasks: tuple[Task, ...], status: int) -> None:
    result, _ = _run(tmp_path, *tasks)
    assert result.returncode == status, result.stderr


def test_what_a_script_left_running_is_stopped_with_it(tmp_path: Path) -> None:
    server = command("server", run="sleep 60 &\necho $! > sleep.pid\necho started")  # its shell ends at once
    result, seconds = _run(tmp_path, command("bad", run="sleep 1\nexit 4"), server)
    assert result.returncode == 4, result.stderr
    assert seconds < 10  # the copy of `server`'s output does not wait for `sleep 60` to close its pipe
    assert "[server] started" in result.stdout
    assert not _is_running(int((tmp_path / "run" / "tasks" / "server" / "sleep.pid").read_text()))


@pytest.mark.parametrize(("number", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_runner_stops_every_task(tmp_path: Path, number: signal.Signals, status: int) -> None:
    tasks = (command("a", run="echo $$ > a.pid\necho ready\nsleep 60"), command("b", run="sleep 60"))
    runner = subprocess.Popen(_runner(tmp_path, *tasks), stdout=subprocess.PIPE, text=True)
    try:
        assert runner.stdout is not None
        assert runner.stdout.readline() == "[a] ready\n"
        runner.send_signal(number)
        assert runner.wait(timeout=15) == status  # not the code a stopped task exited with
    finally:
        runner.kill()
    assert not _is_running(int((tmp_path / "run" / "tasks" / "a" / "a.pid").read_text()))


def test_a_task_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    # In-process, to shorten the grace; a script of its own, so that a hang fails the test in time.
    script = """
import sys
from cajajejo.backends import local
local.STOP_GRACE_SECONDS = 1.0
stubborn = local.LocalProcess(["bash", "-c", "trap '' TERM; while true; do sleep 0.1; done"], {}, "stubborn")
bad = local.LocalProcess(["bash", "-c", "sleep 0.3; exit 2"], {}, "bad")
sys.exit(local.run_processes([stubborn, bad]))
"""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20)
    assert result.returncode == 2, result.stderr
    assert time.monotonic() - started < 8


def test_each_process_writes_its_lines_to_a_log_file_of_its_own(tmp_path: Path) -> None:
    nodes = command("nodes", num_nodes=2, run='echo "node $CAJAJEJO_NODE_RANK"\nprintf unfinished')
    result, _ = _run(tmp_path, nodes, command("quiet", run="true"))
    assert result.returncode == 0, result.stderr
    assert "[nodes-1] node 1\n" in result.stdout
    tasks = tmp_path / "run" / "tasks"
    assert (tasks / "nodes" / "nodes-0.log").read_text() == "node 0\nunfinished\n"
    assert (tasks / "nodes" / "nodes-1.log").read_text() == "node 1\nunfinished\n"
    assert (tasks / "quiet" / "quiet.log").read_text() == ""  # made when the task started


def test_the_run_goes_on_when_nothing_reads_its_output(tmp_path: Path) -> None:
    chatty = command("chatty", run='for i in $(seq 1 100000); do echo "line $i"; done\necho finished')
    runner = subprocess.Popen(_runner(tmp_path, chatty), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert runner.stdout is not None
        assert runner.stdout.readline() == b"[chatty] line 1\n"
        runner.stdout.close()  # as `| head -1` does
        assert runner.wait(timeout=20) == 0  # the group's outcome, not a broken pipe
    finally:
        runner.kill()
    lines = (tmp_path / "run" / "tasks" / "chatty" / "chatty.log").read_text().splitlines()
    assert (len(lines), lines[-1]) == (100001, "finished")


def test_a_command_gets_the_headers_env_under_its_own(tmp_path: Path) -> None:
    task = command("t", envs={"BAR": "own"}, run='echo "FOO=$FOO BAR=$BAR"')
    result, _ = _run(tmp_path, task, kubernetes_config={"env": {"FOO": "header", "BAR": "header"}})
    assert result.returncode == 0, result.stderr
    assert "[t] FOO=header BAR=own\n" in result.stdout
