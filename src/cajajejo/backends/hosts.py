"""Where Slurm's commands run and the workflow's files live: this machine, or a login node over SSH.

The Slurm backend talks to a `Host` only, so `--slurm-host user@host` changes nothing else: the same
argument lists run, the same files are written and read, either here (`LocalHost`) or on the login node
(`SshHost`, in `cajajejo.backends.ssh`, which alone imports paramiko).

Commands never go through a shell here. Over SSH the remote login shell must parse one line, so every
word of it is single-quoted for a POSIX shell (sh, bash, dash, ksh, zsh: what login nodes use) and the
line always starts with the literal `env`: whatever a user's string holds, it stays one argument of one
program and cannot add a command, an assignment or a redirection.

SSH keys come only from the user's SSH agent, ~/.ssh/config (HostName, User, Port, IdentityFile) and the
default key files; never a password. Host keys come from the user's and the system's known_hosts files;
an unknown host is refused (the user accepts its key once with `ssh`). For tests only,
CAJAJEJO_SSH_KNOWN_HOSTS names the one known_hosts file to use instead.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cajajejo.errors import CajajejoError, Problem, UserInputError, quoted

KNOWN_HOSTS_ENV = "CAJAJEJO_SSH_KNOWN_HOSTS"  # tests only: the known_hosts file to trust instead of the user's
SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
DEFAULT_SSH_PORT = 22
CONNECT_TIMEOUT_S = 15.0
SFTP_TIMEOUT_S = 60.0
KEEPALIVE_S = 30  # keeps a long `logs --follow` connection alive through NATs and firewalls
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
NOT_FOUND_EXIT = 127  # what `env` and shells exit with when a program is not there
HOST_SPEC = re.compile(r"(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]\s]+\]|[^@:\s\[\]]+)(?::(?P<port>[0-9]+))?\Z")


class HostError(CajajejoError):
    """Slurm's host could not be reached or used; the message says what failed and what to do."""


@dataclass(frozen=True)
class CommandResult:
    """How one command ended: its exit code and its whole output, decoded as UTF-8."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class Host(Protocol):
    """Where Slurm's commands run and the workflow's files live: this machine, or a login node over SSH."""

    name: str  # "localhost" or "user@host[:port]"

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        timeout: float = 60,
    ) -> CommandResult:
        """Run `argv` (never through a shell) with `env` added to the host's environment; a non-zero exit is
        returned, not raised. HostError when it runs past `timeout` seconds or the host cannot be reached."""
        ...

    def write_file(self, path: str, text: str, *, mode: int = 0o644) -> None:
        """Write `text` to `path` atomically (a temporary file in the same folder, then a rename), making
        its folders first; readers see the old file or the whole new one, never a part."""
        ...

    def read_file(self, path: str) -> str | None:
        """The file's text; None when it does not exist."""
        ...

    def read_bytes_from(self, path: str, offset: int) -> bytes | None:
        """The file's bytes from `offset` on (b"" when nothing was added), for following a growing log;
        None when it does not exist."""
        ...

    def make_dirs(self, path: str) -> None:
        """Make `path` and its missing parents; nothing when it exists."""
        ...

    def close(self) -> None:
        """Let go of the connection, if any; the host may not be used after."""
        ...


def check_argv(argv: Sequence[str]) -> tuple[str, ...]:
    """`argv` as a tuple, refused (ValueError) when no program could be run from it the same way everywhere.

    A program name starting with `-` or holding `=` would be read by `env` as an option or an assignment.
    """
    words = tuple(argv)
    if not words or not words[0]:
        raise ValueError("a command needs a program name")
    if words[0].startswith("-") or "=" in words[0]:
        raise ValueError(f"program name {words[0]!r} cannot start with '-' or contain '='")
    if any("\0" in word for word in words):
        raise ValueError("a command argument cannot contain a NUL character")
    return words


