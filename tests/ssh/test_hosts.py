"""cajajejo.backends.hosts against this machine and a real sshd: commands, files, quoting and refusals."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cajajejo.backends.hosts import (
    KNOWN_HOSTS_ENV,
    Host,
    HostError,
    LocalHost,
    connect_host,
    remote_command,
)
from cajajejo.backends.ssh import SshHost
from cajajejo.errors import UserInputError
from tests.ssh.sshd import SshServer, find_openssh, make_key
from tests.support import free_port

# Prints its arguments as JSON: what the program received, to compare with what was sent.
PRINT_ARGS = "import sys, json; print(json.dumps(sys.argv[1:]))"
# Any text an argument can carry: everything but NUL, which no argv can hold (no lone surrogates either).
ARGUMENT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\0"), max_size=40)


@pytest.fixture(scope="module")
def ssh_host(sshd_host: SshServer) -> Iterator[SshHost]:
    """One SshHost for the module: its connection is opened once and reused by every test."""
    host = sshd_host.connect()
    yield host
    host.close()


@pytest.fixture(params=["local", "ssh"])
def host(request: pytest.FixtureRequest) -> Host:
    """Each test once on this machine and once over SSH: both must behave the same."""
    if request.param == "local":
        return LocalHost()
    ssh: SshHost = request.getfixturevalue("ssh_host")
    return ssh


def received_args(host: Host, args: list[str]) -> list[str]:
    result = host.run([sys.executable, "-c", PRINT_ARGS, *args])
    assert result.returncode == 0, result.stderr
    received: list[str] = json.loads(result.stdout)
    return received


def test_run_returns_exit_code_and_both_outputs(host: Host) -> None:
    result = host.run([sys.executable, "-c", "import sys; print('out'); sys.stderr.write('err'); sys.exit(3)"])
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err")
    assert result.argv[0] == sys.executable


def test_run_feeds_input_and_ends_it(host: Host) -> None:
    assert host.run(["cat"], input="line one\nline two").stdout == "line one\nline two"
    assert host.run(["cat"]).stdout == ""  # no input: the command sees the end at once, never waits


def test_run_adds_environment_variables(host: Host) -> None:
    result = host.run(["sh", "-c", 'printf %s "$GREETING|$PATH"'], env={"GREETING": "hi there; $(no) 'x'"})
    greeting, path = result.stdout.split("|", 1)
    assert greeting == "hi there; $(no) 'x'"
    assert path  # the host's own environment is kept


def test_missing_program_exits_127(host: Host) -> None:
    result = host.run(["cajajejo-no-such-program", "x"])
    assert result.returncode == 127
    assert "cajajejo-no-such-program" in result.stderr


def test_a_command_past_its_timeout_is_an_error(host: Host) -> None:
    with pytest.raises(HostError, match=r"did not finish within 0\.5 s"):
        host.run(["sleep", "3"], timeout=0.5)


@pytest.mark.parametrize("env", [{"BAD-NAME": "x"}, {"1X": "x"}, {"A B": "x"}, {"A=B": "x"}, {"": "x"}])
def test_environment_names_must_be_names(host: Host, env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="environment variable name"):
        host.run(["true"], env=env)


@pytest.mark.parametrize("argv", [[], [""], ["-i", "true"], ["A=1", "true"], ["echo", "a\0b"]])
def test_commands_env_would_misread_are_refused(host: Host, argv: list[str]) -> None:
    with pytest.raises(ValueError, match=r"program name|NUL"):
        host.run(argv)


def test_user_strings_cannot_add_a_command(host: Host, tmp_path: Path) -> None:
    """Every shell metacharacter stays inside its one argument: nothing else runs, nothing is created."""
    marker = tmp_path / "pwned"
    hostile = [
        f"; touch {marker}",
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"' ; touch {marker} ; '",
        f'" ; touch {marker} ; "',
        f"\n touch {marker}",
        f"x\\'; touch {marker}; echo \\'",
        f"> {marker}",
        "*",
        "~",
        "${HOME}",
        "\\",
        "",
    ]
    assert received_args(host, hostile) == hostile
    result = host.run(["sh", "-c", 'printf %s "$V"'], env={"V": f"'; touch {marker}; '"})
    assert result.stdout == f"'; touch {marker}; '"
    assert not marker.exists()


def test_remote_command_starts_with_env_and_quotes_every_word() -> None:
    command = remote_command(["squeue", "--me", "a b"], {"SLURM_CONF": "/x y"})
    assert command == "env 'SLURM_CONF=/x y' squeue --me 'a b'"
    assert remote_command(["if", "then"]) == "env if then"  # `if` reaches env as a word, never the shell's


@settings(max_examples=100, deadline=None)
@given(args=st.lists(ARGUMENT, max_size=6))
def test_any_argument_reaches_a_local_program_unchanged(args: list[str]) -> None:
    assert received_args(LocalHost(), args) == args


@settings(max_examples=50, deadline=None)
@given(args=st.lists(ARGUMENT, max_size=6))
def test_any_argument_reaches_a_remote_program_unchanged(ssh_host: SshHost, args: list[str]) -> None:
    assert received_args(ssh_host, args) == args


def test_write_file_writes_whole_file_with_mode_and_leaves_no_temp(host: Host, tmp_path: Path) -> None:
    target = tmp_path / "new" / "folders" / "job.sbatch"
    host.write_file(str(target), "#!/bin/bash\necho first\n", mode=0o750)
    host.write_file(str(target), "#!/bin/bash\necho second ünïcode\n", mode=0o700)
    assert target.read_text() == "#!/bin/bash\necho second ünïcode\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert os.listdir(target.parent) == ["job.sbatch"]


def test_write_file_replaces_by_rename(host: Host, tmp_path: Path) -> None:
    """A reader holding the old file keeps reading the old text: the new text is a new file, renamed over."""
    target = tmp_path / "state.json"
    host.write_file(str(target), "old")
    with target.open() as reader:
        host.write_file(str(target), "new")
        assert reader.read() == "old"
    assert target.read_text() == "new"


def test_write_file_failure_is_a_host_error(host: Host, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(HostError, match="a-file"):
        host.write_file(str(blocker / "inside.txt"), "x")


def test_read_file_of_a_missing_file_is_none(host: Host, tmp_path: Path) -> None:
    assert host.read_file(str(tmp_path / "missing.txt")) is None
    assert host.read_bytes_from(str(tmp_path / "missing.txt"), 0) is None


def test_read_bytes_from_follows_a_growing_file(host: Host, tmp_path: Path) -> None:
    log = tmp_path / "slurm-1.out"
    log.write_bytes(b"hello ")
    assert host.read_file(str(log)) == "hello "
    assert host.read_bytes_from(str(log), 0) == b"hello "
    assert host.read_bytes_from(str(log), 2) == b"llo "
    assert host.read_bytes_from(str(log), 6) == b""
    assert host.read_bytes_from(str(log), 100) == b""
    with log.open("ab") as out:
        out.write(b"world\xff")
    assert host.read_bytes_from(str(log), 6) == b"world\xff"
    assert host.read_file(str(log)) == "hello world\ufffd"


def test_make_dirs_makes_parents_and_accepts_existing(host: Host, tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b" / "c"
    host.make_dirs(str(folder))
    host.make_dirs(str(folder))
    assert folder.is_dir()


def test_one_connection_serves_every_call(sshd_host: SshServer, tmp_path: Path) -> None:
    logins_before = _logins(sshd_host)
    host = sshd_host.connect()
    try:
        for _ in range(3):
            host.run(["true"])
        host.write_file(str(tmp_path / "f"), "x")
        assert host.read_file(str(tmp_path / "f")) == "x"
    finally:
        host.close()
    assert _logins(sshd_host) == logins_before + 1


def _logins(server: SshServer) -> int:
    return server.log.read_text(errors="replace").count("Accepted publickey for")


def test_unknown_host_key_is_refused(sshd_host: SshServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    host = sshd_host.connect(known_hosts=str(empty))
    with pytest.raises(HostError) as raised:
        host.run(["true"])
    message = str(raised.value)
    assert "\n" not in message
    assert f"ssh {sshd_host.user}@{sshd_host.address} -p {sshd_host.port}` once" in message
    assert empty.read_text() == ""  # never added on its own


def test_changed_host_key_is_refused(sshd_host: SshServer, tmp_path: Path) -> None:
    _, keygen = find_openssh()
    other_type, other_key = make_key(keygen, tmp_path / "other").split()[:2]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{sshd_host.port} {other_type} {other_key}\n")
    with pytest.raises(HostError, match=r"host key of 127\.0\.0\.1 differs"):
        sshd_host.connect(known_hosts=str(known_hosts)).run(["true"])


def test_known_hosts_override_from_the_environment(sshd_host: SshServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KNOWN_HOSTS_ENV, str(sshd_host.known_hosts))
    host = SshHost(sshd_host.address, user=sshd_host.user, port=sshd_host.port, key_filename=str(sshd_host.client_key))
    try:
        assert host.run(["echo", "trusted"]).stdout == "trusted\n"
    finally:
        host.close()


def test_a_key_the_server_does_not_accept_is_an_error(sshd_host: SshServer, tmp_path: Path) -> None:
    _, keygen = find_openssh()
    make_key(keygen, tmp_path / "stranger")
    with pytest.raises(HostError, match=r"ssh-agent .*never uses passwords"):
        sshd_host.connect(key_filename=str(tmp_path / "stranger")).run(["true"])


def test_closed_port_is_refused(sshd_host: SshServer) -> None:
    host = SshHost("127.0.0.1", port=free_port(), key_filename=str(sshd_host.client_key))
    with pytest.raises(HostError, match="refused: check the host and port"):
        host.run(["true"])


def test_a_name_that_does_not_resolve_is_an_error(sshd_host: SshServer) -> None:
    host = SshHost("no-such-host.invalid", key_filename=str(sshd_host.client_key), connect_timeout=5)
    with pytest.raises(HostError, match=r"cannot resolve SSH host no-such-host\.invalid"):
        host.run(["true"])


@pytest.fixture
def ssh_home(sshd_host: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder whose ~/.ssh holds what a user has: a config naming the login node and its key, and
    known_hosts; no agent."""
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "known_hosts").write_text(sshd_host.known_hosts.read_text())
    (ssh / "config").write_text(
        f"Host login\n  HostName {sshd_host.address}\n  Port {sshd_host.port}\n  User {sshd_host.user}\n"
        f"  IdentityFile {sshd_host.client_key}\n"
    )
    monkeypatch.setenv("HOME", str(ssh.parent))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return ssh


