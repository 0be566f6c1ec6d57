"""How long `cajajejo jobs evaluation parse-job` takes, as a ratio to a bare interpreter start.

Both are measured in the same run, on the same machine, as fresh processes (that is how users run the
command), so the ratio says what cajajejo adds on top of starting Python, whatever the machine's speed.

    python benchmarks/parse_job.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "jobs/evaluation/example.mlflow.job_config.yml"
RUN_SPECS = REPO / "jobs/evaluation/app/run_specs.conf"


def median_seconds(command: list[str], runs: int) -> float:
    subprocess.run(command, check=True, capture_output=True)  # warm the file cache and .pyc files
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as folder:
        output = str(Path(folder) / "job.yml")
        parse_job = [
            sys.executable,
            "-m",
            "cajajejo.cli",
            "jobs",
            "evaluation",
            "parse-job",
            str(CONFIG),
            str(RUN_SPECS),
            output,
        ]
        baseline = median_seconds([sys.executable, "-c", "pass"], runs)
        tool = median_seconds(parse_job, runs)
    print(f"python -c pass           median {baseline * 1000:7.1f} ms  ({runs} runs)")
    print(f"cajajejo parse-job       median {tool * 1000:7.1f} ms  ({runs} runs)")
    print(f"ratio parse-job / python-start: {tool / baseline:.1f}x")


if __name__ == "__main__":
    main()
