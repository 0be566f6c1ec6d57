"""Slurm's commands through an SshHost against the session's real cluster: what `--slurm-host` does.

This test lives beside the cluster's fixture rather than in tests/ssh: a session fixture imported into
another folder's conftest would start a second cluster. Its sshd is its own (starting one is cheap).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cajajejo.backends.ssh import SshHost
from tests.slurm.cluster import SlurmCluster
from tests.ssh.sshd import start_sshd


@pytest.fixture(scope="module")
def login_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHost]:
    """This machine as a login node over SSH (a real sshd on 127.0.0.1)."""
    with start_sshd(tmp_path_factory.mktemp("sshd")) as server:
        host = server.connect()
        yield host
        host.close()


def test_sbatch_and_squeue_over_ssh(slurm_cluster: SlurmCluster, login_node: SshHost) -> None:
    # sshd passes no environment on: the cluster's slurm.conf is named on every command, as a backend does.
    env = {"SLURM_CONF": str(slurm_cluster.conf)}
    folder = slurm_cluster.work_dir / "over-ssh"
    script = folder / "hello.sbatch"
    login_node.write_file(str(script), '#!/bin/bash\necho "hello from $SLURM_JOB_ID"\n', mode=0o755)

    submitted = login_node.run(
        ["sbatch", "--parsable", f"--chdir={folder}", "--output=job-%j.out", "--job-name=over ssh; $(x)", str(script)],
        env=env,
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().split(";")[0]

    queued = login_node.run(["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%i|%j"], env=env)
    assert queued.stdout.strip() == f"{job_id}|over ssh; $(x)"  # the name arrived as one word, unrun
    slurm_cluster.wait_for(job_id, "COMPLETED")
    assert login_node.read_file(str(folder / f"job-{job_id}.out")) == f"hello from {job_id}\n"
    assert login_node.run(["squeue", "--jobs=not-a-job"], env=env).returncode != 0