def test_user_ssh_config_and_known_hosts_are_followed(sshd_host: SshServer, ssh_home: Path) -> None:
    host = connect_host("login")
    try:
        assert host.name == f"{sshd_host.user}@login:{sshd_host.port}"
        assert host.run(["echo", "via config"]).stdout == "via config\n"
    finally:
        host.close()


def test_proxy_jump_in_ssh_config_is_refused(ssh_home: Path) -> None:
    (ssh_home / "config").write_text("Host behind\n  ProxyJump bastion\n")
    with pytest.raises(HostError, match="proxyjump for behind"):
        connect_host("behind")


def test_connect_host_picks_the_host_from_the_spec() -> None:
    assert isinstance(connect_host(None), LocalHost)
    assert isinstance(connect_host(""), LocalHost)
    remote = connect_host("alice@login.example.org:2222")
    assert isinstance(remote, SshHost)
    assert remote.name == "alice@login.example.org:2222"
    assert connect_host("bob@[::1]").name == "bob@::1"


@pytest.mark.parametrize(
    "spec", ["alice@", "@host", "host:", "host:99999", "a@b@c", "-oProxyCommand=x", "a b", "login\nnode"]
)
def test_connect_host_rejects_malformed_specs(spec: str) -> None:
    with pytest.raises(UserInputError, match="--slurm-host"):
        connect_host(spec)
