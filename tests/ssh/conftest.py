"""The session's real sshd (see tests/ssh/sshd.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ssh.sshd import SshServer, start_sshd


@pytest.fixture(scope="session")
def sshd_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """One real sshd on 127.0.0.1 for the whole session, serving the current user with a throwaway key;
    stopped by PID at the end."""
    with start_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server
