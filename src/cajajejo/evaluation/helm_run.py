"""Run `helm-run` and `helm-summarize` as subprocesses and tell which run specs failed, and why.

HELM runs every run spec even when some fail, then exits non-zero with `Failed runs: [...]`. We keep
its output (streamed to our stdout, which is the job's log, and saved beside the results) and read
the failures from it, so that one scenario that cannot download its data is named in one line
while the others are still evaluated and logged.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from cajajejo.errors import CajajejoError

_ERROR_START = re.compile(r"Error when running (?P<name>.+?):\s*$")
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
) -> HelmOutcome:
    """helm-run then helm-summarize; raises only when HELM could not start or evaluated nothing."""
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
        code = _stream(run_command, env, log)
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
    with log_path.open("a", encoding="utf-8") as log:
        if _stream(summarize, env, log) != 0:
            raise CajajejoError(f"helm-summarize failed; its log is {log_path}")
    return outcome


def _tool(name: str) -> str:
    """HELM's console script beside this interpreter, so the venv's HELM is used whatever PATH says."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _stream(command: list[str], env: Mapping[str, str], log: TextIO) -> int:
    try:
        process = subprocess.Popen(  # an argument list: no shell
            command, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
    except FileNotFoundError:
        raise CajajejoError(f"{command[0]} not found: install the evaluation runtime (scripts/install.sh)") from None
    assert process.stdout is not None
    for line in process.stdout:
        sys.stdout.write(line)
        log.write(line)
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
