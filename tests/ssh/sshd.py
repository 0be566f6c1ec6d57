"""A real OpenSSH server on 127.0.0.1 for the tests: Debian's sshd in the foreground, serving only the user
running the tests, with a throwaway host key and a throwaway client key, stopped by PID.

It runs as whoever runs the tests: as root (CI containers) it logs in as root; as any other user it can
only ever serve that same user, which is all the tests need.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from cajajejo.backends.ssh import SshHost
from tests.support import free_port

APT_PACKAGES = "openssh-server openssh-client"
SSHD = Path("/usr/sbin/sshd")  # sshd re-executes itself, so it must be started by its absolute path
PRIVSEP_DIR = Path("/run/sshd")  # as root, sshd insists on this empty folder (systemd makes it on a normal host)


@dataclass(frozen=True)
class SshServer:
    """The session's sshd (fixture `sshd_host`): where it listens, who may log in, and the client's files."""

    address: str
    port: int
    user: str
    client_key: Path  # the private key sshd accepts (authorized_keys holds its public half)
    known_hosts: Path  # a known_hosts file that holds sshd's host key, as `ssh` would have written it
    log: Path

    @property
    def spec(self) -> str:
        """As a user writes it for --slurm-host."""
        return f"{self.user}@{self.address}:{self.port}"

    def connect(self, *, key_filename: str | None = None, known_hosts: str | None = None) -> SshHost:
        """An SshHost for this server with the test key and known_hosts, or the ones given instead."""
        return SshHost(
            self.address,
            user=self.user,
            port=self.port,
            key_filename=key_filename or str(self.client_key),
            known_hosts=known_hosts or str(self.known_hosts),
        )

    def log_tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:] if self.log.exists() else ["(no log)"]
        return f"--- sshd ({self.log})\n" + "\n".join(text)


def find_openssh() -> tuple[Path, str]:
    """sshd and ssh-keygen; fails once, naming the apt packages, when either is missing (never skips)."""
    keygen = shutil.which("ssh-keygen")
    if not os.access(SSHD, os.X_OK) or keygen is None:
        pytest.fail(
            f"OpenSSH is not installed ({SSHD} or ssh-keygen missing): "
            f"apt-get install --no-install-recommends {APT_PACKAGES} (.ci/run does this)",
            pytrace=False,
        )
    return SSHD, keygen


def make_key(keygen: str, path: Path) -> str:
    """A new ed25519 key pair without passphrase at `path` (and `path`.pub); the public line."""
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "cajajejo-test", "-f", str(path)], check=True)
    return path.with_name(path.name + ".pub").read_text().strip()


def render_sshd_config(root: Path, port: int, user: str) -> str:
    """sshd_config for one user on loopback, keys only, every file inside `root`."""
    return f"""\
ListenAddress 127.0.0.1
Port {port}
HostKey {root}/host_key
PidFile {root}/sshd.pid
AuthorizedKeysFile {root}/authorized_keys
AllowUsers {user}
# Keys only, as cajajejo only ever offers keys.
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
# Not root's own daemon: no PAM session, and tmp files' modes are not what StrictModes wants.
UsePAM no
StrictModes no
# In-process SFTP: nothing else from openssh-sftp-server is needed.
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def start_sshd(root: Path, timeout: float = 15) -> Iterator[SshServer]:
    """Start sshd under `root` for the current user; stop it by PID after."""
    sshd, keygen = find_openssh()
    user = getpass.getuser()
    port = free_port()
    host_line = make_key(keygen, root / "host_key")
    (root / "authorized_keys").write_text(make_key(keygen, root / "client_key") + "\n")
    known_hosts = root / "known_hosts"
    key_type, key = host_line.split()[:2]
    known_hosts.write_text(f"[127.0.0.1]:{port} {key_type} {key}\n")
    config = root / "sshd_config"
    config.write_text(render_sshd_config(root, port, user))
    if os.geteuid() == 0:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    server = SshServer("127.0.0.1", port, user, root / "client_key", known_hosts, root / "sshd.log")
    with server.log.open("ab") as log:
        # -D: stay in the foreground, so the PID we hold is the daemon's; -e: log to stderr (our log file).
        process = subprocess.Popen(
            [str(sshd), "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        deadline = time.monotonic() + timeout
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"sshd did not start listening on 127.0.0.1:{port} (exit code {process.poll()})\n"
                    f"{server.log_tail()}",
                    pytrace=False,
                )
            time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