def check_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """`env` as a dict, refused (ValueError) when a name could be read as something other than a name."""
    checked = dict(env or {})
    for name, value in checked.items():
        if not ENV_NAME.match(name):
            raise ValueError(f"environment variable name {name!r} is not [A-Za-z_][A-Za-z0-9_]*")
        if "\0" in value:
            raise ValueError(f"environment variable {name} cannot contain a NUL character")
    return checked


def remote_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """The one line a remote POSIX login shell runs for `argv` with `env`: `env NAME=VALUE... program args`.

    Starting with the literal `env` means the shell never sees a user's word in command position (where
    a reserved word or an assignment would change the meaning), and shlex.join quotes every word.
    """
    words = check_argv(argv)
    assignments = [f"{name}={value}" for name, value in check_env(env).items()]
    return shlex.join(["env", *assignments, *words])


def decoded(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


class LocalHost:
    """This machine: commands are subprocesses (argument lists, never a shell), files are local files."""

    name = "localhost"

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        timeout: float = 60,
    ) -> CommandResult:
        words = check_argv(argv)
        extra = check_env(env)
        try:
            completed = subprocess.run(
                words,
                input=None if input is None else input.encode(),
                stdin=subprocess.DEVNULL if input is None else None,  # as over SSH: no input means end of input
                capture_output=True,
                env={**os.environ, **extra} if extra else None,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise HostError(f"{words[0]} did not finish within {timeout:g} s on {self.name}") from None
        except FileNotFoundError:
            # As `env` reports it on a remote host: callers see one way for a missing program.
            return CommandResult(words, NOT_FOUND_EXIT, "", f"env: {words[0]!r}: No such file or directory\n")
        except PermissionError as error:
            return CommandResult(words, 126, "", f"{words[0]}: {error.strerror}\n")
        return CommandResult(words, completed.returncode, decoded(completed.stdout), decoded(completed.stderr))

    def write_file(self, path: str, text: str, *, mode: int = 0o644) -> None:
        target = Path(path)
        self.make_dirs(str(target.parent))
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as out:
                out.write(text.encode())
                os.fchmod(out.fileno(), mode)
            os.replace(temporary, target)
        except OSError as error:
            Path(temporary).unlink(missing_ok=True)
            raise HostError(f"cannot write {path} on {self.name}: {error.strerror or error}") from None

    def read_file(self, path: str) -> str | None:
        data = self.read_bytes_from(path, 0)
        return None if data is None else decoded(data)

    def read_bytes_from(self, path: str, offset: int) -> bytes | None:
        try:
            with open(path, "rb") as source:
                source.seek(offset)
                return source.read()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise HostError(f"cannot read {path} on {self.name}: {error.strerror or error}") from None

    def make_dirs(self, path: str) -> None:
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise HostError(f"cannot make folder {path} on {self.name}: {error.strerror or error}") from None

    def close(self) -> None:
        pass


def parse_host_spec(spec: str) -> tuple[str | None, str, int | None]:
    """`[user@]host[:port]` (an IPv6 address in brackets) as (user, host, port); UserInputError otherwise."""
    match = HOST_SPEC.match(spec)
    port = int(match["port"]) if match and match["port"] else None
    if not match or not spec.isprintable() or spec.startswith("-") or (port is not None and not 0 < port < 65536):
        raise UserInputError(
            Problem("--slurm-host", f"{quoted(spec)} is not [user@]host[:port] (e.g. alice@login.example.org)")
        )
    return match["user"], match["host"].strip("[]"), port


def connect_host(spec: str | None) -> Host:
    """The host for `--slurm-host`: this machine when unset or empty, else `[user@]host[:port]` over SSH.

    Nothing connects yet: an SshHost opens its connection on first use.
    """
    if not spec:
        return LocalHost()
    user, host, port = parse_host_spec(spec)
    from cajajejo.backends.ssh import SshHost  # paramiko (~0.3 s to import) only when SSH is used

    return SshHost(host, user=user, port=port)
