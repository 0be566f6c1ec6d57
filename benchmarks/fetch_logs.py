"""Fetching a job's logs: `cajajejo logs` against the obvious alternatives, in the same run.

A Cloud Logging stand-in (tests/standins/cloud_logging.py) serves N entries of one job over HTTP.
Each contender fetches all of them into a file, as a fresh process; we report wall time and peak
memory (max RSS) of that process:

- `cajajejo logs JOB --output-path F.jsonl --quiet` (streams, writes as it goes);
- the Python client used the plain way: `list(client.list_entries(...))`, then `json.dump` of the list;
- `gcloud logging read --format=json` against the same stand-in, when gcloud is on PATH
  (through CLOUDSDK_API_ENDPOINT_OVERRIDES_LOGGING and CLOUDSDK_AUTH_ACCESS_TOKEN).

    python benchmarks/fetch_logs.py [--entries 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JOB = "eval-bench-job"

PLAIN_CLIENT = """
import json, sys
from datetime import UTC, datetime, timedelta
from google.auth.credentials import AnonymousCredentials
from google.cloud import logging
host, output = sys.argv[1], sys.argv[2]
client = logging.Client(project="test-project", credentials=AnonymousCredentials(), _use_grpc=False,
                        client_options={"api_endpoint": f"http://{host}"})
since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
query = f'resource.type="k8s_container" AND labels."k8s-pod/job-name"="{sys.argv[3]}" AND timestamp>="{since}"'
entries = list(client.list_entries(filter_=query, order_by=logging.ASCENDING, page_size=1000))
with open(output, "w") as handle:
    json.dump([entry.to_api_repr() for entry in entries], handle)
"""


def run_measured(command: list[str], env: dict[str, str], stdout: Path | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process, read from wait4."""
    with tempfile.TemporaryFile() as errors, open(stdout or os.devnull, "wb") as output:
        started = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=output, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            errors.seek(0)
            raise SystemExit(f"{command[0]} failed ({child.returncode}): {errors.read().decode()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024


def count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    args = parser.parse_args()

    standin = subprocess.Popen(
        [sys.executable, "-m", "tests.standins.cloud_logging", "--entries", str(args.entries), "--job", JOB],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert standin.stdout is not None
    host = standin.stdout.readline().strip()
    env = {**os.environ, "LOGGING_EMULATOR_HOST": host, "CAJAJEJO_GCP_PROJECT": "test-project"}
    results: dict[str, tuple[float, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            ours = Path(folder) / "logs.jsonl"
            cajajejo = [sys.executable, "-m", "cajajejo.cli", "logs", JOB, "--output-path", str(ours), "--quiet"]
            results["cajajejo logs"] = run_measured(cajajejo, env)
            fetched = count_lines(ours)
            if fetched != args.entries:
                raise SystemExit(f"cajajejo logs fetched {fetched} entries, expected {args.entries}")
            plain = [sys.executable, "-c", PLAIN_CLIENT, host, str(Path(folder) / "plain.json"), JOB]
            results["python client, list()"] = run_measured(plain, env)
            gcloud = shutil.which("gcloud")
            if gcloud:
                gcloud_env = {
                    **env,
                    "CLOUDSDK_API_ENDPOINT_OVERRIDES_LOGGING": f"http://{host}/",
                    "CLOUDSDK_AUTH_ACCESS_TOKEN": "benchmark",
                    "CLOUDSDK_CORE_PROJECT": "test-project",
                }
                command = [
                    gcloud,
                    "logging",
                    "read",
                    f'labels."k8s-pod/job-name"="{JOB}"',
                    "--format=json",
                    "--freshness=1d",
                    "--order=asc",
                    "--limit",
                    str(args.entries),
                ]
                gcloud_output = Path(folder) / "gcloud.json"
                results["gcloud logging read"] = run_measured(command, gcloud_env, stdout=gcloud_output)
                with gcloud_output.open() as handle:
                    gcloud_count = len(json.load(handle))
                if gcloud_count != args.entries:
                    raise SystemExit(f"gcloud fetched {gcloud_count} entries, expected {args.entries}")
    finally:
        standin.stdin.close() if standin.stdin else None
        standin.wait(timeout=30)

    ours_s, ours_mib = results["cajajejo logs"]
    print(f"{args.entries:,} entries from the Cloud Logging stand-in")
    for name, (seconds, mib) in results.items():
        ratio = (
            ""
            if name == "cajajejo logs"
            else f"   cajajejo is {seconds / ours_s:.1f}x faster, {mib / ours_mib:.1f}x less memory"
        )
        print(f"{name:<24} {seconds:7.2f} s  {args.entries / seconds:9,.0f} entries/s  peak {mib:7.1f} MiB{ratio}")
    if "gcloud logging read" not in results:
        print("gcloud is not installed here: no gcloud comparison in this run")


if __name__ == "__main__":
    main()
