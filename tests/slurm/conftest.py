"""The session's real Slurm cluster (see tests/slurm/cluster.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.slurm.cluster import SlurmCluster, start_cluster


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """One real one-node Slurm cluster on 127.0.0.1 for the whole session (partitions `train`, the default,
    and `eval`), with SLURM_CONF pointing at it; every daemon and job process is stopped by PID at the end."""
    with start_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster
