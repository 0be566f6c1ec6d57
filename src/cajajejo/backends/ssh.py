"""A login node over SSH (`SshHost`): the `Host` that `--slurm-host user@host` gives, in a module of its own
so that paramiko is imported only when SSH is used (see `cajajejo.backends.hosts` for the rules both
hosts keep: argument lists only, every remote word quoted, keys from the agent and ~/.ssh only)."""

from __future__ import annotations

import contextlib
import errno
import getpass
import os
import secrets
import select
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import cast

import paramiko

from cajajejo.backends.hosts import (
    CONNECT_TIMEOUT_S,
    DEFAULT_SSH_PORT,
    KEEPALIVE_S,
    KNOWN_HOSTS_ENV,
    SFTP_TIMEOUT_S,
    SYSTEM_KNOWN_HOSTS,
    CommandResult,
    HostError,
    check_argv,
    decoded,
    remote_command,
)
from cajajejo.errors import one_line


class UnknownHostKey(paramiko.SSHException):
    """The server's host key is in no known_hosts file we read."""


class RefuseUnknownHostKey(paramiko.MissingHostKeyPolicy):
    """Never trust a host key on first sight: the user checks it once with `ssh`, which records it."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise UnknownHostKey(hostname)


@dataclass(frozen=True)
class Endpoint:
    """What to connect to, after ~/.ssh/config: the address, port, user and key files."""

    address: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    known_hosts: tuple[str, ...]


def ssh_config_for(alias: str) -> paramiko.SSHConfigDict:
    """What ~/.ssh/config says about `alias` (empty when there is no such file)."""
    path = Path("~/.ssh/config").expanduser()
    if not path.is_file():
        return paramiko.SSHConfigDict()
    try:
        return paramiko.SSHConfig.from_path(str(path)).lookup(alias)
    except (OSError, paramiko.ConfigParseError) as error:
        raise HostError(f"cannot read {path}: {one_line(error)}; fix the file or move it aside") from None


def resolve_endpoint(
    alias: str, user: str | None, port: int | None, key_filename: str | None, known_hosts: str | None
) -> Endpoint:
    """Where `alias` really is, as `ssh alias` would see it: ~/.ssh/config fills what the spec leaves out."""
    config = ssh_config_for(alias)
    for option in ("proxyjump", "proxycommand"):
        if config.get(option) and config[option] != "none":
            raise HostError(
                f"~/.ssh/config sets {option} for {alias}, which cajajejo does not follow: "
                "give --slurm-host a login node it can reach directly"
            )
    if key_filename is not None:
        identities: tuple[str, ...] = (key_filename,)
    else:
        named = [os.path.expanduser(p) for p in config.get("identityfile", [])]
        identities = tuple(p for p in named if os.path.isfile(p))
    override = known_hosts or os.environ.get(KNOWN_HOSTS_ENV)
    if override:
        trusted: tuple[str, ...] = (override,)
    else:
        user_files = config.get("userknownhostsfile", "~/.ssh/known_hosts").split()
        trusted = (SYSTEM_KNOWN_HOSTS, *(os.path.expanduser(p) for p in user_files))
    return Endpoint(
        address=config.get("hostname", alias),
        port=port or int(config.get("port", DEFAULT_SSH_PORT)),
        user=user or config.get("user") or getpass.getuser(),
        identity_files=identities,
        known_hosts=trusted,
    )


class SshHost:
    """A login node over SSH: commands through one kept connection, files through SFTP on it.

    `key_filename` and `known_hosts` are for tests: with `key_filename`, that key alone is offered (no
    agent, no default keys); `known_hosts` (or CAJAJEJO_SSH_KNOWN_HOSTS) is the only file of trusted host
    keys. Users leave both out: keys come from their agent and ~/.ssh, host keys from known_hosts.
    """

    def __init__(
        self,
        host: str,
        *,
        user: str | None = None,
        port: int | None = None,
        key_filename: str | None = None,
        known_hosts: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.alias = host
        self.endpoint = resolve_endpoint(host, user, port, key_filename, known_hosts)
        self.use_agent_and_default_keys = key_filename is None
        self.connect_timeout = connect_timeout
        shown_port = "" if self.endpoint.port == DEFAULT_SSH_PORT else f":{self.endpoint.port}"
        self.name = f"{self.endpoint.user}@{host}{shown_port}"
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.Lock()

    def _connected(self) -> paramiko.SSHClient:
        """The kept connection, opened on first use and again if the server dropped it."""
        with self._lock:
            transport = self._client.get_transport() if self._client else None
            if self._client is None or transport is None or not transport.is_active():
                self.close()
                self._client = self._connect()
            return self._client

    def _connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(RefuseUnknownHostKey())
        for path in self.endpoint.known_hosts:
            if os.path.isfile(path):
                client.load_system_host_keys(path)  # read only: cajajejo never adds a host key
        try:
            client.connect(
                self.endpoint.address,
                port=self.endpoint.port,
                username=self.endpoint.user,
                # paramiko takes a list here too (its type stubs say only str): every IdentityFile is offered.
                key_filename=cast(str, list(self.endpoint.identity_files)) if self.endpoint.identity_files else None,
                allow_agent=self.use_agent_and_default_keys,
                look_for_keys=self.use_agent_and_default_keys,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
            )
        except Exception as error:
            client.close()
            raise self._connect_error(error) from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(KEEPALIVE_S)
        return client

    def _connect_error(self, error: Exception) -> HostError:
        """One line for a failed connection: what failed and what to do about it."""
        where = f"{self.endpoint.address}:{self.endpoint.port}"
        if isinstance(error, UnknownHostKey):
            return HostError(
                f"SSH host {self.alias} is not in your known_hosts: run `ssh {self.name_for_ssh()}` once, check "
                "and accept its host key, then try again"
            )
        if isinstance(error, paramiko.BadHostKeyException):
            return HostError(
                f"SSH host key of {self.alias} differs from the one in your known_hosts: ask its administrators "
                f"whether it changed, then `ssh-keygen -R {self.endpoint.address}` and `ssh {self.name_for_ssh()}` once"
            )
        if isinstance(error, paramiko.AuthenticationException):
            return HostError(
                f"SSH login as {self.endpoint.user} to {self.alias} failed: load your key into ssh-agent (ssh-add) "
                "or name it with IdentityFile in ~/.ssh/config (cajajejo never uses passwords)"
            )
        if isinstance(error, socket.gaierror):
            return HostError(f"cannot resolve SSH host {self.endpoint.address}: check the name in --slurm-host")
        if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError | ConnectionRefusedError):
            return HostError(f"SSH connection to {where} was refused: check the host and port, and that sshd runs")
        if isinstance(error, TimeoutError):
            return HostError(f"SSH connection to {where} timed out: check the host, the port and your network")
        return HostError(f"SSH connection to {where} failed: {one_line(error)}")

    def name_for_ssh(self) -> str:
        """How the user would reach the same host with `ssh`."""
        port = "" if self.endpoint.port == DEFAULT_SSH_PORT else f" -p {self.endpoint.port}"
        return f"{self.endpoint.user}@{self.alias}{port}"

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        timeout: float = 60,
    ) -> CommandResult:
        words = check_argv(argv)
        command = remote_command(words, env)
        transport = self._connected().get_transport()
        try:
            if transport is None:
                raise paramiko.SSHException("the connection is closed")
            channel = transport.open_session(timeout=self.connect_timeout)
        except paramiko.SSHException as error:
            raise HostError(f"cannot open an SSH session on {self.name}: {one_line(error)}") from None
        try:
            channel.exec_command(command)
            feed_input(channel, input)
            stdout, stderr, returncode = collect(channel, time.monotonic() + timeout)
        except TimeoutError:
            raise HostError(f"{words[0]} did not finish within {timeout:g} s on {self.name}") from None
        except (paramiko.SSHException, OSError) as error:
            raise HostError(f"running {words[0]} on {self.name} failed: {one_line(error)}") from None
        finally:
            channel.close()
        return CommandResult(words, returncode, decoded(stdout), decoded(stderr))

    def _files(self) -> paramiko.SFTPClient:
        """The SFTP session on the kept connection (opened again after a reconnect)."""
        client = self._connected()
        with self._lock:
            channel = self._sftp.get_channel() if self._sftp else None
            if self._sftp is None or channel is None or channel.closed:
                try:
                    self._sftp = client.open_sftp()
                    # A stalled server fails the call after this long instead of hanging `logs --follow`.
                    self._sftp.get_channel().settimeout(SFTP_TIMEOUT_S)  # type: ignore[union-attr]
                except (paramiko.SSHException, OSError) as error:
                    raise HostError(
                        f"cannot open SFTP on {self.name}: {one_line(error)} (does its sshd offer the sftp subsystem?)"
                    ) from None
            return self._sftp

    def write_file(self, path: str, text: str, *, mode: int = 0o644) -> None:
        target = PurePosixPath(path)
        self.make_dirs(str(target.parent))
        files = self._files()
        temporary = str(target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            with files.open(temporary, "wb") as out:
                out.write(text.encode())
            files.chmod(temporary, mode)
            files.posix_rename(temporary, path)
        except OSError as error:
            with contextlib.suppress(OSError):  # its own failure must not hide the first one
                files.remove(temporary)
            raise HostError(f"cannot write {path} on {self.name}: {sftp_reason(error)}") from None

    def read_file(self, path: str) -> str | None:
        data = self.read_bytes_from(path, 0)
        return None if data is None else decoded(data)

    def read_bytes_from(self, path: str, offset: int) -> bytes | None:
        try:
            with self._files().open(path, "rb") as source:
                source.seek(offset)
                return source.read()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise HostError(f"cannot read {path} on {self.name}: {sftp_reason(error)}") from None

    def make_dirs(self, path: str) -> None:
        files = self._files()
        missing: list[str] = []
        folder = PurePosixPath(path)
        try:
            while not _exists(files, str(folder)):
                missing.append(str(folder))
                if folder.parent == folder:
                    break
                folder = folder.parent
            for name in reversed(missing):
                try:
                    files.mkdir(name)
                except OSError:
                    if not _exists(files, name):  # made by someone else meanwhile is fine
                        raise
        except OSError as error:
            raise HostError(f"cannot make folder {path} on {self.name}: {sftp_reason(error)}") from None

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None


def _exists(files: paramiko.SFTPClient, path: str) -> bool:
    try:
        files.stat(path)
    except FileNotFoundError:
        return False
    return True


def sftp_reason(error: OSError) -> str:
    """An SFTP error's reason ("Permission denied"), whichever way paramiko filled it in."""
    if error.errno and error.strerror:
        return error.strerror
    return one_line(error) or errno.errorcode.get(error.errno or 0, "failed")


def feed_input(channel: paramiko.Channel, text: str | None) -> None:
    """Send `text` as the command's standard input, then end it (a command reading input sees the end).

    A thread sends it, so a command that writes a lot before reading cannot stall both sides.
    """
    if not text:
        channel.shutdown_write()
        return

    def send() -> None:
        with contextlib.suppress(OSError, paramiko.SSHException):  # the command may exit unread; its exit code tells
            channel.sendall(text.encode())
            channel.shutdown_write()

    threading.Thread(target=send, daemon=True).start()


def collect(channel: paramiko.Channel, deadline: float) -> tuple[bytes, bytes, int]:
    """Read stdout and stderr as they come (both share one flow-control window) until the command has
    ended and closed its output; (stdout, stderr, exit code). TimeoutError after `deadline`."""
    stdout, stderr = bytearray(), bytearray()
    while True:
        if channel.recv_ready():
            stdout += channel.recv(65536)
        elif channel.recv_stderr_ready():
            stderr += channel.recv_stderr(65536)
        elif channel.eof_received or channel.closed:
            break
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            select.select([channel], [], [], remaining)
    if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
        raise TimeoutError
    return bytes(stdout), bytes(stderr), channel.recv_exit_status()
