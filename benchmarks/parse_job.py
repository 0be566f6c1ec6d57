"""How long `parse-job` (evaluation and training) and `validate-config` take, as ratios to a bare interpreter start.

All are measured in the same run, on the same machine, as fresh processes (that is how users run the
commands), so the ratios say what cajajejo adds on top of starting Python, whatever the machine's speed.
The goal is at most 10x for both commands, in wall time; CPU time is shown beside it.

Each command runs once before it is timed, so that its files are in the OS's cache, its .pyc files
are written and cajajejo's cache folder is filled: the state of an installed cajajejo after its first
run. The .pyc files go to a temporary PYTHONPYCACHEPREFIX, so that they are written even where
PYTHONDONTWRITEBYTECODE is set (as pip-installed packages have theirs) without touching the source
tree; --env-as-is runs the commands with the environment unchanged instead. cajajejo's cache folder is
a temporary one too (XDG_CACHE_HOME); the "cold cache" line gives each run an empty one, as on the
first run after an install or in a fresh CI container.

With --torchx PATH (or a `torchx` on PATH), `torchx run --dryrun` of its echo component is timed as
another tool's reference point; it is left out otherwise.

    python benchmarks/parse_job.py [--runs 15] [--env-as-is] [--torchx PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "jobs/evaluation/example.mlflow.job_config.yml"
RUN_SPECS = REPO / "jobs/evaluation/app/run_specs.conf"
TRAINING_CONFIG = REPO / "jobs/training/example.job_config.yml"
GOAL = 10.0


Contender = tuple[str, list[str], Callable[[], dict[str, str]]]  # name, command, each run's environment


def medians(contenders: list[Contender], runs: int) -> dict[str, tuple[float, float]]:
    """Median wall time and median CPU time (user + system) of each command as a fresh process.

    The commands take turns, one run each per round, so that a burst of load on the machine falls on
    all of them alike instead of on whichever happened to be running then. CPU time hardly changes
    with the load at all: where wall times are noisy, it tells what a command costs.
    """
    for _, command, env in contenders:
        timed_run(command, env())  # warm files, .pyc and caches
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in contenders}
    for _ in range(runs):
        for name, command, env in contenders:
            samples[name].append(timed_run(command, env()))
    return {
        name: (statistics.median(wall for wall, _ in times), statistics.median(cpu for _, cpu in times))
        for name, times in samples.items()
    }


def timed_run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of `command`, which must succeed."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait for it
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--env-as-is", action="store_true", help="Do not redirect .pyc files or the cache folder.")
    parser.add_argument("--torchx", help="A `torchx` executable to time as a reference (default: one on PATH).")
    args = parser.parse_args()
    runs = args.runs
    torchx = args.torchx or shutil.which("torchx")
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        base_env = dict(os.environ)
        if not args.env_as_is:
            base_env.pop("PYTHONDONTWRITEBYTECODE", None)
            base_env["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
            base_env["XDG_CACHE_HOME"] = str(scratch / "cache")
        cold_caches = iter(range(1_000_000))

        def warm() -> dict[str, str]:
            return base_env

        def cold() -> dict[str, str]:
            return {**base_env, "XDG_CACHE_HOME": str(scratch / f"cold-cache-{next(cold_caches)}")}

        cajajejo = [sys.executable, "-m", "cajajejo.cli", "jobs", "evaluation"]
        parse_job = [*cajajejo, "parse-job", str(CONFIG), str(RUN_SPECS), str(scratch / "job.yml")]
        validate = [*cajajejo, "validate-config", str(CONFIG), "--helm-config", str(RUN_SPECS)]
        contenders: list[Contender] = [
            ("python -c pass", [sys.executable, "-c", "pass"], warm),
            ("cajajejo parse-job", parse_job, warm),
            ("cajajejo validate-config", validate, warm),
            (
                "training parse-job",
                [*cajajejo[:-1], "training", "parse-job", str(TRAINING_CONFIG), str(scratch / "train.yml")],
                warm,
            ),
        ]
        if not args.env_as_is:
            contenders.append(("parse-job, cold cache", parse_job, cold))
        if torchx:
            echo = [torchx, "run", "--dryrun", "--scheduler", "local_cwd", "utils.echo", "--msg", "hi"]
            contenders.append(("torchx run --dryrun", echo, warm))
        results = medians(contenders, runs)
    setting = "environment as is" if args.env_as_is else ".pyc files written, temporary cache folder"
    print(f"{runs} runs each, medians; {setting}")
    print(f"{'':<28} {'wall':>9}  {'ratio':>6}   {'cpu':>9}  {'ratio':>6}")
    base_wall, base_cpu = results["python -c pass"]
    for name, (wall, cpu) in results.items():
        print(
            f"{name:<28} {wall * 1000:6.1f} ms  {wall / base_wall:5.1f}x   {cpu * 1000:6.1f} ms  {cpu / base_cpu:5.1f}x"
        )
    worst = max(results["cajajejo parse-job"][0], results["cajajejo validate-config"][0]) / base_wall
    print(
        f"goal <= {GOAL:.0f}x for parse-job and validate-config: {'met' if worst <= GOAL else 'not met'} ({worst:.1f}x)"
    )


if __name__ == "__main__":
    main()
