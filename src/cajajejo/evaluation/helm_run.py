"""Run `helm-run` and `helm-summarize` as subprocesses and tell which run specs failed, and why.

HELM runs every run spec even when some fail, then exits non-zero with `Failed runs: [...]`. We keep
its output (saved beside the results, and in a job also streamed to our stdout, which is the job's
log) and read the failures from it, so that one scenario that cannot download its data is named in
one line while the others are still evaluated and logged. On a terminal, HELM's tens of kilobytes of
logging bury what matters: there only what HELM starts is reported, through `on_progress`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from cajajejo.errors import CajajejoError

_ERROR_START = re.compile(r"Error when running (?P<name>.+?):\s*$")
# HELM's hierarchical logger opens a block per run spec: `Running <run spec name> {`.
_RUN_SPEC_START = re.compile(r"\bRunning (?P<name>\S+:\S*) \{\s*$")
_LOG_RECORD = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")  # HELM's log lines start with a timestamp
_NETWORK_SIGNS = (
    "URLError",
    "Name or service not known",
    "Temporary failure in name resolution",
    "ConnectionError",
    "HTTPSConnectionPool",
    "LocalEntryNotFoundError",
    "OfflineModeIsEnabled",
    "Network is unreachable",
)


@dataclass(frozen=True)
class FailedRun:
    name: str
    reason: str

    def __str__(self) -> str:
        return f"run spec {self.name} failed: {self.reason}"


@dataclass
class HelmOutcome:
    suite_dir: Path
    log_path: Path
    succeeded: list[str] = field(default_factory=list)
    failed: list[FailedRun] = field(default_factory=list)


def run_helm(
    *,
    run_specs: Path,
    suite: str,
    args: Sequence[str],
    output_path: Path,
    local_path: Path,
    env: Mapping[str, str],
    show_output: bool = True,
    on_progress: Callable[[str], None] | None = None,
) -> HelmOutcome:
    """helm-run then helm-summarize; raises only when HELM could not start or evaluated nothing.

    HELM's output always goes to the log file; to our stdout too when `show_output`. `on_progress`
    hears what HELM starts: `run spec <name>` for each run spec, then `summarizing`.
    """
    output = _Output(show_output, on_progress)
    output_path.mkdir(parents=True, exist_ok=True)
    log_path = output_path / f"helm-{suite}.log"
    run_command = [
        _tool("helm-run"),
        "--conf-paths",
        str(run_specs),
        "--suite",
        suite,
        "--local-path",
        str(local_path),
        "--output-path",
        str(output_path),
        *args,
    ]
    if "--max-eval-instances" not in args and not any(a.startswith("--max-eval-instances=") for a in args):
        run_command += ["--max-eval-instances", "1000"]  # helm-run requires it; the config's args may set it
    with log_path.open("w", encoding="utf-8") as log:
        code = _stream(run_command, env, log, output)
    suite_dir = output_path / "runs" / suite
    outcome = HelmOutcome(suite_dir, log_path)
    outcome.failed = failed_runs(log_path.read_text(encoding="utf-8", errors="replace"))
    failed_names = {f.name for f in outcome.failed}
    outcome.succeeded = sorted(
        p.name for p in suite_dir.glob("*") if (p / "stats.json").is_file() and p.name not in failed_names
    )
    if not outcome.succeeded:
        reasons = "; ".join(map(str, outcome.failed)) or f"helm-run exited with {code}"
        raise CajajejoError(f"HELM evaluated nothing ({reasons}); its log is {log_path}")
    summarize = [
        _tool("helm-summarize"),
        "--suite",
        suite,
        "--output-path",
        str(output_path),
        "--local-path",
        str(local_path),
    ]
    if on_progress is not None:
        on_progress("summarizing (helm-summarize)")
    with log_path.open("a", encoding="utf-8") as log:
        if _stream(summarize, env, log, output) != 0:
            raise CajajejoError(f"helm-summarize failed; its log is {log_path}")
    return outcome


def _tool(name: str) -> str:
    """HELM's console script beside this interpreter, so the venv's HELM is used whatever PATH says."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


@dataclass(frozen=True)
class _Output:
    """Where each line of HELM's output goes besides the log file."""

    show: bool
    on_progress: Callable[[str], None] | None

    def line(self, line: str) -> None:
        if self.show:
            sys.stdout.write(line)
        if self.on_progress is not None:
            started = _RUN_SPEC_START.search(line)
            if started:
                self.on_progress(f"run spec {started['name']}")


def _stream(command: list[str], env: Mapping[str, str], log: TextIO, output: _Output) -> int:
    try:
        process = subprocess.Popen(  # an argument list: no shell
            command, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
    except FileNotFoundError:
        raise CajajejoError(f"{command[0]} not found: install the evaluation runtime (scripts/install.sh)") from None
    assert process.stdout is not None
    for line in process.stdout:
        log.write(line)
        output.line(line)
    return process.wait()


def failed_runs(log_text: str) -> list[FailedRun]:
    """The run specs HELM reports as failed, each with a short reason read from its traceback."""
    failures: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in log_text.splitlines():
        match = _ERROR_START.search(line)
        if match:
            current = failures.setdefault(match["name"], [])
            continue
        if current is None:
            continue
        if _LOG_RECORD.match(line) and any(not _LOG_RECORD.match(seen) for seen in current):
            current = None  # HELM's logging resumed: the traceback of this failure is over
            continue
        current.append(line)
    listed = re.search(r"Failed runs: \[(.*)\]\s*$", log_text, re.MULTILINE)
    names = list(failures)
    if listed:
        for name in json.loads(f"[{listed[1]}]"):
            if name not in failures:
                names.append(name)
    return [FailedRun(name, _reason(failures.get(name, []))) for name in names]


def _reason(traceback_lines: list[str]) -> str:
    text = "\n".join(traceback_lines)
    last = next(
        (
            line.strip()
            for line in reversed(traceback_lines)
            if re.match(r"\s*[\w.]+(Error|Exception)\b", line) and "Failed runs:" not in line
        ),
        "",
    )
    if any(sign in text for sign in _NETWORK_SIGNS):
        return f"it needs a download that is not reachable from here ({last or 'network error'})"
    return last or "see the HELM log"
