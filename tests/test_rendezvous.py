"""Multi-node torchrun worlds on this machine: two `cajajejo train --local` agents on loopback meet through
c10d (hosted by node 0) and through a real etcd server (v2 API), as pods of a training job would."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support import REPO, free_port, require_tool

# A worker that proves it is in one world with the others: every rank adds its number into one sum.
WORKER = """
import os
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
total = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(total)
line = (f"[DDP] rank={dist.get_rank()} world={dist.get_world_size()} node={os.environ['GROUP_RANK']} "
        f"sum={total.item():.0f} arg={os.environ.get('ARG', '')}\\n")
os.write(1, line.encode())  # one write: the two ranks share the output pipe, and print's pieces interleave
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def etcd_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A one-member etcd 3.4 on loopback with the v2 API torch's etcd rendezvous speaks; stopped by PID."""
    etcd = require_tool("etcd")
    data = tmp_path_factory.mktemp("etcd")
    client, peer = free_port(), free_port()
    process = subprocess.Popen(
        [
            etcd,
            "--name=test",
            f"--data-dir={data}",
            f"--listen-client-urls=http://127.0.0.1:{client}",
            f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=test=http://127.0.0.1:{peer}",
            "--enable-v2=true",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(data / "etcd.log").open("w"),
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{client}/v2/keys", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"etcd did not start: {(data / 'etcd.log').read_text()[-2000:]}")
                time.sleep(0.2)
        yield f"127.0.0.1:{client}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _two_node_job(folder: Path, rendezvous: dict[str, object]) -> Path:
    worker = folder / "worker.py"
    worker.write_text(WORKER)
    data = yaml.safe_load((REPO / "jobs" / "training" / "example.job_config.yml").read_text())
    data["compute_config"] = {"cpu": "1", "memory": "1Gi"}
    data["training"] = {
        "nnodes": 2,
        "nproc_per_node": 1,
        "max_restarts": 0,
        "rendezvous": {**rendezvous, "join_timeout_seconds": 60},
        "script": {"path": str(worker)},
    }
    data["kubernetes_config"] = {"env": {"ARG": "$(NODE_RANK) stays as written"}}
    config = folder / "two-nodes.job_config.yml"
    config.write_text(yaml.safe_dump(data))
    return config


def _train_locally(config: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cajajejo.cli", "train", "--local", str(config), "--nnodes", "2", "--workdir", workdir],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _assert_one_world_of_two(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    lines = sorted(line for line in (result.stdout + result.stderr).splitlines() if "[DDP]" in line)
    assert [line.split("[DDP] ", 1)[1] for line in lines] == [
        "rank=0 world=2 node=0 sum=3 arg=$(NODE_RANK) stays as written",
        "rank=1 world=2 node=1 sum=3 arg=$(NODE_RANK) stays as written",
    ]


def test_two_local_nodes_meet_through_c10d_on_node_zero(tmp_path: Path) -> None:
    _assert_one_world_of_two(_train_locally(_two_node_job(tmp_path, {"backend": "c10d"}), tmp_path / "run"))


def test_two_local_nodes_meet_through_a_real_etcd(etcd_endpoint: str, tmp_path: Path) -> None:
    config = _two_node_job(tmp_path, {"backend": "etcd", "endpoint": etcd_endpoint})
    result = _train_locally(config, tmp_path / "run")
    _assert_one_world_of_two(result)
    # The world's state is in etcd: torch keeps its rendezvous under /torch/elastic/rendezvous/<id>.
    with urllib.request.urlopen(f"http://{etcd_endpoint}/v2/keys/torch/elastic/rendezvous?recursive=true") as answer:
        assert b"local-two-nodes" in answer.read()
